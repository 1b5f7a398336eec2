//! The Link machine: one MCP session with the remote server over Streamable HTTP.
//!
//! ```text
//! idle ──host initialize──► negotiating ──InitializeAnswered──► live
//!                              │ InitializeFailed ─► idle          │ host's notifications/initialized
//!                                                                  ▼
//!        live ◄──InitializedDelivered── confirming ◄──ReinitAnswered── reinitializing
//!                                                   live ──SessionExpired (404)──► reinitializing
//! any ──ShutdownRequested──► closed
//! ```
//!
//! `confirming` and `reinitializing` hold new messages back: a request must not
//! overtake the `notifications/initialized` that opens the session (separate
//! POSTs may reach the server in any order), nor go out while there is no session.
//!
//! The link decides what happens to each message the host sends (post it now,
//! hold it while the session is being re-established, or fail it), and when the
//! session is re-initialized. MCP 2025-11-25 transports §Session Management
//! item 4: a 404 to a request carrying `Mcp-Session-Id` means the session is
//! gone and the client MUST start a new one with a fresh `InitializeRequest`.
//! The proxy replays the host's own `initialize` under a reserved id, sends
//! `notifications/initialized`, then posts the held messages again; the host
//! never sees a second initialize result. A message is retried at most once
//! (a server that keeps answering 404 gets errors, not a loop).
//!
//! Messages are named by a sequence number (`seq`) the actor assigns; the
//! actor keeps their bytes, the machine only decides.
//!
//! Driving contract: `handle_with_context(&event, &mut outbox)`, then perform
//! every effect in `outbox` in order.

// statig generates the `State` and `Superstate` enums without docs.
#![allow(missing_docs)]

use crate::jsonrpc::{Kind, RESERVED_ID_PREFIX};
use statig::prelude::*;

/// Inputs of the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// The host sent a message (the actor retains its bytes under `seq`).
    HostSent {
        /// The actor's handle on the message.
        seq: u64,
        /// Request, notification or response.
        kind: Kind,
        /// Its method, if any.
        method: Option<String>,
    },
    /// The server answered the host's `initialize`.
    InitializeAnswered {
        /// `Mcp-Session-Id` of that HTTP response, if the server issued one.
        session_id: Option<String>,
        /// `protocolVersion` of the result.
        protocol_version: Option<String>,
    },
    /// The host's `initialize` failed (error answer or transport failure).
    InitializeFailed,
    /// A POST that carried `Mcp-Session-Id` was answered 404.
    SessionExpired {
        /// The message that got the 404.
        seq: u64,
        /// Whether that message had already been re-sent once after a re-initialization.
        retried: bool,
    },
    /// The server answered the proxy's replayed `initialize`.
    ReinitAnswered {
        /// The new session id.
        session_id: Option<String>,
        /// The version negotiated this time.
        protocol_version: Option<String>,
    },
    /// The replayed `initialize` failed.
    ReinitFailed {
        /// Why, for the errors given to the held requests.
        reason: String,
    },
    /// The POST of `notifications/initialized` (the host's, or the proxy's after a
    /// re-initialization) ended, or waiting for it took too long.
    InitializedDelivered,
    /// The host went away or a signal arrived.
    ShutdownRequested,
}

/// Outputs of the link, to be performed in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEffect {
    /// POST the message `seq` now, with the current session headers.
    Post {
        /// The message.
        seq: u64,
        /// Whether this is a re-send after re-initialization.
        retry: bool,
    },
    /// Answer the request `seq` with an error (drop it if it is not a request).
    Fail {
        /// The message.
        seq: u64,
        /// What went wrong, for the host.
        reason: String,
    },
    /// POST the host's `initialize` again under this reserved id, without a session id.
    PostReinitialize {
        /// The reserved request id to use.
        id: String,
    },
    /// POST `notifications/initialized` (after a re-initialization).
    PostInitialized,
    /// Open (or re-open) the standalone GET stream.
    OpenGetStream,
    /// Close the standalone GET stream.
    CloseGetStream,
    /// DELETE the session (best effort).
    DeleteSession,
}

/// The effects of one step.
#[derive(Debug, Default)]
pub struct LinkOutbox(pub Vec<LinkEffect>);

/// Shared storage of the link machine.
#[derive(Debug, Default)]
pub struct Link {
    /// `Mcp-Session-Id` to send on every request (MCP transports §Session Management item 2).
    session_id: Option<String>,
    /// Negotiated version, sent as `MCP-Protocol-Version` (MCP 2025-06-18+ §Protocol Version Header).
    protocol_version: Option<String>,
    /// Whether the host has sent `notifications/initialized`, after which the GET stream may open.
    host_initialized: bool,
    /// Whether the host's `initialize` was seen (so a re-initialization is possible).
    has_initialize: bool,
    /// Messages held while re-initializing or confirming, in arrival order, with their retry flag.
    held: Vec<(u64, bool)>,
    /// Whether the GET stream is to be (re)opened when the session is confirmed.
    open_get_when_confirmed: bool,
    /// How many re-initializations were started, for unique reserved ids.
    reinit_count: u64,
}

impl Link {
    /// The session id to send, if any.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The protocol version header to send, if negotiated.
    pub fn protocol_version(&self) -> Option<&str> {
        self.protocol_version.as_deref()
    }

    fn hold(&mut self, seq: u64, retry: bool) {
        self.held.push((seq, retry));
    }

    fn start_reinit(&mut self, context: &mut LinkOutbox) -> Outcome<State> {
        self.reinit_count += 1;
        self.session_id = None;
        context.0.push(LinkEffect::CloseGetStream);
        context.0.push(LinkEffect::PostReinitialize {
            id: format!("{RESERVED_ID_PREFIX}reinit-{}", self.reinit_count),
        });
        Transition(State::reinitializing())
    }
}

#[state_machine(
    initial = "State::idle()",
    state(derive(Debug, Clone, PartialEq, Eq)),
    superstate(derive(Debug))
)]
impl Link {
    /// No session yet: waiting for the host's `initialize`.
    #[state(superstate = "open")]
    fn idle(&mut self, event: &LinkEvent, context: &mut LinkOutbox) -> Outcome<State> {
        match event {
            LinkEvent::HostSent { seq, method, .. } if method.as_deref() == Some("initialize") => {
                self.has_initialize = true;
                context.0.push(LinkEffect::Post {
                    seq: *seq,
                    retry: false,
                });
                Transition(State::negotiating())
            }
            _ => Super,
        }
    }

    /// The host's `initialize` is on its way; nothing is held back meanwhile.
    #[state(superstate = "open")]
    fn negotiating(&mut self, event: &LinkEvent) -> Outcome<State> {
        match event {
            LinkEvent::InitializeAnswered {
                session_id,
                protocol_version,
            } => {
                self.session_id = session_id.clone();
                self.protocol_version = protocol_version.clone();
                Transition(State::live())
            }
            LinkEvent::InitializeFailed => Transition(State::idle()),
            _ => Super,
        }
    }

    /// A session is established (or the server is stateless).
    #[state(superstate = "open")]
    fn live(&mut self, event: &LinkEvent, context: &mut LinkOutbox) -> Outcome<State> {
        match event {
            LinkEvent::SessionExpired {
                seq,
                retried: false,
            } if self.has_initialize => {
                self.hold(*seq, true);
                self.start_reinit(context)
            }
            LinkEvent::SessionExpired { seq, .. } => {
                context.0.push(LinkEffect::Fail {
                    seq: *seq,
                    reason: "the server no longer knows this session (HTTP 404) and re-initializing did not help"
                        .into(),
                });
                Handled
            }
            LinkEvent::HostSent {
                seq,
                method,
                kind: Kind::Notification,
            } if method.as_deref() == Some("notifications/initialized")
                && !self.host_initialized =>
            {
                self.host_initialized = true;
                self.open_get_when_confirmed = true;
                context.0.push(LinkEffect::Post {
                    seq: *seq,
                    retry: false,
                });
                Transition(State::confirming())
            }
            LinkEvent::HostSent { seq, method, .. } if method.as_deref() == Some("initialize") => {
                // A host that initializes again starts a new session from scratch.
                self.session_id = None;
                self.protocol_version = None;
                self.host_initialized = false;
                context.0.push(LinkEffect::CloseGetStream);
                context.0.push(LinkEffect::Post {
                    seq: *seq,
                    retry: false,
                });
                Transition(State::negotiating())
            }
            _ => Super,
        }
    }

    /// The session expired: the host's `initialize` is being replayed, new messages wait.
    #[state(superstate = "holding")]
    fn reinitializing(&mut self, event: &LinkEvent, context: &mut LinkOutbox) -> Outcome<State> {
        match event {
            LinkEvent::ReinitAnswered {
                session_id,
                protocol_version,
            } => {
                self.session_id = session_id.clone();
                self.protocol_version = protocol_version.clone();
                self.open_get_when_confirmed = self.host_initialized;
                context.0.push(LinkEffect::PostInitialized);
                Transition(State::confirming())
            }
            LinkEvent::ReinitFailed { reason } => {
                for (seq, _) in std::mem::take(&mut self.held) {
                    context.0.push(LinkEffect::Fail {
                        seq,
                        reason: format!(
                            "the session expired and could not be re-established: {reason}"
                        ),
                    });
                }
                Transition(State::live())
            }
            _ => Super,
        }
    }

    /// `notifications/initialized` is on its way; what comes after it waits.
    #[state(superstate = "holding")]
    fn confirming(&mut self, event: &LinkEvent, context: &mut LinkOutbox) -> Outcome<State> {
        match event {
            LinkEvent::InitializedDelivered => {
                if std::mem::take(&mut self.open_get_when_confirmed) {
                    // The optional GET stream (transports §Listening for Messages from the Server).
                    context.0.push(LinkEffect::OpenGetStream);
                }
                for (seq, retry) in std::mem::take(&mut self.held) {
                    context.0.push(LinkEffect::Post { seq, retry });
                }
                Transition(State::live())
            }
            _ => Super,
        }
    }

    /// Messages wait here until the session is usable again.
    #[superstate(superstate = "open")]
    fn holding(&mut self, event: &LinkEvent, context: &mut LinkOutbox) -> Outcome<State> {
        match event {
            LinkEvent::HostSent { seq, .. } => {
                self.hold(*seq, false);
                Handled
            }
            LinkEvent::SessionExpired { seq, retried } => {
                // Another POST of the old session came back 404 meanwhile.
                if *retried {
                    context.0.push(LinkEffect::Fail {
                        seq: *seq,
                        reason: "the server no longer knows this session (HTTP 404)".into(),
                    });
                } else {
                    self.hold(*seq, true);
                }
                Handled
            }
            _ => Super,
        }
    }

    /// Behaviour common to every state before shutdown.
    #[superstate]
    fn open(&mut self, event: &LinkEvent, context: &mut LinkOutbox) -> Outcome<State> {
        match event {
            LinkEvent::HostSent { seq, method, kind } => {
                context.0.push(LinkEffect::Post {
                    seq: *seq,
                    retry: false,
                });
                if *kind == Kind::Notification
                    && method.as_deref() == Some("notifications/initialized")
                    && !self.host_initialized
                {
                    self.host_initialized = true;
                    // The optional GET stream (transports §Listening for Messages from the Server).
                    context.0.push(LinkEffect::OpenGetStream);
                }
                Handled
            }
            LinkEvent::SessionExpired { seq, .. } => {
                context.0.push(LinkEffect::Fail {
                    seq: *seq,
                    reason: "the server answered 404 Not Found".into(),
                });
                Handled
            }
            LinkEvent::ShutdownRequested => {
                for (seq, _) in std::mem::take(&mut self.held) {
                    context.0.push(LinkEffect::Fail {
                        seq,
                        reason: "the proxy is shutting down".into(),
                    });
                }
                context.0.push(LinkEffect::CloseGetStream);
                if self.session_id.is_some() {
                    context.0.push(LinkEffect::DeleteSession);
                }
                Transition(State::closed())
            }
            _ => Handled,
        }
    }

    /// Shut down: every further message fails.
    #[state]
    fn closed(event: &LinkEvent, context: &mut LinkOutbox) -> Outcome<State> {
        if let LinkEvent::HostSent { seq, .. } = event {
            context.0.push(LinkEffect::Fail {
                seq: *seq,
                reason: "the proxy is shutting down".into(),
            });
        }
        Handled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sent(seq: u64, method: &str) -> LinkEvent {
        let kind = if method.starts_with("notifications/") {
            Kind::Notification
        } else {
            Kind::Request
        };
        LinkEvent::HostSent {
            seq,
            kind,
            method: Some(method.into()),
        }
    }

    fn step(sm: &mut StateMachine<Link>, e: LinkEvent) -> Vec<LinkEffect> {
        let mut out = LinkOutbox::default();
        sm.handle_with_context(&e, &mut out);
        out.0
    }

    #[test]
    fn happy_path_then_session_expiry_replays_and_retries() {
        let mut sm = Link::default().state_machine();
        let post = |seq, retry| LinkEffect::Post { seq, retry };
        assert_eq!(step(&mut sm, sent(1, "initialize")), vec![post(1, false)]);
        let answered = LinkEvent::InitializeAnswered {
            session_id: Some("s1".into()),
            protocol_version: Some("2025-06-18".into()),
        };
        step(&mut sm, answered);
        assert_eq!(sm.state(), &State::live());
        assert_eq!(sm.session_id(), Some("s1"));
        assert_eq!(
            step(&mut sm, sent(2, "notifications/initialized")),
            vec![post(2, false)]
        );
        assert!(
            step(&mut sm, sent(3, "tools/list")).is_empty(),
            "waits for initialized to be delivered"
        );
        assert_eq!(
            step(&mut sm, LinkEvent::InitializedDelivered),
            vec![LinkEffect::OpenGetStream, post(3, false)]
        );
        let e = step(
            &mut sm,
            LinkEvent::SessionExpired {
                seq: 3,
                retried: false,
            },
        );
        let reinit = LinkEffect::PostReinitialize {
            id: "mcp-remote-reinit-1".into(),
        };
        assert_eq!(e, vec![LinkEffect::CloseGetStream, reinit]);
        assert_eq!(
            sm.session_id(),
            None,
            "a new initialize goes without the old session id"
        );
        assert!(
            step(&mut sm, sent(4, "ping")).is_empty(),
            "held while re-initializing"
        );
        let answered = LinkEvent::ReinitAnswered {
            session_id: Some("s2".into()),
            protocol_version: Some("2025-06-18".into()),
        };
        assert_eq!(step(&mut sm, answered), vec![LinkEffect::PostInitialized]);
        assert!(
            step(&mut sm, sent(5, "ping")).is_empty(),
            "held until initialized is delivered"
        );
        assert_eq!(
            step(&mut sm, LinkEvent::InitializedDelivered),
            vec![
                LinkEffect::OpenGetStream,
                post(3, true),
                post(4, false),
                post(5, false)
            ]
        );
        assert_eq!(sm.session_id(), Some("s2"));
        let e = step(
            &mut sm,
            LinkEvent::SessionExpired {
                seq: 3,
                retried: true,
            },
        );
        assert!(
            matches!(&e[..], [LinkEffect::Fail { seq: 3, .. }]),
            "no loop: {e:?}"
        );
        let e = step(&mut sm, LinkEvent::ShutdownRequested);
        assert_eq!(
            e,
            vec![LinkEffect::CloseGetStream, LinkEffect::DeleteSession]
        );
        assert!(matches!(
            &step(&mut sm, sent(9, "ping"))[..],
            [LinkEffect::Fail { seq: 9, .. }]
        ));
    }

    #[test]
    fn failed_reinit_fails_every_held_message() {
        let mut sm = Link::default().state_machine();
        step(&mut sm, sent(1, "initialize"));
        step(
            &mut sm,
            LinkEvent::InitializeAnswered {
                session_id: Some("s".into()),
                protocol_version: None,
            },
        );
        step(
            &mut sm,
            LinkEvent::SessionExpired {
                seq: 5,
                retried: false,
            },
        );
        step(&mut sm, sent(6, "tools/call"));
        let e = step(
            &mut sm,
            LinkEvent::ReinitFailed {
                reason: "HTTP 500".into(),
            },
        );
        assert!(
            matches!(
                &e[..],
                [
                    LinkEffect::Fail { seq: 5, .. },
                    LinkEffect::Fail { seq: 6, .. }
                ]
            ),
            "{e:?}"
        );
        assert_eq!(sm.state(), &State::live());
    }

    fn event() -> impl Strategy<Value = LinkEvent> {
        prop_oneof![
            (
                0u64..50,
                prop_oneof![
                    Just("initialize"),
                    Just("ping"),
                    Just("notifications/initialized")
                ]
            )
                .prop_map(|(s, m)| sent(s, m)),
            Just(LinkEvent::InitializeAnswered {
                session_id: Some("s".into()),
                protocol_version: None
            }),
            Just(LinkEvent::InitializeFailed),
            (0u64..50, any::<bool>())
                .prop_map(|(seq, retried)| LinkEvent::SessionExpired { seq, retried }),
            Just(LinkEvent::ReinitAnswered {
                session_id: Some("t".into()),
                protocol_version: None
            }),
            Just(LinkEvent::ReinitFailed { reason: "x".into() }),
            Just(LinkEvent::InitializedDelivered),
            Just(LinkEvent::ShutdownRequested),
        ]
    }

    proptest! {
        /// Every message the host sends is eventually posted or failed (never lost
        /// once the session settles), a retried message is never retried again, and
        /// the reserved ids of re-initializations never repeat.
        #[test]
        fn no_message_is_lost_or_retried_twice(events in proptest::collection::vec(event(), 0..80)) {
            let mut sm = Link::default().state_machine();
            let mut reinit_ids = std::collections::HashSet::new();
            for e in events.iter().cloned() {
                let effects = step(&mut sm, e.clone());
                for eff in &effects {
                    if let LinkEffect::PostReinitialize { id } = eff {
                        prop_assert!(id.starts_with(RESERVED_ID_PREFIX));
                        prop_assert!(reinit_ids.insert(id.clone()));
                    }
                }
                if let LinkEvent::SessionExpired { seq, retried: true } = e {
                    let again = LinkEffect::Post { seq, retry: true };
                    prop_assert!(!effects.contains(&again));
                }
                if let LinkEvent::HostSent { seq, .. } = e {
                    let disposed = effects.iter().any(|x| matches!(x, LinkEffect::Post { seq: s, .. } | LinkEffect::Fail { seq: s, .. } if *s == seq));
                    let holding = matches!(sm.state(), State::Reinitializing {} | State::Confirming {});
                    prop_assert!(disposed || holding);
                }
            }
            // Settle: whatever is held comes out on a re-init answer, or on shutdown.
            let held = sm.held.len();
            let out = step(&mut sm, LinkEvent::ShutdownRequested);
            let failed = out.iter().filter(|x| matches!(x, LinkEffect::Fail { .. })).count();
            prop_assert_eq!(failed, held);
        }
    }
}
