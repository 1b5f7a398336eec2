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
use machines::auth::grant::{Grant, GrantEffect, GrantEvent, GrantOutbox, Need};
use statig::blocking::StateMachine;
use statig::prelude::IntoStateMachineExt;
use std::sync::Arc;
use std::time::Duration;

/// Refresh this long before the access token expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

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
    /// The scheduled refresh before expiry.
    expiry_timer: Option<SpawnHandle>,
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
        }
    }

    fn dispatch(&mut self, event: GrantEvent, ctx: &mut Context<Self>) {
        let mut out = GrantOutbox::default();
        self.grant.handle_with_context(&event, &mut out);
        for effect in out.0 {
            self.perform(effect, ctx);
        }
    }

    fn perform(&mut self, effect: GrantEffect, ctx: &mut Context<Self>) {
        match effect {
            GrantEffect::UseToken => {
                let Some(tokens) = &self.tokens else { return };
                if let Some(peers) = &self.peers {
                    peers
                        .ready
                        .do_send(TokenReady(AccessToken(tokens.access_token.clone())));
                }
                self.schedule_refresh(ctx);
            }
            GrantEffect::Refresh => {
                let Some(tokens) = self.tokens.clone() else {
                    self.dispatch(GrantEvent::RefreshRejected, ctx);
                    return;
                };
                let (http, options, store) =
                    (self.http.clone(), self.options.clone(), self.store.clone());
                let flow = async move {
                    let wait = options.auth_timeout;
                    let guard = lock(&store, wait).await?;
                    // Another process may have refreshed while we waited.
                    if let Some(disk) = store.load_tokens() {
                        if disk.access_token != tokens.access_token
                            && disk.fresh(now_ms(), REFRESH_MARGIN)
                        {
                            return Ok(disk);
                        }
                    }
                    let fresh = oauth::refresh(&http, &options, &store, &tokens).await;
                    if let Ok(t) = &fresh {
                        save(&store, t);
                    }
                    drop(guard);
                    fresh
                };
                ctx.spawn(flow.into_actor(self).map(|result, _, ctx| {
                    ctx.notify(FlowDone {
                        kind: FlowKind::Refresh,
                        result,
                    });
                }));
            }
            GrantEffect::SignIn {
                scope,
                challenge_scope,
            } => {
                let mut challenge = self.challenge.clone();
                if challenge.scope.is_none() {
                    challenge.scope = challenge_scope;
                }
                let refused = self.tokens.as_ref().map(|t| t.access_token.clone());
                let (http, options, store) =
                    (self.http.clone(), self.options.clone(), self.store.clone());
                let flow = async move {
                    let deadline = options.auth_timeout;
                    let guard = lock(&store, deadline).await?;
                    // Another copy of the proxy may have signed in while we waited for the lock.
                    if scope.is_none() {
                        if let Some(disk) = store.load_tokens() {
                            if Some(&disk.access_token) != refused.as_ref()
                                && disk.fresh(now_ms(), REFRESH_MARGIN)
                            {
                                tracing::info!("using the tokens another mcp-remote just obtained");
                                return Ok(disk);
                            }
                        }
                    }
                    let result = tokio::time::timeout(
                        deadline + Duration::from_secs(5),
                        oauth::sign_in(&http, &options, &store, &challenge, scope),
                    )
                    .await
                    .unwrap_or(Err(AuthError::TimedOut));
                    if let Ok(t) = &result {
                        save(&store, t);
                    }
                    drop(guard);
                    result
                };
                ctx.spawn(flow.into_actor(self).map(|result, _, ctx| {
                    ctx.notify(FlowDone {
                        kind: FlowKind::SignIn,
                        result,
                    });
                }));
            }
            GrantEffect::ForgetTokens => {
                self.store.forget(false);
                self.tokens = None;
            }
            GrantEffect::Fail(error) => {
                tracing::warn!("sign-in failed: {error}");
                if let Some(peers) = &self.peers {
                    peers.failed.do_send(AuthFailed(error));
                }
            }
        }
    }

    fn schedule_refresh(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.expiry_timer.take() {
            ctx.cancel_future(h);
        }
        let Some(at) = self.tokens.as_ref().and_then(|t| t.expires_at) else {
            return;
        };
        if self
            .tokens
            .as_ref()
            .is_some_and(|t| t.refresh_token.is_none())
        {
            return;
        }
        let due = at
            .saturating_sub(REFRESH_MARGIN.as_millis() as u64)
            .saturating_sub(now_ms());
        let delay = Duration::from_millis(due.max(1000));
        self.expiry_timer = Some(ctx.run_later(delay, |act, ctx| {
            act.expiry_timer = None;
            act.dispatch(GrantEvent::Expiring, ctx);
        }));
    }
}

async fn lock(store: &TokenStore, wait: Duration) -> Result<std::fs::File, AuthError> {
    let store = store.clone();
    let locked = tokio::task::spawn_blocking(move || store.lock(wait))
        .await
        .map_err(|e| AuthError::Store(e.to_string()))?;
    match locked {
        Ok(Some(file)) => Ok(file),
        Ok(None) => Err(AuthError::Locked),
        Err(e) => Err(AuthError::Store(e.to_string())),
    }
}

fn save(store: &TokenStore, tokens: &StoredTokens) {
    if let Err(e) = store.save_tokens(tokens) {
        tracing::warn!("{e}");
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
                fresh: t.fresh(now_ms(), REFRESH_MARGIN),
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
            (FlowKind::Refresh, Err(e)) => {
                tracing::info!("refresh failed: {e}");
                GrantEvent::RefreshRejected
            }
            (FlowKind::SignIn, Ok(t)) => {
                self.tokens = Some(t);
                GrantEvent::SignedIn
            }
            (FlowKind::SignIn, Err(e)) => {
                if e.rejected() {
                    // invalid_client: the stored registration is no good any more.
                    self.store.forget(true);
                }
                GrantEvent::SignInFailed { error: e }
            }
        };
        self.dispatch(event, ctx);
    }
}
