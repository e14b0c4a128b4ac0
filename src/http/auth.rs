//! `POST /v1/auth/logout` and `POST /v1/auth/logout-all` (docs/spec.md §4). The token (a
//! bearer token, or a DPoP-bound one with its proof for this request) must pass the
//! whole decision; logout can only revoke the token presented, logout-all only
//! the caller's own user, both within the namespace of the token's issuer (the scoped
//! ids of its claims), so that no issuer's token reaches another's users. A 200 is sent
//! only after the store accepted the write.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::{deny_response, json_body, AppState};
use crate::decision::At;
use crate::reason::{Deny, Reason};
use crate::revocation::{Target, Written};

/// Where this POST was sent, for a DPoP proof: `Host` (HTTP/1.1) or the authority
/// (HTTP/2), and the path as the proxy passed it on.
fn at<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> At<'a> {
    At {
        method: "POST",
        host: headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str())),
        path: uri.path(),
    }
}

pub async fn logout(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let engine = &state.engine;
    let allowed = match engine
        .authenticate_at(&headers, uri.query(), &at(&uri, &headers))
        .await
    {
        Ok(a) => a,
        Err(deny) => return deny_response(engine, &deny),
    };
    let Some(claims) = allowed.claims else {
        return deny_response(engine, &Reason::MissingToken.into());
    };
    let Some(jti) = claims.scoped.jti.as_deref() else {
        // Only possible with `require_jti: false`: there is nothing to revoke one by one.
        return deny_response(engine, &Reason::MissingClaim.into());
    };
    let target = Target::Jti {
        id: jti,
        expires_at: engine.jti_expiry(&claims),
    };
    match engine
        .revoke(target, "logout", claims.user.as_deref(), "logout")
        .await
    {
        Ok(_) => ok(r#"{"message":"Successfully logged out","success":true}"#.to_string()),
        Err(e) => store_failed(&state, e),
    }
}

pub async fn logout_all(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let engine = &state.engine;
    let allowed = match engine
        .authenticate_at(&headers, uri.query(), &at(&uri, &headers))
        .await
    {
        Ok(a) => a,
        Err(deny) => return deny_response(engine, &deny),
    };
    let Some(claims) = allowed.claims.as_ref() else {
        return deny_response(engine, &Reason::MissingClaim.into());
    };
    let (Some(user), Some(actor)) = (claims.scoped.user.as_deref(), claims.user.as_deref()) else {
        return deny_response(engine, &Reason::MissingClaim.into());
    };
    match engine
        .revoke(Target::User(user), "logout-all", Some(actor), "logout-all")
        .await
    {
        Ok(written) => {
            let subject = match written {
                Written::Subject(s) => s,
                Written::Marker => Default::default(),
            };
            ok(serde_json::json!({
                "success": true,
                "message": "Logged out from all devices",
                "version": subject.version,
                "revoked_before": subject.before_ms,
            })
            .to_string())
        }
        Err(e) => store_failed(&state, e),
    }
}

fn ok(body: String) -> Response {
    (StatusCode::OK, json_body(body)).into_response()
}

fn store_failed(state: &AppState, error: crate::revocation::StoreError) -> Response {
    tracing::warn!(error = %error, "revocation not written");
    deny_response(&state.engine, &Deny::from(Reason::StoreUnavailable))
}
