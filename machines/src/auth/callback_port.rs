//! The CallbackPort machine: which loopback port the OAuth callback listener binds.
//!
//! ```text
//! planning ──Planned──► trying_preferred ──Bound──► bound
//!                         │ BindFailed (not strict)
//!                         ▼
//!                       trying_random ──Bound──► bound
//!                         │ BindFailed
//!                         ▼
//!                       failed ◄── BindFailed (strict)
//! ```
//!
//! The preferred port is the one given on the command line, else the port this
//! server's stored registration names (so it stays valid), else 3334 (the
//! original mcp-remote README). As that README promises, "whatever port you
//! specify, if it is unavailable an open port will be chosen at random" — only a
//! pinned redirect URI (pre-registered client, client ID metadata document)
//! makes the port strict, and a taken port is then an error.

// statig generates the `State` and `Superstate` enums without docs.
#![allow(missing_docs)]

use statig::prelude::*;

/// The default callback port of the original mcp-remote README.
pub const DEFAULT_PORT: u16 = 3334;

/// Inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortEvent {
    /// Start: what is known about the port.
    Planned {
        /// The positional callback port, if given.
        explicit: Option<u16>,
        /// The port of the stored registration's redirect URI, if any.
        registered: Option<u16>,
        /// The redirect URI is pinned (no other port will do).
        pinned: bool,
    },
    /// The listener is bound on this port.
    Bound {
        /// The port (the real one when 0 was asked).
        port: u16,
    },
    /// Binding failed.
    BindFailed {
        /// What the system said.
        reason: String,
    },
}

/// Outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortEffect {
    /// Bind 127.0.0.1 on this port (0: any free port).
    TryBind(u16),
    /// Listening on this port.
    Ready(u16),
    /// No port could be used.
    GiveUp(PortError),
}

/// Why no callback port could be used (this machine's fault, or the user's choice of port).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PortError {
    /// The pinned port is taken, and the registered redirect URI forbids another.
    #[error("the callback port {port} is not available ({reason}); it cannot change because the redirect URI is pinned — free the port or choose another one")]
    Pinned {
        /// The port.
        port: u16,
        /// What the system said.
        reason: String,
    },
    /// Neither the preferred port nor any other loopback port could be bound.
    #[error("no loopback port is free for the callback ({0})")]
    NoneFree(String),
}

/// The effects of one step.
#[derive(Debug, Default)]
pub struct PortOutbox(pub Vec<PortEffect>);

/// Shared storage.
#[derive(Debug, Default)]
pub struct CallbackPort {
    /// The port being tried first.
    preferred: u16,
    /// No fallback allowed.
    strict: bool,
}

#[state_machine(
    initial = "State::planning()",
    state(derive(Debug, Clone, PartialEq, Eq))
)]
impl CallbackPort {
    #[state]
    fn planning(&mut self, event: &PortEvent, context: &mut PortOutbox) -> Outcome<State> {
        match event {
            PortEvent::Planned {
                explicit,
                registered,
                pinned,
            } => {
                self.preferred = explicit.or(*registered).unwrap_or(DEFAULT_PORT);
                self.strict = *pinned;
                context.0.push(PortEffect::TryBind(self.preferred));
                Transition(State::trying_preferred())
            }
            _ => Handled,
        }
    }

    #[state]
    fn trying_preferred(&mut self, event: &PortEvent, context: &mut PortOutbox) -> Outcome<State> {
        match event {
            PortEvent::Bound { port } => {
                context.0.push(PortEffect::Ready(*port));
                Transition(State::bound())
            }
            PortEvent::BindFailed { reason } if self.strict => {
                context.0.push(PortEffect::GiveUp(PortError::Pinned {
                    port: self.preferred,
                    reason: reason.clone(),
                }));
                Transition(State::failed())
            }
            PortEvent::BindFailed { .. } => {
                context.0.push(PortEffect::TryBind(0));
                Transition(State::trying_random())
            }
            _ => Handled,
        }
    }

    #[state]
    fn trying_random(event: &PortEvent, context: &mut PortOutbox) -> Outcome<State> {
        match event {
            PortEvent::Bound { port } => {
                context.0.push(PortEffect::Ready(*port));
                Transition(State::bound())
            }
            PortEvent::BindFailed { reason } => {
                context
                    .0
                    .push(PortEffect::GiveUp(PortError::NoneFree(reason.clone())));
                Transition(State::failed())
            }
            _ => Handled,
        }
    }

    #[state]
    fn bound(event: &PortEvent) -> Outcome<State> {
        let _ = event;
        Handled
    }

    #[state]
    fn failed(event: &PortEvent) -> Outcome<State> {
        let _ = event;
        Handled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(plan: PortEvent, results: &[Result<u16, &str>]) -> Vec<PortEffect> {
        let mut sm = CallbackPort::default().state_machine();
        let mut all = Vec::new();
        let mut out = PortOutbox::default();
        sm.handle_with_context(&plan, &mut out);
        all.append(&mut out.0);
        for r in results {
            let e = match r {
                Ok(p) => PortEvent::Bound { port: *p },
                Err(why) => PortEvent::BindFailed {
                    reason: why.to_string(),
                },
            };
            sm.handle_with_context(&e, &mut out);
            all.append(&mut out.0);
        }
        all
    }

    #[test]
    fn default_then_random() {
        let e = run(
            PortEvent::Planned {
                explicit: None,
                registered: None,
                pinned: false,
            },
            &[Err("in use"), Ok(40000)],
        );
        assert_eq!(
            e,
            vec![
                PortEffect::TryBind(3334),
                PortEffect::TryBind(0),
                PortEffect::Ready(40000)
            ]
        );
    }

    #[test]
    fn registered_port_is_preferred() {
        let e = run(
            PortEvent::Planned {
                explicit: None,
                registered: Some(5555),
                pinned: false,
            },
            &[Ok(5555)],
        );
        assert_eq!(e, vec![PortEffect::TryBind(5555), PortEffect::Ready(5555)]);
    }

    #[test]
    fn only_a_pinned_redirect_is_strict() {
        let e = run(
            PortEvent::Planned {
                explicit: Some(7000),
                registered: None,
                pinned: false,
            },
            &[Err("in use"), Ok(41000)],
        );
        assert_eq!(
            e,
            vec![
                PortEffect::TryBind(7000),
                PortEffect::TryBind(0),
                PortEffect::Ready(41000)
            ]
        );
        for plan in [
            PortEvent::Planned {
                explicit: Some(7000),
                registered: None,
                pinned: true,
            },
            PortEvent::Planned {
                explicit: None,
                registered: Some(7000),
                pinned: true,
            },
        ] {
            let e = run(plan, &[Err("in use")]);
            assert_eq!(e[0], PortEffect::TryBind(7000));
            assert!(
                matches!(&e[1], PortEffect::GiveUp(m) if m.to_string().contains("7000") && m.to_string().contains("pinned")),
                "{e:?}"
            );
            assert_eq!(e.len(), 2);
        }
    }
}
