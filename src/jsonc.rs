//! Where things are in a JSON-with-comments file, so that `mcp-remote-client config`
//! can change one entry of an MCP client's config and leave every other byte where it
//! was. The clients write plain JSON, but VS Code's `mcp.json` (and people's hands)
//! add `//` and `/* */` comments and trailing commas: all three are accepted.
//!
//! Parsing gives a tree of byte spans ([`Value`]); editing is text splicing at those
//! spans ([`Edit`]), never a re-serialization of the whole file.

use std::fmt;

/// How deep objects and arrays may nest: a hostile file must not overflow the stack.
const MAX_DEPTH: usize = 128;

/// A value and where it is: `start..end` in the text, `end` exclusive.
#[derive(Debug, Clone)]
pub struct Value {
    pub start: usize,
    pub end: usize,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Object(Vec<Member>),
    Array,
    Scalar,
}

/// One `"key": value` of an object.
#[derive(Debug, Clone)]
pub struct Member {
    /// The key, unescaped.
    pub key: String,
    /// Where the key's opening quote is.
    pub key_start: usize,
    pub value: Value,
    /// Where the `,` after the value is, when there is one.
    pub comma: Option<usize>,
}

impl Value {
    pub fn members(&self) -> &[Member] {
        match &self.kind {
            Kind::Object(m) => m,
            _ => &[],
        }
    }

    pub fn member(&self, key: &str) -> Option<&Member> {
        self.members().iter().find(|m| m.key == key)
    }
}

/// Why a file is not JSON: what was found and where (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub what: &'static str,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.what
        )
    }
}

/// Parse a whole document: one value, with only whitespace and comments around it.
pub fn parse(text: &str) -> Result<Value, SyntaxError> {
    let mut p = Parser {
        text: text.as_bytes(),
        at: 0,
        depth: 0,
    };
    p.skip_blank().map_err(|w| p.error(w))?;
    let value = p.value().map_err(|w| p.error(w))?;
    p.skip_blank().map_err(|w| p.error(w))?;
    if p.at != p.text.len() {
        return Err(p.error("more after the end of the document"));
    }
    Ok(value)
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
    depth: usize,
}

type Step<T> = Result<T, &'static str>;

impl Parser<'_> {
    fn error(&self, what: &'static str) -> SyntaxError {
        let (line, column) = line_column(self.text, self.at);
        SyntaxError { line, column, what }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    /// Whitespace and comments.
    fn skip_blank(&mut self) -> Step<()> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r' | b'\n') => self.at += 1,
                // A byte-order mark, which Windows editors write.
                Some(0xEF) if self.text[self.at..].starts_with(b"\xEF\xBB\xBF") => self.at += 3,
                Some(b'/') => match self.text.get(self.at + 1) {
                    Some(b'/') => {
                        while !matches!(self.peek(), None | Some(b'\n')) {
                            self.at += 1;
                        }
                    }
                    Some(b'*') => {
                        let rest = &self.text[self.at + 2..];
                        let close = rest
                            .windows(2)
                            .position(|w| w == b"*/")
                            .ok_or("a /* comment that never ends")?;
                        self.at += 2 + close + 2;
                    }
                    _ => return Err("a stray '/'"),
                },
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self) -> Step<Value> {
        let start = self.at;
        match self.peek() {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => {
                self.string()?;
                Ok(Value {
                    start,
                    end: self.at,
                    kind: Kind::Scalar,
                })
            }
            Some(b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
                while matches!(
                    self.peek(),
                    Some(b'-' | b'+' | b'.' | b'0'..=b'9' | b'a'..=b'z' | b'E')
                ) {
                    self.at += 1;
                }
                let token = &self.text[start..self.at];
                let ok = matches!(token, b"true" | b"false" | b"null")
                    || serde_json::from_slice::<serde_json::Number>(token).is_ok();
                if !ok {
                    self.at = start;
                    return Err("not a JSON value");
                }
                Ok(Value {
                    start,
                    end: self.at,
                    kind: Kind::Scalar,
                })
            }
            None => Err("the file ends where a value should be"),
            _ => Err("not a JSON value"),
        }
    }

    /// A string; returns it unescaped.
    fn string(&mut self) -> Step<String> {
        let start = self.at;
        self.at += 1;
        loop {
            match self.peek() {
                None => {
                    self.at = start;
                    return Err("a string that never ends");
                }
                Some(b'"') => break,
                Some(b'\\') => self.at += 2,
                Some(b'\n') => return Err("a line break inside a string"),
                Some(_) => self.at += 1,
            }
        }
        self.at += 1;
        serde_json::from_slice(&self.text[start..self.at]).map_err(|_| "a malformed string")
    }

    fn nest(&mut self) -> Step<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("nested too deeply");
        }
        Ok(())
    }

    fn object(&mut self) -> Step<Value> {
        let start = self.at;
        self.nest()?;
        self.at += 1;
        let mut members = Vec::new();
        loop {
            self.skip_blank()?;
            match self.peek() {
                Some(b'}') => break,
                Some(b'"') => {}
                None => return Err("an object that never closes"),
                _ => return Err("expected a \"key\" or '}'"),
            }
            let key_start = self.at;
            let key = self.string()?;
            self.skip_blank()?;
            if self.peek() != Some(b':') {
                return Err("expected ':' after the key");
            }
            self.at += 1;
            self.skip_blank()?;
            let value = self.value()?;
            self.skip_blank()?;
            let comma = (self.peek() == Some(b',')).then_some(self.at);
            members.push(Member {
                key,
                key_start,
                value,
                comma,
            });
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => break,
                None => return Err("an object that never closes"),
                _ => return Err("expected ',' or '}'"),
            }
        }
        self.at += 1;
        self.depth -= 1;
        Ok(Value {
            start,
            end: self.at,
            kind: Kind::Object(members),
        })
    }

    fn array(&mut self) -> Step<Value> {
        let start = self.at;
        self.nest()?;
        self.at += 1;
        loop {
            self.skip_blank()?;
            match self.peek() {
                Some(b']') => break,
                None => return Err("an array that never closes"),
                _ => {}
            }
            self.value()?;
            self.skip_blank()?;
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => break,
                None => return Err("an array that never closes"),
                _ => return Err("expected ',' or ']'"),
            }
        }
        self.at += 1;
        self.depth -= 1;
        Ok(Value {
            start,
            end: self.at,
            kind: Kind::Array,
        })
    }
}

fn line_column(text: &[u8], at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |n| n + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

/// The whitespace that starts the line holding `at`.
pub fn indent_at(text: &str, at: usize) -> &str {
    let line_start = text[..at].rfind('\n').map_or(0, |n| n + 1);
    let line = &text[line_start..];
    let n = line.len() - line.trim_start_matches([' ', '\t']).len();
    &line[..n]
}

/// One indentation step as the file writes it (the first indented line's), else two spaces.
pub fn indent_unit(text: &str) -> String {
    text.lines()
        .skip(1)
        .map(|l| &l[..l.len() - l.trim_start_matches([' ', '\t']).len()])
        .find(|w| !w.is_empty())
        .unwrap_or("  ")
        .to_owned()
}

/// The file's line ending: `\r\n` when it uses them, else `\n`.
pub fn newline(text: &str) -> &'static str {
    if text.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    }
}

/// Text splices, applied from the end so earlier offsets stay true.
#[derive(Default)]
pub struct Edit {
    splices: Vec<(usize, usize, String)>,
}

impl Edit {
    pub fn replace(&mut self, start: usize, end: usize, with: String) {
        self.splices.push((start, end, with));
    }

    /// Splices at the same place land in the order they were made.
    pub fn apply(self, text: &str) -> String {
        let mut splices: Vec<_> = self.splices.into_iter().enumerate().collect();
        splices.sort_by_key(|(i, s)| std::cmp::Reverse((s.0, s.1, *i)));
        let mut out = text.to_owned();
        for (_, (start, end, with)) in splices {
            out.replace_range(start..end, &with);
        }
        out
    }
}

/// Add `"key": value_text` as the last member of `object`, indented like its siblings
/// (or one step in from the object's own line). A comment on the last member's line
/// stays with that member.
pub fn insert_member(text: &str, object: &Value, key: &str, value_text: &str) -> String {
    let nl = newline(text);
    let key_json = serde_json::to_string(key).unwrap_or_default();
    let mut edit = Edit::default();
    match object.members().last() {
        Some(last) => {
            let indent = indent_at(text, last.key_start);
            let value = reindent(value_text, indent, nl);
            // After the value, its comma, and a comment on the same line.
            let mut at = last.comma.map_or(last.value.end, |c| c + 1);
            let rest = &text[at..object.end - 1];
            let line_end = rest.find('\n').map_or(rest.len(), |n| n);
            let same_line = rest[..line_end].trim_end_matches('\r').trim();
            let comment_only = same_line.starts_with("//")
                || (same_line.starts_with("/*") && same_line.ends_with("*/"));
            if same_line.is_empty() || comment_only {
                at += rest[..line_end].trim_end_matches('\r').len();
            }
            if last.comma.is_none() {
                edit.replace(last.value.end, last.value.end, ",".into());
            }
            // A trailing comma stays a trailing comma: the new last member takes
            // one too, and the old one keeps its own.
            let comma = if last.comma.is_some() { "," } else { "" };
            edit.replace(at, at, format!("{nl}{indent}{key_json}: {value}{comma}"));
        }
        None => {
            let outer = indent_at(text, object.start);
            let indent = format!("{outer}{}", indent_unit(text));
            let value = reindent(value_text, &indent, nl);
            edit.replace(
                object.start + 1,
                object.end - 1,
                format!("{nl}{indent}{key_json}: {value}{nl}{outer}"),
            );
        }
    }
    edit.apply(text)
}

/// Replace a member's value, keeping its key, comments and comma.
pub fn replace_value(text: &str, member: &Member, value_text: &str) -> String {
    let indent = indent_at(text, member.key_start);
    let mut edit = Edit::default();
    edit.replace(
        member.value.start,
        member.value.end,
        reindent(value_text, indent, newline(text)),
    );
    edit.apply(text)
}

/// Remove member `index` of `object` with its line, and the comma that no longer
/// separates anything.
pub fn remove_member(text: &str, object: &Value, index: usize) -> String {
    let members = object.members();
    let member = &members[index];
    // From the start of its line, when only whitespace is before it there.
    let line_start = text[..member.key_start].rfind('\n').map_or(0, |n| n + 1);
    let mut start = if text[line_start..member.key_start].trim().is_empty() {
        line_start
    } else {
        member.key_start
    };
    let mut end = member.comma.map_or(member.value.end, |c| c + 1);
    // Through the end of its line, when only whitespace (or a comment) is left there.
    let rest_end = text[end..].find('\n').map_or(text.len(), |n| end + n);
    let rest = text[end..rest_end].trim();
    if (rest.is_empty() || rest.starts_with("//")) && start == line_start && rest_end < object.end {
        end = (rest_end + 1).min(text.len());
    } else if start == line_start && start > object.start + 1 {
        // Something stays on its line (the closing brace): the line break before
        // it goes instead.
        start -= 1;
        if text[..start].ends_with('\r') {
            start -= 1;
        }
    }
    let mut edit = Edit::default();
    if member.comma.is_none() && index > 0 {
        // The last member goes: the one before it loses its comma.
        if let Some(c) = members[index - 1].comma {
            edit.replace(c, c + 1, String::new());
        }
    }
    let inside = object.start + 1..object.end - 1;
    if members.len() == 1
        && text[inside.start..start].trim().is_empty()
        && text[end..inside.end].trim().is_empty()
    {
        // The only member, with nothing else between the braces: `{}`.
        start = inside.start;
        end = inside.end;
    }
    edit.replace(start, end, String::new());
    edit.apply(text)
}

/// Indent every line after the first of a rendered value by `indent`, lines joined by `nl`.
pub fn reindent(value_text: &str, indent: &str, nl: &str) -> String {
    value_text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                l.to_owned()
            } else {
                format!("{indent}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join(nl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(text: &str) -> String {
        let root = parse(text).unwrap();
        insert_member(text, &root, "k", "[1]")
    }

    #[test]
    fn insert_keeps_the_rest_and_reads_back() {
        for (before, after) in [
            ("{}", "{\n  \"k\": [1]\n}"),
            ("{ }", "{\n  \"k\": [1]\n}"),
            ("{\"a\": 1}", "{\"a\": 1,\n\"k\": [1]}"),
            ("{\n  \"a\": 1\n}\n", "{\n  \"a\": 1,\n  \"k\": [1]\n}\n"),
            (
                "{\n  \"a\": 1, // one\n}",
                "{\n  \"a\": 1, // one\n  \"k\": [1],\n}",
            ),
            (
                "{\n  \"a\": 1 // one\n}",
                "{\n  \"a\": 1, // one\n  \"k\": [1]\n}",
            ),
            (
                "\u{feff}{\n\t\"a\": \"}\"\n}",
                "\u{feff}{\n\t\"a\": \"}\",\n\t\"k\": [1]\n}",
            ),
        ] {
            let got = add(before);
            assert_eq!(got, after, "{before:?}");
            let root = parse(&got).unwrap();
            assert!(root.member("k").is_some(), "{got}");
            let index = root.members().len() - 1;
            let emptied = before.replace("{ }", "{}");
            assert_eq!(remove_member(&got, &root, index), emptied, "{got:?}");
        }
    }

    #[test]
    fn bad_documents_say_where() {
        for (text, line, column) in [
            ("{\"a\" 1}", 1, 6),
            ("{\n  \"a\": 1\n  \"b\": 2\n}", 3, 3),
            ("{\"a\": [1, 2}", 1, 12),
            ("{} {}", 1, 4),
            ("/* open", 1, 1),
            ("{\"a\": \"x", 1, 7),
            ("", 1, 1),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!((e.line, e.column), (line, column), "{text:?}: {e}");
        }
        let deep = "[".repeat(100_000);
        assert_eq!(parse(&deep).unwrap_err().what, "nested too deeply");
    }
}
