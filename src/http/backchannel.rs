//! `POST /v1/oidc/backchannel-logout`: OIDC Back-Channel Logout 1.0 (issue 16). The
//! identity provider ends a session and tells every relying party; tokengate is one, and
//! makes every access token of that session (its `sid`), or of that user when the
//! logout token names only `sub`, refused by every replica.
//!
//! Answers (§2.8): 200 once the revocation is in the store; 400 with an OAuth error body
//! for a logout token that fails any check of §2.6, or one seen before (replay, across
//! replicas: the store's replay guard), revoking nothing; 503 when the store cannot
//! take it, so that the provider retries (the replay guard is released then, so the
//! retry is not taken for a replay).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::oauth::{form_params, is_form, oauth_error};
use super::{deny_response, AppState};
use crate::jwt::LogoutError;
use crate::reason::Reason;
use crate::revocation::{scope, RevocationStore, Target};

const SOURCE: &str = "backchannel";

pub async fn logout(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let invalid = |why: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", why);
    if !is_form(&headers) {
        return invalid("expected application/x-www-form-urlencoded");
    }
    let params = form_params(&body);
    let mut tokens = params.iter().filter(|(k, _)| k == "logout_token");
    let token = match (tokens.next(), tokens.next()) {
        (Some((_, t)), None) if !t.is_empty() => t.as_str(),
        (Some(_), Some(_)) => return invalid("logout_token given more than once"),
        _ => return invalid("logout_token is required"),
    };
    let engine = &state.engine;
    let policy = engine.policy();
    let verifier = &policy.verifier;
    let logout = match verifier.verify_logout_token(token, crate::jwt::now_unix()) {
        Ok(l) => l,
        Err(LogoutError::KeysUnavailable) => {
            return deny_response(engine, &Reason::KeysUnavailable.into())
        }
        Err(LogoutError::Invalid(why)) => {
            tracing::warn!(reason = why, "back-channel logout token refused");
            return invalid(why);
        }
    };
    let provider = &verifier.providers[logout.provider];
    let ns = provider.namespace.as_str();
    let store = engine.store();
    let seen = scope::scoped(ns, &format!("bcl:{}", logout.jti));
    match store.first_use(&seen, logout.replay_window).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(provider = %provider.name, "back-channel logout token replayed");
            return invalid("this logout token was already used");
        }
        Err(e) => return store_failed(&state, e),
    }
    // A session when the token names one (§2.6: the RP ends that session); else every
    // token of the subject issued so far.
    let (sid, sub) = (
        logout.sid.as_deref().map(|s| scope::scoped(ns, s)),
        logout.sub.as_deref().map(|s| scope::scoped(ns, s)),
    );
    let target = match (&sid, &sub) {
        (Some(sid), _) => Target::Session(sid),
        (None, Some(sub)) => Target::User(sub),
        // verify_logout_token refuses a token with neither
        (None, None) => return invalid("neither sub nor sid is present"),
    };
    let actor = format!("idp:{}", provider.name);
    match engine
        .revoke(target, "back-channel logout", Some(&actor), SOURCE)
        .await
    {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => {
            if let Err(release) = store.release_use(&seen).await {
                tracing::warn!(error = %release, "replay guard not released: the provider's retry will be refused");
            }
            store_failed(&state, e)
        }
    }
}

fn store_failed(state: &AppState, error: crate::revocation::StoreError) -> Response {
    tracing::warn!(error = %error, "back-channel logout not written");
    deny_response(&state.engine, &Reason::StoreUnavailable.into())
}
