//! The command line through the real binary: help, `check-config`, `token mint` and
//! `serve` (start-up, the development-key warning, logout, SIGTERM, start-up errors).

use crate::support;

use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use support::envoy::Scratch;
use support::procs::repo;
use support::serve::{tokengate, Served};
use support::*;

const SHIPPED: &str = "config/tokengate.yaml";

fn run(args: &[&str]) -> Output {
    tokengate(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run tokengate {args:?}: {e}"))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn shipped_text() -> String {
    std::fs::read_to_string(repo().join(SHIPPED)).expect("shipped config")
}

/// `text` with `from` replaced by `to`; `from` must occur exactly once.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "`{from}` must occur exactly once in the config"
    );
    text.replacen(from, to, 1)
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("`{needle}` not in the config"))
}

fn mint(config: &str, args: &[&str]) -> String {
    let mut all = vec!["token", "mint", "--config", config];
    all.extend_from_slice(args);
    let out = run(&all);
    assert!(out.status.success(), "token mint failed: {}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line on stdout: {text:?}");
    let token = lines[0].to_string();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts: {token}");
    for p in &parts {
        assert!(
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "not base64url: {p:?}"
        );
    }
    token
}

// ------------------------------------------------------------------------------ help

#[test]
fn help_lists_the_subcommands() {
    let out = run(&["--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for word in [
        "serve",
        "check-config",
        "token",
        "revoke",
        "status",
        "migrate",
    ] {
        assert!(
            text.contains(word),
            "--help does not mention {word}:\n{text}"
        );
    }
}

#[test]
fn token_mint_help_lists_its_options() {
    let out = run(&["token", "mint", "--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for word in ["--sub", "--claim", "--ttl"] {
        assert!(
            text.contains(word),
            "token mint --help does not mention {word}:\n{text}"
        );
    }
}

#[test]
fn revocation_commands_document_provider_and_dry_run() {
    for (args, words) in [
        (
            &["revoke", "--help"][..],
            &["--provider", "--expires-at"][..],
        ),
        (&["status", "--help"][..], &["--provider"][..]),
        (&["migrate", "--help"][..], &["--dry-run", "--config"][..]),
    ] {
        let out = run(args);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        for word in words {
            assert!(
                text.contains(word),
                "{args:?} does not mention {word}:\n{text}"
            );
        }
    }
}

#[test]
fn migrate_refuses_the_memory_store_without_panicking() {
    let out = run(&["migrate", "--config", SHIPPED]);
    assert!(!out.status.success(), "migrated a memory store");
    let err = stderr(&out);
    assert!(err.contains("memory") && !err.contains("panicked"), "{err}");
}

// ---------------------------------------------------------------------- check-config

#[test]
fn check_config_accepts_the_shipped_config() {
    let out = run(&["check-config", SHIPPED]);
    assert!(
        out.status.success(),
        "check-config {SHIPPED}: {}",
        stderr(&out)
    );
}

#[test]
fn check_config_names_file_line_and_field_of_a_misspelled_field() {
    let dir = Scratch::new("cli-check");
    let text = edit(&shipped_text(), "ttl_seconds: 5", "ttl_secs: 5");
    let file = dir.write("misspelled.yaml", &text);
    let line = line_of(&text, "ttl_secs:");

    let out = run(&["check-config", &file.display().to_string()]);

    let err = stderr(&out);
    assert!(!out.status.success(), "a misspelled field was accepted");
    let at = format!("{}:{line}:", file.display());
    assert!(err.contains(&at), "expected `{at}` in: {err}");
    assert!(
        err.contains("revocation.cache"),
        "field path missing: {err}"
    );
    assert!(err.contains("ttl_secs"), "field name missing: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn check_config_names_a_field_of_the_wrong_type() {
    let dir = Scratch::new("cli-check");
    let text = edit(&shipped_text(), "max_bytes: 8192", "max_bytes: lots");
    let file = dir.write("wrong-type.yaml", &text);
    let line = line_of(&text, "max_bytes: lots");

    let out = run(&["check-config", &file.display().to_string()]);

    let err = stderr(&out);
    assert!(!out.status.success(), "`max_bytes: lots` was accepted");
    assert!(
        err.contains("tokens.max_bytes"),
        "field path missing: {err}"
    );
    let at = format!("{}:{line}:", file.display());
    assert!(err.contains(&at), "expected `{at}` in: {err}");
}

// ------------------------------------------------------------------------ token mint

#[test]
fn token_mint_prints_one_jwt_with_the_requested_claims() {
    let token = mint(
        SHIPPED,
        &["--sub", "alice", "--tenant", "acme", "--claim", "ver=3"],
    );

    let header = decode_part(&token, 0);
    assert_eq!(header["alg"], "ES256", "{header}");
    assert_eq!(header["kid"], "dev-es256", "{header}");

    let claims = decode_part(&token, 1);
    assert_eq!(claims["sub"], "alice", "{claims}");
    assert_eq!(claims["tid"], "acme", "{claims}");
    assert_eq!(claims["ver"], Value::from(3), "ver is a number: {claims}");
    assert_eq!(claims["iss"], "https://dev.tokengate.local", "{claims}");
    assert_eq!(claims["aud"], "tokengate-dev", "{claims}");
    assert!(
        claims["jti"].as_str().is_some_and(|j| !j.is_empty()),
        "{claims}"
    );
    let iat = claims["iat"].as_i64().expect("iat is a number");
    let exp = claims["exp"].as_i64().expect("exp is a number");
    assert_eq!(exp, iat + 3600, "default lifetime is an hour: {claims}");
    let now = tokengate::jwt::now_unix();
    assert!(iat.abs_diff(now) <= 60, "iat {iat} is not now ({now})");
}

#[test]
fn token_mint_ttl_sets_the_lifetime() {
    let claims = decode_part(&mint(SHIPPED, &["--sub", "alice", "--ttl", "60"]), 1);
    let iat = claims["iat"].as_u64().expect("iat");
    assert_eq!(claims["exp"].as_u64(), Some(iat + 60), "{claims}");
    assert!(claims.get("tid").is_none(), "no --tenant, no tid: {claims}");
}

#[test]
fn token_mint_gives_every_token_its_own_jti() {
    let a = decode_part(&mint(SHIPPED, &["--sub", "alice"]), 1);
    let b = decode_part(&mint(SHIPPED, &["--sub", "alice"]), 1);
    assert!(a["jti"].is_string(), "{a}");
    assert_ne!(a["jti"], b["jti"]);
}

#[test]
fn token_mint_refuses_a_provider_with_only_public_keys() {
    let dir = Scratch::new("cli-mint");
    let text = edit(
        &shipped_text(),
        "        private_key_file: config/dev/es256-private.pem   # DEVELOPMENT ONLY\n",
        "",
    );
    let file = dir.write("public-only.yaml", &text);
    let file = file.display().to_string();
    // The config itself is valid: verification needs only the public key.
    let check = run(&["check-config", &file]);
    assert!(check.status.success(), "{}", stderr(&check));

    let out = run(&["token", "mint", "--config", &file, "--sub", "alice"]);

    assert!(!out.status.success(), "minted with no private key");
    assert_eq!(stdout(&out), "", "nothing on stdout");
    let err = stderr(&out);
    assert!(err.contains("only public keys"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

// ----------------------------------------------------------------------------- serve

/// The shipped config with every listener on loopback port 0 (the kernel picks; the
/// start-up line says which), and `edits` applied.
fn shipped_on_port_zero(edits: &[(&str, &str)]) -> String {
    let mut text = shipped_text();
    for (from, to) in [
        ("grpc: 0.0.0.0:9001", "grpc: 127.0.0.1:0"),
        ("http: 0.0.0.0:8080", "http: 127.0.0.1:0"),
        ("admin: 0.0.0.0:9090", "admin: 127.0.0.1:0"),
    ]
    .iter()
    .chain(edits)
    {
        text = edit(&text, from, to);
    }
    text
}

async fn logout(client: &reqwest::Client, http: SocketAddr, token: &str) -> (u16, Value) {
    let resp = client
        .post(format!("http://{http}/v1/auth/logout"))
        .header("authorization", bearer(token))
        .send()
        .await
        .expect("logout request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_warns_about_the_dev_key_logs_out_and_stops_cleanly_on_sigterm() {
    let mut served = Served::start("cli-serve", &shipped_on_port_zero(&[]));
    let addrs = served.listening().await;
    served.wait_ready(addrs.admin).await;

    let output = served.output();
    assert!(
        output.contains("DEVELOPMENT key"),
        "no development-key warning in the logs:\n{output}"
    );
    assert!(
        output.contains("WARN"),
        "the warning is not a WARN:\n{output}"
    );

    let token = mint(&served.config.display().to_string(), &["--sub", "alice"]);
    // The client keeps its keep-alive connection open across SIGTERM: an idle
    // connection must not hold the shutdown up.
    let client = reqwest::Client::new();
    let (status, body) = logout(&client, addrs.http, &token).await;
    assert_eq!(status, 200, "logout: {body}");
    assert_eq!(body["success"], true, "{body}");
    let (status, body) = logout(&client, addrs.http, &token).await;
    assert_eq!(status, 401, "the logged-out token is revoked: {body}");
    assert_eq!(body["reason"], "jti_revoked", "{body}");

    served.proc.signal("TERM");
    let status = served.wait_exit(Duration::from_secs(10));
    let output = served.output();
    assert!(status.success(), "exit after SIGTERM: {status}\n{output}");
    assert!(!output.contains("panicked"), "{output}");

    for addr in [addrs.grpc, addrs.http, addrs.admin] {
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "{addr} still accepts after exit"
        );
    }
    drop(client);
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_names_its_bound_ports_in_json_logs_too() {
    // The start-up line is how a port-0 listener is found (support::serve): in the JSON
    // format too, where the addresses are fields of the event.
    let mut served = Served::start(
        "cli-serve-json",
        &shipped_on_port_zero(&[("format: text", "format: json")]),
    );
    let addrs = served.listening().await;
    for addr in [addrs.grpc, addrs.http, addrs.admin] {
        assert!(addr.ip().is_loopback() && addr.port() != 0, "{addrs:?}");
    }
    served.wait_ready(addrs.admin).await;
    let line = served
        .output()
        .lines()
        .find(|l| l.contains("tokengate listening"))
        .map(str::to_string)
        .expect("the start-up line");
    let event: Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(event["fields"]["http"], addrs.http.to_string(), "{line}");

    served.proc.signal("TERM");
    let status = tokio::task::block_in_place(|| served.wait_exit(Duration::from_secs(10)));
    assert!(status.success(), "{}", served.output());
}

#[test]
fn serve_with_a_bad_config_exits_non_zero_without_panicking() {
    let text = edit(
        &shipped_text(),
        "on_store_error: deny",
        "on_store_eror: deny",
    );
    let mut served = Served::start("cli-serve-bad", &text);
    let status = served.wait_exit(Duration::from_secs(10));

    let err = served.stderr();
    assert!(!status.success(), "served a bad config");
    assert!(!err.contains("panicked"), "{err}");
    let at = format!(
        "{}:{}:",
        served.config.display(),
        line_of(&text, "on_store_eror")
    );
    assert!(err.contains(&at), "expected `{at}` in: {err}");
    assert!(err.contains("on_store_eror"), "{err}");
}

#[test]
fn serve_with_a_missing_config_file_exits_non_zero_without_panicking() {
    let dir = Scratch::new("cli-serve-missing");
    let config = dir.join("does-not-exist.yaml");

    let mut served = Served::start_file(dir, config.clone());
    let status = served.wait_exit(Duration::from_secs(10));

    let err = served.stderr();
    assert!(!status.success(), "served a missing config");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains(&config.display().to_string()),
        "the file is not named: {err}"
    );
}

#[test]
fn serve_on_a_busy_port_exits_non_zero_without_panicking() {
    // Held for the whole test, so tokengate cannot bind it.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let text = shipped_on_port_zero(&[("http: 127.0.0.1:0", &format!("http: 127.0.0.1:{port}"))]);

    let mut served = Served::start("cli-serve-busy", &text);
    let status = served.wait_exit(Duration::from_secs(10));

    let err = served.stderr();
    assert!(!status.success(), "started on a busy port");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("cannot listen") && err.contains(&port.to_string()),
        "{err}"
    );
    drop(busy);
}
