//! Multi-round-trip requests (MCP 2026-07-28 `basic/patterns/mrtr.mdx`) for a
//! host of an older revision: a modern server that needs the user or the model
//! answers `tools/call`, `prompts/get` or `resources/read` with an
//! `InputRequiredResult`. Its `inputRequests` become real server→client requests
//! to the host (`elicitation/create`, `sampling/createMessage`, `roots/list`)
//! under the proxy's own ids; once every one is answered the original request is
//! sent again with the answers in `inputResponses`, the `requestState` echoed
//! exactly (only when the server sent one), and a new JSON-RPC id. The host's
//! request stays the one entry of the table: its id is restored on the final
//! answer, it is answered once, and a cancellation reaches whichever round is on
//! the wire.
//!
//! Bounds: [`MAX_ROUNDS`] rounds per request, [`MAX_QUESTIONS`] questions per
//! round, and [`LEG_TIMEOUT`] for the host's answers of one round.

use super::{Engine, Stage, Timer};
use crate::error::RequestError;
use crate::jsonrpc::{IdKey, Kind, Message, RESERVED_ID_PREFIX};
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

/// Most rounds of one request.
pub const MAX_ROUNDS: u32 = 8;
/// Most questions in one round.
pub const MAX_QUESTIONS: usize = 16;
/// How long the host has to answer one round's questions (a person may be asked).
pub const LEG_TIMEOUT: Duration = Duration::from_secs(600);

/// A host request in its rounds.
#[derive(Debug)]
pub(super) struct Rounds {
    /// The host's request as it sent it (params are reused on every round).
    original: Value,
    /// Rounds done.
    round: u32,
    /// The server's `requestState` of this round, if it sent one.
    state: Option<String>,
    /// Answers so far, by the server's input key.
    answers: Map<String, Value>,
    /// Questions still open.
    open: usize,
}

impl Engine {
    /// A modern server's answer to request `key` (arrival `seq`): when it asks for
    /// input, the round starts and `true` is returned (nothing goes to the host yet).
    pub(super) fn input_required(&mut self, key: &IdKey, message: &Message, now: Instant) -> bool {
        // A host of 2026-07-28 does its own rounds.
        if !self.modern() || self.host_modern || message.kind != Kind::Response || message.is_error
        {
            return false;
        }
        let Some(seq) = self.owed.get(key).copied() else {
            return false;
        };
        let Some(result) = message.result() else {
            return false;
        };
        if result.get("resultType").and_then(Value::as_str) != Some("input_required") {
            return false;
        }
        let original = match self.rounds.get(&seq) {
            Some(r) => r.original.clone(),
            None => match self
                .messages
                .get(&seq)
                .and_then(|e| serde_json::from_slice::<Value>(&e.bytes).ok())
            {
                Some(v) => v,
                None => return false,
            },
        };
        let round = self.rounds.get(&seq).map_or(0, |r| r.round) + 1;
        if round > MAX_ROUNDS {
            self.rounds.remove(&seq);
            self.fail_key(key, RequestError::InputRounds(MAX_ROUNDS));
            return true;
        }
        let requests = result
            .get("inputRequests")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if requests.len() > MAX_QUESTIONS {
            self.rounds.remove(&seq);
            self.fail_key(
                key,
                RequestError::InputQuestions(requests.len(), MAX_QUESTIONS),
            );
            return true;
        }
        let state = result
            .get("requestState")
            .and_then(Value::as_str)
            .map(str::to_owned);
        self.rounds.insert(
            seq,
            Rounds {
                original,
                round,
                state,
                answers: Map::new(),
                open: 0,
            },
        );
        // The host's entry waits for the next round: its POST has nothing more for
        // it (a stream still open is closed).
        if let Some(entry) = self.messages.get_mut(&seq) {
            if let Stage::Posted { exchange, .. } = entry.stage {
                entry.stage = Stage::Held;
                self.abort(exchange);
            }
        }
        let capabilities = self
            .modern_meta
            .as_ref()
            .map(|m| m.capabilities.clone())
            .unwrap_or(Value::Null);
        for (input, request) in requests {
            let method = request.get("method").and_then(Value::as_str).unwrap_or("");
            let params = request.get("params").cloned();
            let capability = match method {
                "elicitation/create" => "elicitation",
                "sampling/createMessage" => "sampling",
                "roots/list" => "roots",
                _ => {
                    self.rounds.remove(&seq);
                    self.fail_key(key, RequestError::InputUnknown(method.to_owned()));
                    return true;
                }
            };
            if capabilities.get(capability).is_none() {
                // The host cannot be asked: answer as a host without it would.
                let answer = match capability {
                    "elicitation" => json!({"action": "decline"}),
                    "roots" => json!({"roots": []}),
                    _ => {
                        self.rounds.remove(&seq);
                        self.fail_key(key, RequestError::InputUnknown(method.to_owned()));
                        return true;
                    }
                };
                if let Some(r) = self.rounds.get_mut(&seq) {
                    r.answers.insert(input, answer);
                }
                continue;
            }
            self.questions_asked += 1;
            let id = format!("{RESERVED_ID_PREFIX}input-{}", self.questions_asked);
            let params = match (method, params) {
                // A 2025-11-25 URL elicitation needs an id; 2026-07-28 has none.
                ("elicitation/create", Some(mut p)) if p["mode"] == "url" => {
                    if p.get("elicitationId").is_none() {
                        p["elicitationId"] = Value::String(id.clone());
                    }
                    Some(p)
                }
                (_, p) => p,
            };
            let mut ask = json!({"jsonrpc": "2.0", "id": id, "method": method});
            if let Some(p) = params {
                ask["params"] = p;
            }
            self.questions.insert(id.clone(), (seq, input));
            if let Some(r) = self.rounds.get_mut(&seq) {
                r.open += 1;
            }
            let bytes = serde_json::to_vec(&ask).unwrap_or_default();
            self.events.push_back(super::Event::ToHost(super::HostLine {
                bytes,
                kind: Kind::Request,
                method: Some(method.to_owned()),
                id: Some(IdKey::Str(id)),
                origin: super::Origin::Proxy,
            }));
        }
        self.set_timer(now + LEG_TIMEOUT, Timer::InputLeg(seq, round));
        // Not from inside the exchange that brought the answer: at the next tick.
        self.set_timer(now, Timer::InputRound(seq));
        true
    }

    /// The host answered one of the proxy's questions. Returns whether it was one.
    pub(super) fn input_answered(&mut self, message: &Message, now: Instant) -> bool {
        let Some(IdKey::Str(id)) = &message.id_key else {
            return false;
        };
        let Some((seq, input)) = self.questions.remove(id) else {
            return false;
        };
        if message.is_error {
            let why = serde_json::from_slice::<Value>(&message.bytes)
                .ok()
                .and_then(|v| {
                    v.pointer("/error/message")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            self.end_rounds(seq, RequestError::InputRefused(why));
            return true;
        }
        let Some(result) = message.result() else {
            return true;
        };
        if let Some(r) = self.rounds.get_mut(&seq) {
            r.answers.insert(input, result);
            r.open = r.open.saturating_sub(1);
        }
        self.maybe_next_round(seq, now);
        true
    }

    /// Every question of the round is answered: send the request again.
    pub(super) fn maybe_next_round(&mut self, seq: u64, now: Instant) {
        let Some(r) = self.rounds.get(&seq) else {
            return;
        };
        if r.open > 0 {
            return;
        }
        if !matches!(self.messages.get(&seq).map(|e| e.stage), Some(Stage::Held)) {
            return;
        }
        let mut retry = r.original.clone();
        let round = r.round;
        if let Some(params) = retry.get_mut("params").and_then(Value::as_object_mut) {
            if !r.answers.is_empty() {
                params.insert("inputResponses".into(), Value::Object(r.answers.clone()));
            }
            match &r.state {
                Some(state) => {
                    params.insert("requestState".into(), Value::String(state.clone()));
                }
                None => {
                    params.remove("requestState");
                }
            }
        }
        // A new id for every round (mrtr.mdx: "The JSON-RPC id MUST be different").
        let id = format!("{RESERVED_ID_PREFIX}round-{seq}-{round}");
        if self.renumber(seq, id, retry).is_some() {
            self.post_message(seq, false, now);
        }
    }

    /// The request's rounds end without an answer from the server.
    fn end_rounds(&mut self, seq: u64, error: RequestError) {
        self.rounds.remove(&seq);
        self.questions.retain(|_, (s, _)| *s != seq);
        if let Some(key) = self.messages.get(&seq).and_then(|e| e.id_key.clone()) {
            self.fail_key(&key, error);
        }
    }

    /// The host had [`LEG_TIMEOUT`] to answer round `round` of `seq`.
    pub(super) fn input_leg_due(&mut self, seq: u64, round: u32) {
        let waiting = self
            .rounds
            .get(&seq)
            .is_some_and(|r| r.round == round && r.open > 0);
        if waiting {
            self.end_rounds(seq, RequestError::InputTimedOut(LEG_TIMEOUT));
        }
    }

    /// The arrival number of the host's request `host_key`, whatever id its current
    /// round carries.
    pub(super) fn round_of(&self, host_key: &IdKey) -> Option<u64> {
        self.rounds.keys().copied().find(|seq| {
            self.messages.get(seq).is_some_and(|e| {
                e.host_id.as_deref().and_then(|text| {
                    serde_json::value::RawValue::from_string(text.to_owned())
                        .ok()
                        .and_then(|raw| IdKey::from_raw(&raw))
                }) == Some(host_key.clone())
            })
        })
    }

    /// A request's answer arrived or it was given up: forget its rounds.
    pub(super) fn forget_rounds(&mut self, seq: u64) {
        if self.rounds.remove(&seq).is_some() {
            self.questions.retain(|_, (s, _)| *s != seq);
        }
    }
}
