//! docs/openapi.yaml against the running code: schemathesis (property-based, from the
//! document) drives both HTTP listeners of a real tokengate and fails on any 5xx, any
//! status, header, content type or body the document does not describe, any invalid
//! input accepted, any valid input refused.
//!
//! Every request to an operation that takes a bearer token gets a fresh token minted
//! here (a logout or logout-all by one request would otherwise turn every later request
//! into a 401 and leave the allow paths untested), three in ten of them spoiled (expired,
//! wrong audience, garbage, no admin scope) so that the deny answers are exercised too;
//! introspection gets the configured client's HTTP Basic credentials. Both are applied
//! by a schemathesis auth hook.

use crate::support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use serde_json::json;
use support::envoy::Scratch;
use support::*;

const ADMIN_SCOPE: &str = "tokengate:admin";
const CLIENT_ID: &str = "schemathesis";
const CLIENT_SECRET: &str = "openapi-test-introspection-secret";
/// Tokens minted per listener; requests beyond that reuse them (some by then revoked:
/// 401, which the document describes too).
const TOKENS: usize = 3000;
/// Test cases per operation and phase, and the seed: bounded and reproducible.
const MAX_EXAMPLES: &str = "100";
const SEED: &str = "20240601";

/// The schemathesis CLI (`st`), from scripts/install-test-deps.sh.
fn st_bin() -> std::path::PathBuf {
    support::procs::tool("st", "schemathesis (PyPI)")
}

/// Applies the credentials: a fresh bearer token per request where the operation's
/// `security` names `bearerAuth`, Basic where it names `introspectionClient`; and puts
/// minted tokens in half of the form bodies that carry one.
const HOOKS: &str = r#"
import ast
import base64
import os
import threading

import schemathesis

# CPython 3.11's AST constructor is not safe across threads (python/cpython#106905:
# "SystemError: AST constructor recursion depth mismatch"), and hypothesis parses
# source with ast.parse to describe its strategies, in both schemathesis workers at
# once: one parse at a time.
_ast_lock = threading.Lock()
_ast_parse = ast.parse


def _parse_alone(*args, **kwargs):
    with _ast_lock:
        return _ast_parse(*args, **kwargs)


ast.parse = _parse_alone

# RFC 8935's SET media type: the body is text (a compact JWS).
schemathesis.serializer.alias("application/secevent+jwt", "text/plain")

with open(os.environ["TOKENGATE_ST_TOKENS"]) as f:
    _TOKENS = f.read().split()
_BASIC = base64.b64encode(os.environ["TOKENGATE_ST_BASIC"].encode()).decode()
_lock = threading.Lock()
_taken = 0
_form_calls = 0


def _take():
    global _taken
    with _lock:
        token = _TOKENS[_taken % len(_TOKENS)]
        _taken += 1
    return token


def _schemes(operation):
    security = operation.definition.raw.get("security") or []
    return {name for requirement in security for name in requirement}


@schemathesis.auth(refresh_interval=None, retry_on=[])
class TokengateAuth:
    def get(self, case, context):
        schemes = _schemes(context.operation)
        if "introspectionClient" in schemes:
            return "Basic " + _BASIC
        if "bearerAuth" in schemes:
            return "Bearer " + _take()
        return None

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = data


@schemathesis.hook
def before_call(context, case, kwargs):
    # Introspection and RFC 7009 revocation take the token in a form field: every other
    # request whose `token` is a generated non-empty string (valid as far as that field
    # goes) gets one of the minted tokens instead, so that active tokens and real
    # revocations are exercised too, not only random strings.
    global _form_calls
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("token"), str) and body["token"]:
        with _lock:
            _form_calls += 1
            swap = _form_calls % 2 == 1
        if swap:
            case.body = {**body, "token": _take()}
"#;

/// schemathesis settings that the command line cannot scope to one operation.
const ST_CONFIG: &str = r#"
# POST /v1/admin/revocations: `expires_at` must be in the future and at most 10 years
# ahead, bounds that move with the clock and that the document therefore states only in
# words; `provider` must name a configured provider. Valid-by-schema bodies breaking
# either get 400, which is right.
[[operations]]
include-operation-id = "adminRevoke"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403"]

# GET /v1/admin/revocations/{kind}/{id}: `provider` must name a configured provider, a
# set the document cannot list (it is the deployment's); any other name gets 400.
[[operations]]
include-operation-id = "adminRevocationStatus"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404"]

# POST /v1/oidc/backchannel-logout: a schema-valid form carries a string, never a
# logout token the configured provider signed (nor could the document say what one is):
# 400 invalid_request, as OIDC Back-Channel Logout §2.8 says.
[[operations]]
include-operation-id = "backchannelLogout"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400"]

# /authz and /authz/{path} take any method at all (Envoy's HTTP ext_authz asks with the
# client's method, whatever it is: QUERY, PROPFIND, ...); OpenAPI can only list eight.
[[operations]]
include-path-regex = "^/authz"
checks.unsupported_method.enabled = false
# A schema-valid path may still be one tokengate refuses to guess at (an encoded `/`
# left after one decoding, control bytes): 400 `malformed_request`, documented.
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403"]

# POST /v1/ssf/events: a schema-valid string is not a SET signed by the transmitter:
# 400 with an RFC 8935 error code, documented.
[[operations]]
include-operation-id = "ssfEvents"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400"]
"#;

fn yaml(secret_file: &Path) -> String {
    format!(
        "{}admin_api:\n  enabled: true\n  scope: {ADMIN_SCOPE}\n  providers: [test]\n\
         oauth:\n  introspection_clients:\n    - id: {CLIENT_ID}\n      secret_file: {}\n\
         ssf:\n  transmitters:\n    - issuer: https://transmitter.test\n      \
         audience: https://tokengate.test/ssf\n      provider: test\n      \
         algorithms: [ES256]\n      keys:\n        - public_key_file: {}\n",
        config_yaml(MEMORY_STORE),
        secret_file.display(),
        key_path("ec256-public.pem")
    )
}

/// `count` tokens, one per line, in a fixed cycle of ten: seven valid ones (each with its
/// own `sub` and `jti`, every other one with a tenant, `extra` claims merged in) and
/// three that `spoiled` turns into denies, so that every operation's allow and deny
/// answers are both exercised.
fn tokens(prefix: &str, count: usize, extra: serde_json::Value, spoiled: [Spoil; 3]) -> String {
    let now = tokengate::jwt::now_unix();
    (0..count)
        .map(|i| {
            let sub = format!("{prefix}-{i}");
            let mut claims = extra.clone();
            if i % 2 == 0 {
                claims["tid"] = json!(format!("{prefix}-tenant"));
            }
            match (i % 10).checked_sub(7).map(|k| spoiled[k]) {
                None => token("hs", &sub, claims),
                Some(Spoil::Expired) => {
                    token("hs", &sub, json!({"exp": now - 3600, "iat": now - 7200}))
                }
                Some(Spoil::WrongAudience) => token("hs", &sub, json!({"aud": "someone-else"})),
                Some(Spoil::NoAdminScope) => token("hs", &sub, json!({"scope": "read"})),
                Some(Spoil::Garbage) => format!("not-a-jwt-{i}"),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Clone, Copy)]
enum Spoil {
    Expired,
    WrongAudience,
    NoAdminScope,
    Garbage,
}

/// Runs `st run docs/openapi.yaml` on the operations tagged `tag` against `base`.
fn schemathesis(dir: &Path, tag: &str, base: &str, tokens_file: &Path) -> Output {
    let spec = support::procs::repo().join("docs/openapi.yaml");
    let work = dir.join(tag);
    std::fs::create_dir_all(&work).expect("schemathesis work dir");
    Command::new(st_bin())
        .arg("--config-file")
        .arg(dir.join("schemathesis.toml"))
        .arg("run")
        .arg(&spec)
        .args(["--url", base])
        .args(["--include-tag", tag])
        // Every check: schemathesis's default. (`--checks all` on the command line
        // would also override the per-operation settings of schemathesis.toml.)
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--seed", SEED])
        // Identifier limits are in bytes: ASCII makes the document's maxLength exact.
        .args(["--generation-codec", "ascii"])
        .args(["--generation-database", "none"])
        .args(["--workers", "2"])
        .args(["--request-timeout", "5"])
        .arg("--no-color")
        // Reports and caches in the scratch directory, never in the repository.
        .current_dir(&work)
        .env("SCHEMATHESIS_HOOKS", dir.join("hooks.py"))
        .env("TOKENGATE_ST_TOKENS", tokens_file)
        .env("TOKENGATE_ST_BASIC", format!("{CLIENT_ID}:{CLIENT_SECRET}"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run schemathesis: {e}"))
}

/// Why a run failed, or `None` when it passed having tested something.
fn problems(what: &str, out: &Output) -> Option<String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Some(format!(
            "schemathesis found problems on the {what} ({}):\n{stdout}\n{stderr}",
            out.status
        ));
    }
    // A run that tested nothing (a filter or hook mistake) must not pass.
    if !stdout.contains("passed") || stdout.contains("No operations") {
        return Some(format!(
            "schemathesis ran nothing on the {what}:\n{stdout}\n{stderr}"
        ));
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn both_listeners_conform_to_docs_openapi_yaml() {
    let st = st_bin();
    let dir = Scratch::new("openapi");
    let secret_file = dir.write("introspection.secret", &format!("{CLIENT_SECRET}\n"));
    dir.write("hooks.py", HOOKS);
    dir.write("schemathesis.toml", ST_CONFIG);
    let public_tokens = dir.write(
        "public.tokens",
        &tokens(
            "st-user",
            TOKENS,
            json!({}),
            [Spoil::Expired, Spoil::WrongAudience, Spoil::Garbage],
        ),
    );
    let admin_tokens = dir.write(
        "admin.tokens",
        &tokens(
            "st-admin",
            TOKENS,
            json!({"scope": ADMIN_SCOPE}),
            [Spoil::NoAdminScope, Spoil::Expired, Spoil::Garbage],
        ),
    );
    let server = TestServer::start(&yaml(&secret_file)).await;
    let public = format!("http://{}", server.addrs.http);
    let admin = format!("http://{}", server.addrs.admin);
    assert!(st.exists());

    // Both listeners at once (two schemathesis processes): the run time is the longer.
    let started = Instant::now();
    let path = dir.path.clone();
    let (public_out, admin_out) = tokio::task::spawn_blocking(move || {
        std::thread::scope(|scope| {
            let admin_run = scope.spawn(|| schemathesis(&path, "admin", &admin, &admin_tokens));
            let public_out = schemathesis(&path, "public", &public, &public_tokens);
            (public_out, admin_run.join().expect("admin run"))
        })
    })
    .await
    .expect("schemathesis runs");
    let took = started.elapsed();

    let failures: Vec<String> = [
        problems("public listener", &public_out),
        problems("admin listener", &admin_out),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    for (what, out) in [("public", &public_out), ("admin", &admin_out)] {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let cases = stdout
            .lines()
            .skip_while(|l| !l.starts_with("Test cases:"))
            .nth(1)
            .unwrap_or("?")
            .trim();
        eprintln!("schemathesis, {what} listener: {cases}");
    }
    eprintln!("schemathesis on both listeners took {took:?}");
    server.stop().await;
}

/// schemathesis generates ASCII only (see `--generation-codec` above), so this one is
/// asked by hand: an id that percent-decodes to invalid UTF-8 gets the documented
/// answers — 401 without a token (authentication comes first, as for every other bad
/// request), and with one the JSON 400 naming the field, like every other admin 400.
#[tokio::test(flavor = "multi_thread")]
async fn admin_status_with_an_undecodable_id_gets_the_documented_json_400() {
    let dir = Scratch::new("openapi-id");
    let secret_file = dir.write("introspection.secret", CLIENT_SECRET);
    let server = TestServer::start(&yaml(&secret_file)).await;
    let url = server.admin_url("/v1/admin/revocations/jti/%FF");
    let client = reqwest::Client::new();
    let admin = bearer(&token("ec256", "root", json!({"scope": ADMIN_SCOPE})));

    let resp = client
        .get(&url)
        .header("authorization", &admin)
        .send()
        .await
        .expect("status request");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = resp.text().await.expect("body");
    let body: Option<serde_json::Value> = serde_json::from_str(&text).ok();
    assert!(
        status == 400
            && content_type.as_deref() == Some("application/json")
            && body.as_ref().is_some_and(|b| {
                b["error"] == "invalid_request" && b["field"] == "id" && b["message"].is_string()
            }),
        "GET /v1/admin/revocations/jti/%FF with an admin token: {status} {content_type:?} {text:?}"
    );

    let resp = client.get(&url).send().await.expect("status request");
    assert_eq!(
        resp.status().as_u16(),
        401,
        "without a token: {:?}",
        resp.text().await
    );
}
