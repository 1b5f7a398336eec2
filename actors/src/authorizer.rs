//! Authorizer: keeps the proxy signed in.
//!
//! It drives the [`Grant`] machine — use the stored token, refresh it before it
//! expires, sign in through the browser when the server asks, step up on
//! `insufficient_scope`, give up after bounded attempts — and performs its
//! effects with the functions of [`crate::oauth`]. Only one flow runs at a time;
//! further requests for a token wait for it. Across processes, flows are
//! serialized by the TokenStore's file lock, and a process that waited for the
//! lock first looks whether the other one already left fresh tokens behind, so
//! N copies started together open one browser tab.

use crate::messages::{
    AccessToken, AuthFailed, AuthorizerPeers, NeedToken, TokenReady, TokenWorked,
};
use crate::oauth::{self, AuthError, AuthOptions};
use crate::token_store::{now_ms, StoredTokens, TokenStore};
use actix::prelude::*;
use machines::auth::challenge::BearerChallenge;
use machines::auth::flow::{FlowStart, REFRESH_MARGIN};
use machines::auth::grant::{Grant, GrantEffect, GrantEvent, GrantOutbox, Need};
use machines::trace::Step;
use statig::blocking::StateMachine;
use statig::prelude::IntoStateMachineExt;
use std::sync::Arc;
use std::time::Duration;

/// The outcome of a flow, back in the actor.
#[derive(Message)]
#[rtype(result = "()")]
struct FlowDone {
    /// Which flow.
    kind: FlowKind,
    /// Tokens, or why not.
    result: Result<StoredTokens, AuthError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlowKind {
    Refresh,
    SignIn,
}

/// The Authorizer actor.
pub struct Authorizer {
    /// Sign-in settings.
    options: Arc<AuthOptions>,
    /// HTTP client for OAuth (no redirects followed).
    http: reqwest::Client,
    /// Credential files and the cross-process lock.
    store: TokenStore,
    /// The token lifecycle.
    grant: StateMachine<Grant>,
    /// The tokens in use.
    tokens: Option<StoredTokens>,
    /// The latest challenge (where to discover, which scope).
    challenge: BearerChallenge,
    /// Who receives tokens and failures.
    peers: Option<AuthorizerPeers>,
    /// The scheduled refresh before expiry (or its retry).
    expiry_timer: Option<SpawnHandle>,
    /// The access token the server refused last: a flow must not hand it back.
    refused: Option<String>,
}

impl Authorizer {
    /// An authorizer for one server.
    pub fn new(options: AuthOptions, http: reqwest::Client, store: TokenStore) -> Self {
        Self {
            options: Arc::new(options),
            http,
            store,
            grant: Grant::default().state_machine(),
            tokens: None,
            challenge: BearerChallenge::default(),
            peers: None,
            expiry_timer: None,
            refused: None,
        }
    }

    fn dispatch(&mut self, event: GrantEvent, ctx: &mut Context<Self>) {
        let mut out = GrantOutbox::default();
        let from = crate::trace::get().map(|_| self.grant.state().clone());
        self.grant.handle_with_context(&event, &mut out);
        if let (Some(tracer), Some(from)) = (crate::trace::get(), from) {
            let step = Step::new("grant", &from, &event, self.grant.state(), &out.0);
            let mut record = crate::trace::step_record(step);
            let why = match &event {
                GrantEvent::RefreshFailed { error } | GrantEvent::SignInFailed { error } => {
                    Some(error.to_string())
                }
                _ => out.0.iter().find_map(|effect| match effect {
                    GrantEffect::Fail(error) => Some(error.to_string()),
                    GrantEffect::RetryRefresh(delay) => {
                        Some(format!("refresh again in {} ms", delay.as_millis()))
                    }
                    _ => None,
                }),
            };
            if let Some(why) = why {
                record["detail"] = why.into();
            }
            tracer.emit(crate::trace::Detail::Step, record);
        }
        for effect in out.0 {
            self.perform(effect, ctx);
        }
    }

    fn perform(&mut self, effect: GrantEffect, ctx: &mut Context<Self>) {
        match effect {
            GrantEffect::UseToken => {
                let Some(tokens) = &self.tokens else { return };
                if let Some(peers) = &self.peers {
                    peers.ready.do_send(TokenReady(AccessToken(
                        tokens.bearer(self.options.use_id_token).to_owned(),
                    )));
                }
                self.schedule_refresh(ctx);
            }
            GrantEffect::Refresh => {
                let Some(held) = self.tokens.clone() else {
                    self.dispatch(GrantEvent::RefreshRejected, ctx);
                    return;
                };
                self.run_flow(FlowKind::Refresh, FlowStart::Refresh { held }, ctx);
            }
            GrantEffect::SignIn {
                scope,
                challenge_scope,
            } => {
                let mut challenge = self.challenge.clone();
                if challenge.scope.is_none() {
                    challenge.scope = challenge_scope;
                }
                let refused = self
                    .refused
                    .take()
                    .or_else(|| self.tokens.as_ref().map(|t| t.access_token.clone()));
                let start = FlowStart::SignIn {
                    challenge,
                    step_up: scope,
                    refused,
                };
                self.run_flow(FlowKind::SignIn, start, ctx);
            }
            GrantEffect::DropTokens => {
                if let Some(t) = self.tokens.take() {
                    self.refused = Some(t.access_token);
                }
            }
            GrantEffect::RetryRefresh(delay) => {
                if let Some(h) = self.expiry_timer.take() {
                    ctx.cancel_future(h);
                }
                tracing::info!(
                    "will try to refresh the token again in {} s",
                    delay.as_secs()
                );
                self.expiry_timer = Some(ctx.run_later(delay, |act, ctx| {
                    act.expiry_timer = None;
                    act.dispatch(GrantEvent::Expiring, ctx);
                }));
            }
            GrantEffect::Fail(error) => {
                tracing::warn!("sign-in failed: {error}");
                if let Some(peers) = &self.peers {
                    peers.failed.do_send(AuthFailed(error));
                }
            }
        }
    }

    /// Run one flow (see [`oauth::run`]); its end comes back as [`FlowDone`].
    fn run_flow(&mut self, kind: FlowKind, start: FlowStart, ctx: &mut Context<Self>) {
        let (http, options, store) = (self.http.clone(), self.options.clone(), self.store.clone());
        let flow = async move {
            // The lock wait and the browser wait are each bounded by --auth-timeout;
            // this bounds the whole, network steps included.
            let mut limit = options.auth_timeout * 2 + Duration::from_secs(60);
            if options.device != machines::auth::flow::DeviceChoice::Never {
                // A device code is polled for as long as it lives.
                limit += machines::auth::device::MAX_LIFETIME;
            }
            tokio::time::timeout(limit, oauth::run(&http, &options, &store, start))
                .await
                .unwrap_or(Err(AuthError::TimedOut))
        };
        ctx.spawn(
            flow.into_actor(self)
                .map(move |result, _, ctx| ctx.notify(FlowDone { kind, result })),
        );
    }

    fn schedule_refresh(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.expiry_timer.take() {
            ctx.cancel_future(h);
        }
        let use_id_token = self.options.use_id_token;
        let Some(at) = self
            .tokens
            .as_ref()
            .and_then(|t| t.bearer_expires_at(use_id_token))
        else {
            return;
        };
        let mut margin = self
            .tokens
            .as_ref()
            .map_or(REFRESH_MARGIN, |t| t.refresh_margin(REFRESH_MARGIN));
        if use_id_token {
            // An ID token may live shorter than the access token: a quarter of what
            // is left of it, at most.
            let left = at.saturating_sub(now_ms());
            margin = margin.min(Duration::from_millis(left / 4));
        }
        if self
            .tokens
            .as_ref()
            .is_some_and(|t| t.refresh_token.is_none())
        {
            return;
        }
        let due = at
            .saturating_sub(margin.as_millis() as u64)
            .saturating_sub(now_ms());
        let delay = Duration::from_millis(due.max(200));
        self.expiry_timer = Some(ctx.run_later(delay, |act, ctx| {
            act.expiry_timer = None;
            act.dispatch(GrantEvent::Expiring, ctx);
        }));
    }
}

impl Actor for Authorizer {
    type Context = Context<Self>;
}

impl Handler<AuthorizerPeers> for Authorizer {
    type Result = ();

    fn handle(&mut self, peers: AuthorizerPeers, ctx: &mut Context<Self>) {
        self.peers = Some(peers);
        let stored = self.store.load_tokens();
        let event = match &stored {
            Some(t) => GrantEvent::Loaded {
                token: true,
                refresh: t.refresh_token.is_some(),
                fresh: t.fresh(now_ms(), t.refresh_margin(REFRESH_MARGIN)),
            },
            None => GrantEvent::Loaded {
                token: false,
                refresh: false,
                fresh: false,
            },
        };
        self.tokens = stored;
        self.dispatch(event, ctx);
    }
}

impl Handler<NeedToken> for Authorizer {
    type Result = ();

    fn handle(&mut self, need: NeedToken, ctx: &mut Context<Self>) {
        if need.challenge != BearerChallenge::default() {
            self.challenge = need.challenge;
        }
        if let Need::Unauthorized { .. } = need.need {
            tracing::info!("the server asks for authorization");
        }
        self.dispatch(GrantEvent::Needed(need.need), ctx);
    }
}

impl Handler<TokenWorked> for Authorizer {
    type Result = ();

    fn handle(&mut self, _: TokenWorked, ctx: &mut Context<Self>) {
        self.dispatch(GrantEvent::TokenWorked, ctx);
    }
}

impl Handler<FlowDone> for Authorizer {
    type Result = ();

    fn handle(&mut self, done: FlowDone, ctx: &mut Context<Self>) {
        let event = match (done.kind, done.result) {
            (FlowKind::Refresh, Ok(t)) => {
                self.tokens = Some(t);
                GrantEvent::Refreshed
            }
            (FlowKind::Refresh, Err(e)) if e.rejected() => {
                tracing::info!("the refresh token is no longer accepted ({e}); signing in again");
                GrantEvent::RefreshRejected
            }
            (FlowKind::Refresh, Err(e)) => {
                tracing::warn!("refresh failed, keeping the stored tokens: {e}");
                GrantEvent::RefreshFailed { error: e }
            }
            (FlowKind::SignIn, Ok(t)) => {
                self.tokens = Some(t);
                GrantEvent::SignedIn
            }
            (FlowKind::SignIn, Err(e)) => GrantEvent::SignInFailed { error: e },
        };
        self.dispatch(event, ctx);
    }
}
