//! The Grant machine: how the proxy gets a token when the server asks for one,
//! and when it stops trying.
//!
//! ```text
//! unauthorized ──Needed──► signing_in ──SignedIn──► authorized
//! authorized ──Needed / Expiring──► refreshing ──Refreshed──► authorized
//!                                        │ │ RefreshFailed (network, 5xx, lock busy):
//!                                        │ │   tokens kept, RetryRefresh after a backoff
//!                                        │ └──────────────────────────► authorized
//!                                        │ RefreshRejected (invalid_grant…)
//!                                        ▼
//!                                    signing_in
//! any ──too many attempts──► failed (reported; a later Needed starts afresh)
//! ```
//!
//! Limits (MCP authorization §Step-Up, retry limits): a token the server refuses
//! right after it was obtained leads to at most one more sign-in; a 403
//! `insufficient_scope` leads to at most 2 step-up sign-ins (3 authorization
//! attempts with the first); a request that succeeds with the token resets both counts.

// statig generates the `State` and `Superstate` enums without docs.
#![allow(missing_docs)]

use crate::auth::scope::step_up;
use crate::auth::AuthError;
use statig::prelude::*;

/// Most sign-ins in a row that end with the server still refusing.
pub const MAX_SIGN_INS: u32 = 2;
/// Most step-up sign-ins in a row (403 insufficient_scope): with the first
/// sign-in, at most 3 authorization attempts for one request (conformance
/// `auth/scope-retry-limit`).
pub const MAX_STEP_UPS: u32 = 2;

/// Why a token is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// 401: no token, or the token was refused.
    Unauthorized {
        /// The challenge's `scope`, if any.
        scope: Option<String>,
    },
    /// 403 `insufficient_scope`: the token lacks these scopes.
    InsufficientScope {
        /// The challenged scopes.
        scope: String,
    },
}

/// Inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantEvent {
    /// At start: what the store holds.
    Loaded {
        /// An access token is stored.
        token: bool,
        /// A refresh token is stored.
        refresh: bool,
        /// The access token is not about to expire.
        fresh: bool,
    },
    /// The server asked for (better) credentials.
    Needed(Need),
    /// The access token is about to expire.
    Expiring,
    /// A refresh gave new tokens.
    Refreshed,
    /// The authorization server said the refresh token or the client is dead
    /// (`invalid_grant`, `invalid_client`…), or there is nothing to refresh with.
    RefreshRejected,
    /// The refresh did not happen (network, 5xx, time-out, lock busy): what is
    /// stored is still good as far as anyone knows.
    RefreshFailed {
        /// Why, for a request that waits.
        error: AuthError,
    },
    /// A sign-in gave tokens.
    SignedIn,
    /// A sign-in could not complete.
    SignInFailed {
        /// Why.
        error: AuthError,
    },
    /// A request succeeded with the current token.
    TokenWorked,
}

/// Outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantEffect {
    /// Send requests with the stored access token.
    UseToken,
    /// Redeem the refresh token.
    Refresh,
    /// Run the browser sign-in with this scope (`None`: choose from the challenge/metadata).
    SignIn {
        /// A step-up scope, when the server asked for more.
        scope: Option<String>,
        /// The challenge's scope, for the first sign-in.
        challenge_scope: Option<String>,
    },
    /// Stop using the tokens in memory: the server or the authorization server
    /// refused them. (Files are forgotten only by a flow, under the lock, on a
    /// definitive answer.)
    DropTokens,
    /// Refresh again after this long (a refresh failed for a passing reason).
    RetryRefresh(std::time::Duration),
    /// Give up: tell the waiting requests why.
    Fail(AuthError),
}

/// The effects of one step.
#[derive(Debug, Default)]
pub struct GrantOutbox(pub Vec<GrantEffect>);

/// Shared storage.
#[derive(Debug, Default)]
pub struct Grant {
    /// A refresh token is available.
    can_refresh: bool,
    /// Sign-ins since a request last worked.
    sign_ins: u32,
    /// Step-ups since a request last worked.
    step_ups: u32,
    /// The scope asked for last.
    scope: Option<String>,
    /// The current token came from a refresh and no request has worked with it yet:
    /// a 401 then means the refresh does not help, so sign in instead.
    just_refreshed: bool,
    /// Refreshes in a row that failed for a passing reason (the backoff's exponent).
    refresh_failures: u32,
    /// A request waits for the flow under way: a failure is reported to it. A
    /// refresh ahead of expiry has nobody waiting, and its failure stays quiet.
    waiting: bool,
}

/// The first retry of a failed refresh, doubled each time up to [`MAX_REFRESH_RETRY`].
pub const FIRST_REFRESH_RETRY: std::time::Duration = std::time::Duration::from_secs(1);
/// The longest wait between refresh attempts (a laptop waking offline is back
/// within a minute of the network).
pub const MAX_REFRESH_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

impl Grant {
    /// A request that needs a token waits for whatever flow answers it.
    fn note_waiting(&mut self, event: &GrantEvent) {
        match event {
            GrantEvent::Needed(_) => self.waiting = true,
            GrantEvent::SignedIn | GrantEvent::SignInFailed { .. } => self.waiting = false,
            _ => {}
        }
    }

    fn sign_in(&mut self, need: &Need, context: &mut GrantOutbox) -> Outcome<State> {
        match need {
            Need::InsufficientScope { scope } => {
                if self.step_ups >= MAX_STEP_UPS {
                    context.0.push(GrantEffect::Fail(AuthError::ScopeLoop {
                        scope: scope.clone(),
                        tries: MAX_STEP_UPS,
                    }));
                    return Transition(State::failed());
                }
                self.step_ups += 1;
                let wanted = step_up(self.scope.as_deref(), scope);
                self.scope = Some(wanted.clone());
                context.0.push(GrantEffect::SignIn {
                    scope: Some(wanted),
                    challenge_scope: None,
                });
            }
            Need::Unauthorized { scope } => {
                if self.sign_ins >= MAX_SIGN_INS {
                    context.0.push(GrantEffect::Fail(AuthError::TokenRefused));
                    return Transition(State::failed());
                }
                self.sign_ins += 1;
                if let Some(s) = scope {
                    self.scope = Some(s.clone());
                }
                context.0.push(GrantEffect::SignIn {
                    scope: None,
                    challenge_scope: scope.clone(),
                });
            }
        }
        Transition(State::signing_in())
    }
}

#[state_machine(
    initial = "State::unauthorized()",
    state(derive(Debug, Clone, PartialEq, Eq))
)]
impl Grant {
    #[state]
    fn unauthorized(&mut self, event: &GrantEvent, context: &mut GrantOutbox) -> Outcome<State> {
        self.note_waiting(event);
        match event {
            GrantEvent::Loaded {
                token: true,
                refresh,
                fresh,
            } => {
                self.can_refresh = *refresh;
                if *fresh || !*refresh {
                    context.0.push(GrantEffect::UseToken);
                    Transition(State::authorized())
                } else {
                    context.0.push(GrantEffect::Refresh);
                    Transition(State::refreshing())
                }
            }
            GrantEvent::Needed(need) => self.sign_in(need, context),
            _ => Handled,
        }
    }

    #[state]
    fn authorized(&mut self, event: &GrantEvent, context: &mut GrantOutbox) -> Outcome<State> {
        self.note_waiting(event);
        match event {
            GrantEvent::TokenWorked => {
                self.sign_ins = 0;
                self.step_ups = 0;
                self.just_refreshed = false;
                Handled
            }
            GrantEvent::Expiring if self.can_refresh => {
                context.0.push(GrantEffect::Refresh);
                Transition(State::refreshing())
            }
            GrantEvent::Needed(Need::Unauthorized { .. })
                if self.can_refresh && self.sign_ins == 0 =>
            {
                context.0.push(GrantEffect::Refresh);
                Transition(State::refreshing())
            }
            GrantEvent::Needed(need) => {
                if matches!(need, Need::Unauthorized { .. }) {
                    context.0.push(GrantEffect::DropTokens);
                }
                self.sign_in(need, context)
            }
            _ => Handled,
        }
    }

    #[state]
    fn refreshing(&mut self, event: &GrantEvent, context: &mut GrantOutbox) -> Outcome<State> {
        self.note_waiting(event);
        match event {
            GrantEvent::Refreshed => {
                self.just_refreshed = true;
                self.refresh_failures = 0;
                self.waiting = false;
                context.0.push(GrantEffect::UseToken);
                Transition(State::authorized())
            }
            GrantEvent::RefreshFailed { error } => {
                let delay = FIRST_REFRESH_RETRY
                    .saturating_mul(1 << self.refresh_failures.min(6))
                    .min(MAX_REFRESH_RETRY);
                self.refresh_failures += 1;
                if std::mem::take(&mut self.waiting) {
                    context.0.push(GrantEffect::Fail(error.clone()));
                }
                context.0.push(GrantEffect::RetryRefresh(delay));
                Transition(State::authorized())
            }
            GrantEvent::RefreshRejected => {
                self.can_refresh = false;
                context.0.push(GrantEffect::DropTokens);
                self.sign_in(&Need::Unauthorized { scope: None }, context)
            }
            _ => Handled,
        }
    }

    #[state]
    fn signing_in(&mut self, event: &GrantEvent, context: &mut GrantOutbox) -> Outcome<State> {
        self.note_waiting(event);
        match event {
            GrantEvent::SignedIn => {
                self.can_refresh = true;
                context.0.push(GrantEffect::UseToken);
                Transition(State::authorized())
            }
            GrantEvent::SignInFailed { error } => {
                context.0.push(GrantEffect::Fail(error.clone()));
                Transition(State::failed())
            }
            _ => Handled,
        }
    }

    #[state]
    fn failed(&mut self, event: &GrantEvent, context: &mut GrantOutbox) -> Outcome<State> {
        self.note_waiting(event);
        match event {
            GrantEvent::Needed(need) => {
                // A new request after a failure: start afresh, once.
                self.sign_ins = 0;
                self.step_ups = 0;
                self.sign_in(need, context)
            }
            _ => Handled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop_oneof, proptest, Just};
    use proptest::strategy::Strategy as Gen;

    fn step(sm: &mut StateMachine<Grant>, e: GrantEvent) -> Vec<GrantEffect> {
        let mut out = GrantOutbox::default();
        sm.handle_with_context(&e, &mut out);
        out.0
    }

    fn unauthorized() -> GrantEvent {
        GrantEvent::Needed(Need::Unauthorized { scope: None })
    }

    #[test]
    fn stored_tokens_are_used_or_refreshed() {
        let mut sm = Grant::default().state_machine();
        assert_eq!(
            step(
                &mut sm,
                GrantEvent::Loaded {
                    token: true,
                    refresh: true,
                    fresh: true
                }
            ),
            vec![GrantEffect::UseToken]
        );
        let mut sm = Grant::default().state_machine();
        assert_eq!(
            step(
                &mut sm,
                GrantEvent::Loaded {
                    token: true,
                    refresh: true,
                    fresh: false
                }
            ),
            vec![GrantEffect::Refresh]
        );
        assert_eq!(
            step(&mut sm, GrantEvent::Refreshed),
            vec![GrantEffect::UseToken]
        );
        assert_eq!(
            step(&mut sm, GrantEvent::Expiring),
            vec![GrantEffect::Refresh],
            "refresh before expiry"
        );
    }

    #[test]
    fn a_401_refreshes_first_then_signs_in_once_then_gives_up() {
        let mut sm = Grant::default().state_machine();
        step(
            &mut sm,
            GrantEvent::Loaded {
                token: true,
                refresh: true,
                fresh: true,
            },
        );
        assert_eq!(step(&mut sm, unauthorized()), vec![GrantEffect::Refresh]);
        let e = step(&mut sm, GrantEvent::RefreshRejected);
        assert_eq!(
            e,
            vec![
                GrantEffect::DropTokens,
                GrantEffect::SignIn {
                    scope: None,
                    challenge_scope: None
                }
            ],
            "invalid_grant ⇒ one sign-in"
        );
        assert_eq!(
            step(&mut sm, GrantEvent::SignedIn),
            vec![GrantEffect::UseToken]
        );
        // The fresh token is refused: one more sign-in, then stop.
        let e = step(&mut sm, unauthorized());
        assert_eq!(
            e,
            vec![
                GrantEffect::DropTokens,
                GrantEffect::SignIn {
                    scope: None,
                    challenge_scope: None
                }
            ]
        );
        step(&mut sm, GrantEvent::SignedIn);
        let e = step(&mut sm, unauthorized());
        assert!(matches!(e.last(), Some(GrantEffect::Fail(_))), "{e:?}");
        // A request that works resets the count.
        let mut sm = Grant::default().state_machine();
        step(&mut sm, unauthorized());
        step(&mut sm, GrantEvent::SignedIn);
        step(&mut sm, GrantEvent::TokenWorked);
        assert_eq!(step(&mut sm, unauthorized()), vec![GrantEffect::Refresh]);
    }

    #[test]
    fn step_up_unions_scopes_and_stops_after_two() {
        let mut sm = Grant::default().state_machine();
        let e = step(
            &mut sm,
            GrantEvent::Needed(Need::Unauthorized {
                scope: Some("mcp:basic".into()),
            }),
        );
        assert_eq!(
            e,
            vec![GrantEffect::SignIn {
                scope: None,
                challenge_scope: Some("mcp:basic".into())
            }]
        );
        step(&mut sm, GrantEvent::SignedIn);
        let need_more = || {
            GrantEvent::Needed(Need::InsufficientScope {
                scope: "mcp:basic mcp:write".into(),
            })
        };
        let e = step(&mut sm, need_more());
        assert_eq!(
            e,
            vec![GrantEffect::SignIn {
                scope: Some("mcp:basic mcp:write".into()),
                challenge_scope: None
            }]
        );
        step(&mut sm, GrantEvent::SignedIn);
        step(&mut sm, need_more());
        step(&mut sm, GrantEvent::SignedIn);
        let e = step(&mut sm, need_more());
        assert!(
            matches!(&e[..], [GrantEffect::Fail(_)]),
            "a fourth authorization is refused: {e:?}"
        );
    }

    #[test]
    fn a_passing_refresh_failure_keeps_the_tokens_and_retries_with_backoff() {
        let mut sm = Grant::default().state_machine();
        step(
            &mut sm,
            GrantEvent::Loaded {
                token: true,
                refresh: true,
                fresh: true,
            },
        );
        let offline = || GrantEvent::RefreshFailed {
            error: AuthError::Locked,
        };
        // Ahead of expiry nobody waits: no failure reported, no tokens dropped.
        assert_eq!(
            step(&mut sm, GrantEvent::Expiring),
            vec![GrantEffect::Refresh]
        );
        assert_eq!(
            step(&mut sm, offline()),
            vec![GrantEffect::RetryRefresh(FIRST_REFRESH_RETRY)]
        );
        // A request that needs the token waits, and hears why when it fails again.
        assert_eq!(step(&mut sm, unauthorized()), vec![GrantEffect::Refresh]);
        assert_eq!(
            step(&mut sm, offline()),
            vec![
                GrantEffect::Fail(AuthError::Locked),
                GrantEffect::RetryRefresh(FIRST_REFRESH_RETRY * 2)
            ]
        );
        let mut delays = Vec::new();
        for _ in 0..10 {
            assert_eq!(
                step(&mut sm, GrantEvent::Expiring),
                vec![GrantEffect::Refresh]
            );
            for e in step(&mut sm, offline()) {
                if let GrantEffect::RetryRefresh(d) = e {
                    delays.push(d);
                }
            }
        }
        assert_eq!(delays.last(), Some(&MAX_REFRESH_RETRY));
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
        // Back online: the next refresh works and the backoff starts over.
        step(&mut sm, GrantEvent::Expiring);
        assert_eq!(
            step(&mut sm, GrantEvent::Refreshed),
            vec![GrantEffect::UseToken]
        );
        step(&mut sm, GrantEvent::Expiring);
        assert_eq!(
            step(&mut sm, offline()),
            vec![GrantEffect::RetryRefresh(FIRST_REFRESH_RETRY)]
        );
    }

    fn event() -> impl Gen<Value = GrantEvent> {
        prop_oneof![
            Just(unauthorized()),
            Just(GrantEvent::Needed(Need::InsufficientScope {
                scope: "x".into()
            })),
            Just(GrantEvent::Expiring),
            Just(GrantEvent::Refreshed),
            Just(GrantEvent::RefreshRejected),
            Just(GrantEvent::RefreshFailed {
                error: AuthError::Locked
            }),
            Just(GrantEvent::SignedIn),
            Just(GrantEvent::SignInFailed {
                error: AuthError::Locked
            }),
        ]
    }

    proptest! {
        /// Without a request ever succeeding, the number of browser sign-ins is
        /// bounded, whatever the server does.
        #[test]
        fn sign_in_storms_are_bounded(events in proptest::collection::vec(event(), 0..200)) {
            let mut sm = Grant::default().state_machine();
            let mut sign_ins = 0;
            let mut fails = 0;
            for e in events {
                for eff in step(&mut sm, e) {
                    match eff {
                        GrantEffect::SignIn { .. } => sign_ins += 1,
                        GrantEffect::Fail(_) => fails += 1,
                        _ => {}
                    }
                }
            }
            // Each failure may start one fresh round of at most MAX_SIGN_INS + MAX_STEP_UPS.
            proptest::prop_assert!(sign_ins <= (fails + 1) * (MAX_SIGN_INS + MAX_STEP_UPS) as usize);
        }
    }
}
