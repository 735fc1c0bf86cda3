//! A server outage on demand, for tests of what a store and its callers do when the server goes
//! away mid-run and comes back (DESIGN.md, quality bars: "restarting servers mid-run").
//!
//! Restarting a real server would break every other test using it at the same time, so a test
//! points its store at a [`Proxy`] in front of the server instead. [`Proxy::cut`] closes every
//! connection through it and refuses new ones (accepted, then closed at once, as a server that
//! is starting up does), which is what a restart looks like from the client; [`Proxy::restore`]
//! lets connections through again.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use tasktrack_core::testkit::outage::Proxy;
//! let proxy = Proxy::start("127.0.0.1:5432")?;
//! let url = format!("postgres://postgres@{}/test", proxy.addr());
//! // ... open a store on `url`, start work, then:
//! proxy.cut();
//! proxy.restore();
//! # Ok(()) }
//! ```

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP proxy on a free local port that forwards to one upstream address until [`cut`].
///
/// It runs on a thread of its own (with its own runtime), so it works the same from a blocking
/// test and from an async one, whatever that one's runtime. Dropping it closes everything.
///
/// [`cut`]: Proxy::cut
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    /// `true` while connections may pass; every connection watches it.
    up: Arc<watch::Sender<bool>>,
    /// Connections closed on arrival while cut.
    refused: Arc<AtomicUsize>,
    /// Dropped with the proxy, which ends its thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Proxy {
    /// Listens on `127.0.0.1:0` and forwards every connection to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> io::Result<Proxy> {
        let upstream = upstream.to_string();
        // Bound here, so that the port is known (and taken) before `start` returns; served by
        // a runtime of the proxy's own thread (a blocking `block_on` would panic inside a
        // caller's runtime).
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let up = Arc::new(watch::Sender::new(true));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let refused = Arc::new(AtomicUsize::new(0));
        let (serving, counting) = (up.clone(), refused.clone());
        std::thread::Builder::new()
            .name(format!("outage-proxy-{addr}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        () = accept_loop(listener, upstream, serving, counting) => {}
                        _ = stopped => {}
                    }
                });
            })?;
        Ok(Proxy {
            addr,
            up,
            refused,
            _stop: stop,
        })
    }

    /// Where clients connect: `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server "goes down": every open connection is closed, new ones are closed on arrival.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// How many connections arrived while cut (and were closed at once): that a client met the
    /// outage, and tried again during it.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// The server is back: new connections pass again (closed ones stay closed, as after a
    /// restart).
    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: String,
    up: Arc<watch::Sender<bool>>,
    refused: Arc<AtomicUsize>,
) {
    while let Ok((inbound, _)) = listener.accept().await {
        if !*up.borrow() {
            refused.fetch_add(1, Ordering::SeqCst);
            continue; // dropped: closed on arrival
        }
        tokio::spawn(forward(inbound, upstream.clone(), up.subscribe()));
    }
}

/// Copies bytes both ways until either side closes or the proxy is cut.
async fn forward(mut inbound: TcpStream, upstream: String, mut up: watch::Receiver<bool>) {
    let Ok(mut outbound) = TcpStream::connect(&upstream).await else {
        return;
    };
    tokio::select! {
        _ = copy_bidirectional(&mut inbound, &mut outbound) => {}
        _ = up.wait_for(|up| !*up) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An upstream that answers each connection's bytes back.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n @ 1..) = s.read(&mut buf).await {
                        if s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn echo(s: &mut TcpStream, what: &[u8]) -> io::Result<Vec<u8>> {
        s.write_all(what).await?;
        let mut back = vec![0u8; what.len()];
        s.read_exact(&mut back).await?;
        Ok(back)
    }

    /// Whether the proxy closed `s` (the read ends; it waits for that rather than racing it).
    async fn closed(s: &mut TcpStream) -> bool {
        let mut buf = [0u8; 8];
        matches!(s.read(&mut buf).await, Ok(0) | Err(_))
    }

    #[tokio::test]
    async fn forwards_then_cuts_then_forwards_again() {
        let upstream = echo_server().await;
        let proxy = Proxy::start(&upstream.to_string()).unwrap();
        let mut before = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(echo(&mut before, b"ping").await.unwrap(), b"ping");

        proxy.cut();
        assert!(
            closed(&mut before).await,
            "an open connection is closed by the cut"
        );
        let mut during = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(closed(&mut during).await, "a new one is closed on arrival");
        assert_eq!(proxy.refused(), 1);

        proxy.restore();
        let mut after = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(echo(&mut after, b"back").await.unwrap(), b"back");
    }
}
