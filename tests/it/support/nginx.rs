//! A real nginx (Debian package) in front of tokengate, started by the test on loopback:
//! `auth_request` to tokengate's HTTP-mode check for every request, the identity headers
//! of tokengate's answer set upstream (overwriting whatever the client sent), tokengate's
//! `WWW-Authenticate` passed back on 401/403, and `/v1/auth/` proxied to tokengate
//! without `auth_request`. Its own prefix, configuration, logs, pid and temp files live in
//! a scratch directory; one process (`master_process off`), killed when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::envoy::Scratch;
use super::procs::{self, Proc};

/// The nginx binary. Debian installs it in `/usr/sbin`, which is not on a normal user's
/// PATH, so that is looked at when PATH has none.
pub fn nginx_bin() -> PathBuf {
    let sbin = Path::new("/usr/sbin/nginx");
    let on_path = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("nginx").is_file()));
    if !on_path && sbin.is_file() {
        return sbin.to_path_buf();
    }
    procs::tool("nginx", "nginx (Debian package nginx)")
}

/// The configuration: `{listen}`, `{tokengate}` (tokengate's HTTP listener), `{app}`
/// (the upstream) and `{dir}` (the scratch directory) are filled in by `fill`.
///
/// What makes it safe, line by line:
/// - `auth_request /_authz` asks tokengate before anything reaches the app; nginx maps
///   tokengate's 2xx to "go on", 401/403 to that status, anything else to 500.
/// - `/_authz` is `internal` (a client cannot call it), sends no body, and *sets*
///   `X-Original-URI`/`X-Original-Method` (a client-sent copy is replaced), which
///   tokengate reads for the route rules.
/// - `proxy_set_header X-User-Id $tg_user` replaces the client's `X-User-Id`; when
///   tokengate sends the header empty (no such claim, or an exempt route), nginx sends
///   no `X-User-Id` at all. So the app only ever sees tokengate's value.
/// - The 401/403 of `auth_request` go to named locations that answer with the same
///   status, tokengate's `WWW-Authenticate` challenge and a small JSON body (nginx drops
///   the subrequest's body). On a 401 nginx copies the challenge by itself (an
///   `add_header` of it there would send it twice); on a 403 it does not, so the 403
///   location adds the `$tg_www` that `auth_request_set` captured.
/// - `/v1/auth/` (logout, logout-all) goes straight to tokengate, which checks the token
///   itself.
pub const TEMPLATE: &str = r#"
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;

events {
    worker_connections 256;
}

http {
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    upstream tokengate {
        server {tokengate};
    }
    upstream app {
        server {app};
    }

    server {
        listen 127.0.0.1:{listen};
        server_name _;

        location = /_authz {
            internal;
            proxy_pass http://tokengate/authz;
            proxy_http_version 1.1;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-Host $host;
        }

        location /v1/auth/ {
            proxy_pass http://tokengate;
            proxy_http_version 1.1;
        }

        location / {
            auth_request /_authz;
            auth_request_set $tg_user $upstream_http_x_user_id;
            auth_request_set $tg_tenant $upstream_http_x_tenant_id;
            auth_request_set $tg_www $upstream_http_www_authenticate;
            error_page 401 = @unauthorized;
            error_page 403 = @forbidden;

            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header X-User-Id $tg_user;
            proxy_set_header X-Tenant-Id $tg_tenant;
        }

        # No add_header here: on a 401 auth_request itself copies the subrequest's
        # WWW-Authenticate into the response, and adding $tg_www would send it twice.
        location @unauthorized {
            default_type application/json;
            return 401 '{"error":"unauthorized","message":"see WWW-Authenticate"}';
        }

        location @forbidden {
            default_type application/json;
            add_header WWW-Authenticate $tg_www always;
            return 403 '{"error":"forbidden","message":"see WWW-Authenticate"}';
        }
    }
}
"#;

/// A template filled in.
fn fill(template: &str, listen: u16, tokengate: SocketAddr, app: SocketAddr, dir: &Path) -> String {
    template
        .replace("{listen}", &listen.to_string())
        .replace("{tokengate}", &tokengate.to_string())
        .replace("{app}", &app.to_string())
        .replace("{dir}", &dir.display().to_string())
}

/// A running nginx, killed when dropped.
pub struct Nginx {
    /// Held for its `Drop`: nginx is killed with the handle.
    _proc: Proc,
    pub addr: SocketAddr,
    pub dir: Scratch,
}

impl Nginx {
    /// Starts nginx in front of tokengate's HTTP listener and the app; waits until it
    /// accepts connections. A port taken between choosing and binding (another test)
    /// makes nginx exit at once: then another port is tried.
    pub async fn start(tokengate: SocketAddr, app: SocketAddr) -> Nginx {
        Self::start_template(TEMPLATE, tokengate, app).await
    }

    /// [`start`](Self::start) on another template with the same placeholders.
    pub async fn start_template(template: &str, tokengate: SocketAddr, app: SocketAddr) -> Nginx {
        let dir = Scratch::new("nginx");
        for temp in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(dir.join(temp)).expect("nginx temp dir");
        }
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = super::free_port();
            let conf = fill(template, port, tokengate, app, &dir.path);
            dir.write("nginx.conf", &conf);
            let log = std::fs::File::create(dir.join("stderr.log")).expect("nginx stderr file");
            let mut proc = Proc::spawn(
                "nginx",
                Command::new(nginx_bin())
                    .arg("-p")
                    .arg(&dir.path)
                    .arg("-c")
                    .arg(dir.join("nginx.conf"))
                    // The error log before the configuration is read (default: /var/log).
                    .arg("-e")
                    .arg(dir.join("error.log"))
                    .stdout(log.try_clone().expect("nginx stderr file"))
                    .stderr(log),
            );
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut exited = false;
            super::wait_for(
                "nginx to accept connections",
                Duration::from_secs(10),
                || {
                    exited = matches!(proc.child.try_wait(), Ok(Some(_)));
                    async move { exited || tokio::net::TcpStream::connect(addr).await.is_ok() }
                },
            )
            .await;
            if !exited {
                return Nginx {
                    _proc: proc,
                    addr,
                    dir,
                };
            }
            last_log = format!("{}{}", dir.read("stderr.log"), dir.read("error.log"));
            if !last_log.contains("Address already in use") {
                break;
            }
        }
        panic!(
            "nginx did not start (config in {}):\n{last_log}",
            dir.path.display()
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// nginx's error log so far (for assertion messages).
    pub fn log(&self) -> String {
        self.dir.read("error.log")
    }
}
