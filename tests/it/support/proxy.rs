//! A small TCP proxy for fault injection: sits between tokengate and Redis on loopback
//! and can delay replies or cut every open connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Control {
    delay_ms: AtomicU64,
    /// Chunks sent towards the upstream (requests, roughly).
    upstream_chunks: AtomicU64,
}

pub struct Proxy {
    pub addr: SocketAddr,
    control: Arc<Control>,
    /// Replaced on every cut; connections watch the current one.
    generation: std::sync::Mutex<CancellationToken>,
    stop: CancellationToken,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Arc<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let proxy = Arc::new(Proxy {
            addr: listener.local_addr().unwrap(),
            control: Arc::default(),
            generation: std::sync::Mutex::new(CancellationToken::new()),
            stop: CancellationToken::new(),
        });
        let p = proxy.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = p.stop.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((client, _)) = accepted else { continue };
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let cut = p.generation.lock().unwrap().clone();
                tokio::spawn(pipe(client, server, p.control.clone(), cut, p.stop.clone()));
            }
        });
        proxy
    }

    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// Delay every reply from the upstream by `ms`.
    pub fn set_delay(&self, ms: u64) {
        self.control.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Close every open connection now.
    pub fn cut(&self) {
        let mut g = self.generation.lock().unwrap();
        g.cancel();
        *g = CancellationToken::new();
    }

    pub fn upstream_chunks(&self) -> u64 {
        self.control.upstream_chunks.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut();
    }
}

async fn pipe(
    client: TcpStream,
    server: TcpStream,
    control: Arc<Control>,
    cut: CancellationToken,
    stop: CancellationToken,
) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = {
        let control = control.clone();
        async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match cr.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                control.upstream_chunks.fetch_add(1, Ordering::SeqCst);
                if sw.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let delay = control.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            if cw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = cut.cancelled() => {}
        _ = stop.cancelled() => {}
    }
}
