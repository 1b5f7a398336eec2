//! What the machines did, as values for `--trace` and `-v`: a machine's step (the
//! state it was in, the input, the state it went to, the effects it asked for) and
//! the engine's timers firing. The driver gives these records a time and writes
//! them (actors/src/trace.rs); the machines only build them, and only when asked
//! to ([`crate::engine::EngineConfig::trace`]), so a proxy that does not trace
//! builds none.
//!
//! Names only: an input or an effect is named by its variant (`SessionExpired`,
//! `PostReinitialize`), never printed with its data, which may hold a session id,
//! a URL with a query or a token. [`variant`] cuts the `Debug` text at the name.

use std::fmt::Debug;

/// One step of a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Which machine: `link`, `stream`, `grant`, `callback_port`.
    pub machine: &'static str,
    /// Which one, when there are several (a stream: `get`, `legacy`, `resume-3`).
    pub instance: Option<String>,
    /// The state before, in snake case (`live`, `backing_off`).
    pub from: String,
    /// The input's name (`StreamLost`).
    pub event: String,
    /// The state after.
    pub to: String,
    /// The effects' names, in order.
    pub effects: Vec<String>,
}

impl Step {
    /// The step of `machine` from `from` on `event` to `to`, asking for `effects`.
    pub fn new<S: Debug, E: Debug, F: Debug>(
        machine: &'static str,
        from: &S,
        event: &E,
        to: &S,
        effects: &[F],
    ) -> Self {
        Step {
            machine,
            instance: None,
            from: snake(&variant(from)),
            event: variant(event),
            to: snake(&variant(to)),
            effects: effects.iter().map(variant).collect(),
        }
    }

    /// The same step, naming which of several machines of its kind took it.
    pub fn of(mut self, instance: String) -> Self {
        self.instance = Some(instance);
        self
    }
}

/// A record of the engine's own.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceRecord {
    /// A machine took a step.
    Step(Step),
    /// A deadline of the engine passed: what it was for (`Watch`, `KeepAlive`,
    /// `Head`, `ResumeBudget`…).
    TimerFired {
        /// The timer's name.
        timer: String,
    },
}

/// The variant name of `value`: its `Debug` text up to the first character that
/// cannot be part of a name, so `SessionExpired { seq: 3, retried: false }` is
/// `SessionExpired` and nothing the variant carries ever leaves.
pub fn variant<T: Debug + ?Sized>(value: &T) -> String {
    let text = format!("{value:?}");
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    text[..end].to_owned()
}

/// Words that make a query parameter, a header or a JSON field secret: its value
/// is replaced by [`REDACTED`] wherever the trace shows it.
const SECRET_WORDS: [&str; 14] = [
    "token",
    "secret",
    "key",
    "pass",
    "code",
    "state",
    "session",
    "sig",
    "auth",
    "credential",
    "verifier",
    "assertion",
    "cookie",
    "bearer",
];

/// What a secret value becomes.
pub const REDACTED: &str = "[redacted]";

/// Whether a name (`access_token`, `sessionId`, `X-API-Key`) marks a secret value.
pub fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| lower.contains(w))
}

/// `url` as the trace shows it: no user or password, no fragment, and the value of
/// every query parameter whose name marks a secret ([`is_secret_name`]) redacted
/// (`?sessionId=[redacted]&page=2`).
pub fn redact_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_fragment(None);
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_name(&k) {
                    REDACTED.to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

/// A JSON body as `--trace-bodies` shows it: every value under a name that marks a
/// secret, and every string that is a bearer credential, replaced by [`REDACTED`].
pub fn redact_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            for (name, v) in map.iter_mut() {
                if is_secret_name(name) && !matches!(v, Value::Object(_) | Value::Array(_)) {
                    *v = Value::String(REDACTED.to_owned());
                } else {
                    redact_json(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::String(text) => {
            for scheme in ["bearer ", "basic "] {
                let n = scheme.len();
                if text.len() > n && text.as_bytes()[..n].eq_ignore_ascii_case(scheme.as_bytes()) {
                    *text = format!("{}{REDACTED}", &text[..n]);
                }
            }
        }
        _ => {}
    }
}

/// `BackingOff` → `backing_off`.
pub fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    #[allow(dead_code)]
    enum Sample {
        Plain,
        Tuple(String),
        Fields { secret: String },
    }

    #[test]
    fn a_variant_is_named_without_its_data() {
        assert_eq!(variant(&Sample::Plain), "Plain");
        assert_eq!(variant(&Sample::Tuple("tok-123".into())), "Tuple");
        let named = variant(&Sample::Fields {
            secret: "sk-live-1".into(),
        });
        assert_eq!(named, "Fields");
        assert!(!named.contains("sk-live"));
    }

    #[test]
    fn urls_lose_their_secrets_and_keep_the_rest() {
        let url = url::Url::parse(
            "https://user:pw@mcp.example/messages?sessionId=abc123&page=2&access_token=t0k#frag",
        )
        .unwrap();
        let shown = redact_url(&url);
        assert_eq!(
            shown,
            "https://mcp.example/messages?sessionId=%5Bredacted%5D&page=2&access_token=%5Bredacted%5D"
        );
        for secret in ["abc123", "t0k", "pw", "user", "frag"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }

    #[test]
    fn json_bodies_lose_their_secrets_and_keep_the_rest() {
        let mut body = serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "login", "arguments": {
                "apiKey": "k-1", "password": "p-2", "nested": {"refresh_token": "r-3"},
                "header": "Bearer b-4", "query": "weather", "list": [{"client_secret": "s-5"}]
            }}
        });
        redact_json(&mut body);
        let text = body.to_string();
        for secret in ["k-1", "p-2", "r-3", "b-4", "s-5"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(body["params"]["arguments"]["query"], "weather");
        assert_eq!(body["params"]["name"], "login");
        assert_eq!(body["params"]["arguments"]["header"], "Bearer [redacted]");
    }

    #[test]
    fn states_are_in_snake_case() {
        assert_eq!(snake("BackingOff"), "backing_off");
        assert_eq!(snake("Live"), "live");
        assert_eq!(snake("awaiting_callback"), "awaiting_callback");
    }

    #[test]
    fn a_step_names_states_inputs_and_effects() {
        let step = Step::new(
            "link",
            &Sample::Plain,
            &Sample::Fields { secret: "s".into() },
            &Sample::Tuple("x".into()),
            &[Sample::Plain, Sample::Tuple("y".into())],
        );
        assert_eq!(step.from, "plain");
        assert_eq!(step.event, "Fields");
        assert_eq!(step.to, "tuple");
        assert_eq!(step.effects, vec!["Plain", "Tuple"]);
    }
}
