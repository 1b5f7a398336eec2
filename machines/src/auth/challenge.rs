//! `WWW-Authenticate` parsing (RFC 9110 §11.6.1, RFC 6750 §3, RFC 9728 §5.1).
//!
//! A header may carry several challenges, each a scheme followed by
//! comma-separated `name=value` auth-params whose values may be quoted strings
//! (with `\` escapes, and commas inside quotes). Schemes and parameter names are
//! case-insensitive. The proxy needs the `Bearer` challenge's
//! `resource_metadata`, `scope`, `error` and `error_description`.

use std::collections::BTreeMap;

/// One challenge: scheme (lower-cased) and its parameters (names lower-cased).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Challenge {
    /// The auth scheme, lower-cased (`bearer`).
    pub scheme: String,
    /// The auth-params; a token68 is kept under the empty name.
    pub params: BTreeMap<String, String>,
}

/// What a `Bearer` challenge tells the client.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BearerChallenge {
    /// RFC 9728 §5.1: where the protected resource metadata is.
    pub resource_metadata: Option<String>,
    /// Scopes the resource needs (space-separated).
    pub scope: Option<String>,
    /// RFC 6750 §3.1 error code (`invalid_token`, `insufficient_scope`).
    pub error: Option<String>,
    /// Human-readable explanation from the server.
    pub error_description: Option<String>,
}

/// Parse every challenge in the given header values.
pub fn parse(values: &[&str]) -> Vec<Challenge> {
    let mut out = Vec::new();
    for value in values {
        parse_one(value, &mut out);
    }
    out
}

/// The first `Bearer` challenge, if any.
pub fn bearer(values: &[&str]) -> Option<BearerChallenge> {
    let c = parse(values).into_iter().find(|c| c.scheme == "bearer")?;
    let get = |k: &str| c.params.get(k).cloned().filter(|v| !v.is_empty());
    Some(BearerChallenge {
        resource_metadata: get("resource_metadata"),
        scope: get("scope"),
        error: get("error"),
        error_description: get("error_description"),
    })
}

fn parse_one(input: &str, out: &mut Vec<Challenge>) {
    let bytes = input.as_bytes();
    let mut i = 0;
    let mut current: Option<Challenge> = None;
    while i < bytes.len() {
        skip(bytes, &mut i, |b| b == b' ' || b == b'\t' || b == b',');
        if i >= bytes.len() {
            break;
        }
        let start = i;
        while i < bytes.len() && !matches!(bytes[i], b' ' | b'\t' | b',' | b'=') {
            i += 1;
        }
        let token = &input[start..i];
        let mut j = i;
        skip(bytes, &mut j, |b| b == b' ' || b == b'\t');
        if j < bytes.len() && bytes[j] == b'=' && current.is_some() {
            // name = value
            let name = token.to_ascii_lowercase();
            j += 1;
            skip(bytes, &mut j, |b| b == b' ' || b == b'\t');
            let value = if j < bytes.len() && bytes[j] == b'"' {
                quoted(input, &mut j)
            } else {
                let s = j;
                while j < bytes.len() && !matches!(bytes[j], b',' | b' ' | b'\t') {
                    j += 1;
                }
                input[s..j].to_owned()
            };
            if let Some(c) = current.as_mut() {
                c.params.entry(name).or_insert(value);
            }
            i = j;
        } else if j < bytes.len() && bytes[j] == b'=' {
            // A token68 without a scheme before it: malformed, skip it.
            i = j + 1;
        } else {
            // A new scheme; a token68 may follow ("Basic abc==").
            if let Some(c) = current.take() {
                out.push(c);
            }
            current = Some(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
            i = j;
        }
    }
    if let Some(c) = current {
        out.push(c);
    }
}

fn skip(bytes: &[u8], i: &mut usize, pred: impl Fn(u8) -> bool) {
    while *i < bytes.len() && pred(bytes[*i]) {
        *i += 1;
    }
}

/// Read a quoted-string starting at `input[*i] == '"'`, unescaping `\x`.
fn quoted(input: &str, i: &mut usize) -> String {
    let mut out = String::new();
    let mut chars = input[*i + 1..].char_indices();
    let base = *i + 1;
    while let Some((k, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, n)) = chars.next() {
                    out.push(n);
                }
            }
            '"' => {
                *i = base + k + 1;
                return out;
            }
            _ => out.push(c),
        }
    }
    *i = input.len();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_bearer_parameters() {
        let b = bearer(&[r#"Bearer error="invalid_token", scope="a b", resource_metadata="http://m/custom/prm.json""#]).unwrap();
        assert_eq!(
            b.resource_metadata.as_deref(),
            Some("http://m/custom/prm.json")
        );
        assert_eq!(b.scope.as_deref(), Some("a b"));
        assert_eq!(b.error.as_deref(), Some("invalid_token"));
    }

    #[test]
    fn several_challenges_quotes_commas_and_case() {
        let cs = parse(&[
            r#"Basic realm="x, y", BEARER Scope="s1,s2", error=insufficient_scope, error_description="say \"hi\"""#,
        ]);
        assert_eq!(cs.len(), 2, "{cs:?}");
        assert_eq!(cs[0].params["realm"], "x, y");
        assert_eq!(cs[1].scheme, "bearer");
        assert_eq!(cs[1].params["scope"], "s1,s2");
        assert_eq!(cs[1].params["error"], "insufficient_scope");
        assert_eq!(cs[1].params["error_description"], "say \"hi\"");
        let b = bearer(&["Negotiate abc==", r#"Bearer resource_metadata="u""#]).unwrap();
        assert_eq!(b.resource_metadata.as_deref(), Some("u"));
        assert_eq!(bearer(&["Basic realm=x"]), None);
        assert_eq!(bearer(&["Bearer"]), Some(BearerChallenge::default()));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = parse(&[&s]);
            let _ = bearer(&[&s]);
        }
    }
}
