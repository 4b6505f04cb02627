//! Client-facing listeners: accept (bounded by `limits.max_connections`) and hand over to
//! the data plane; per connection: optional TLS, HTTP/1.1 and HTTP/2 (ALPN with TLS,
//! preface sniffing without), limits on headers and slow senders, graceful drain on
//! shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tokio_util::task::TaskTracker;

use crate::config::Limits;
use crate::dataplane::{Accepted, Dispatcher};
use crate::forward::{self, ClientInfo};
use crate::tls::TlsAcceptor;
use crate::Frontdoor;

/// Every client connection of the front door (traffic and admin): counted, so that the
/// drain can wait for them, and told to finish their current request when it starts.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnectionSet {
    drain: CancellationToken,
    tracker: TaskTracker,
}

impl ConnectionSet {
    /// Counts one connection until the token is dropped.
    pub(crate) fn token(&self) -> TaskTrackerToken {
        self.tracker.token()
    }

    /// Cancelled when the drain starts.
    pub(crate) fn drain_signal(&self) -> CancellationToken {
        self.drain.clone()
    }

    /// Starts the drain and waits until every connection is closed; false if `deadline`
    /// passed first.
    pub(crate) async fn drain(&self, deadline: Duration) -> bool {
        self.drain.cancel();
        self.tracker.close();
        tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok()
    }
}

/// Drives a connection; once `drain` is cancelled, asks it to finish (`graceful_shutdown`:
/// HTTP/1 closes after the response in progress, HTTP/2 sends GOAWAY) and drives it to
/// the end.
pub(crate) async fn until_drained<C, E>(
    conn: C,
    drain: &CancellationToken,
    graceful_shutdown: impl FnOnce(Pin<&mut C>),
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    tokio::pin!(conn);
    tokio::select! {
        biased;
        done = conn.as_mut() => return done,
        () = drain.cancelled() => {}
    }
    graceful_shutdown(conn.as_mut());
    conn.await
}

/// Accepts clients on listener number `index` until `stop` is cancelled and hands them
/// to the data plane.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    index: usize,
    dispatcher: Arc<Dispatcher>,
    permits: Arc<Semaphore>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        // A permit before accepting: over the limit, clients wait in the backlog.
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            () = stop.cancelled() => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stop.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => {
                backoff = Duration::from_millis(5);
                conn
            }
            Err(err) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!(%err, "accept failed; backing off {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // Off this runtime's event loop: a worker registers it with its own.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(%err, %peer, "cannot hand over a client connection");
                continue;
            }
        };
        dispatcher
            .dispatch(Accepted {
                stream,
                peer,
                listener: index,
                permit,
            })
            .await;
    }
}

struct OpenConnection(Arc<Frontdoor>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0
            .stats
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one client connection (on a data-plane worker) until it ends or is drained.
pub(crate) async fn serve_connection(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    peer: SocketAddr,
    fd: Arc<Frontdoor>,
    drain: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    fd.stats.connections_open.fetch_add(1, Ordering::Relaxed);
    let _open = OpenConnection(Arc::clone(&fd));
    let limits = fd.routing.load().cfg.limits.clone();
    let client = Arc::new(ClientInfo::new(peer, tls.is_some()));
    let service = {
        let fd = Arc::clone(&fd);
        service_fn(move |req| {
            let fd = Arc::clone(&fd);
            let client = Arc::clone(&client);
            async move { Ok::<_, Infallible>(forward::handle(fd, client, req).await) }
        })
    };
    let ended = match tls {
        None => {
            // A client that connects and sends nothing is cut at the header timeout (the
            // HTTP/2 preface sniffing below would otherwise wait forever).
            let mut first = [0u8; 1];
            match tokio::time::timeout(limits.header_read_timeout, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            if first[0] == H2_PREFACE[0] {
                // Perhaps HTTP/2 with prior knowledge (or POST, PUT, PATCH...): sniff.
                let conn = builder(&limits, None)
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                until_drained(conn, &drain, |c| c.graceful_shutdown()).await
            } else {
                // Cannot be the HTTP/2 preface: HTTP/1 without the sniffing layer.
                let conn = http1_builder(&limits)
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
                until_drained(conn, &drain, |c| c.graceful_shutdown())
                    .await
                    .map_err(Into::into)
            }
        }
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream));
            let stream = match handshake.await {
                Ok(Ok(s)) => s,
                Ok(Err(err)) => {
                    tracing::debug!(%err, %peer, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                let conn = builder(&limits, Some(true))
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                until_drained(conn, &drain, |c| c.graceful_shutdown()).await
            } else {
                let conn = http1_builder(&limits)
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
                until_drained(conn, &drain, |c| c.graceful_shutdown())
                    .await
                    .map_err(Into::into)
            }
        }
    };
    if let Err(err) = ended {
        tracing::debug!(%err, %peer, "client connection ended with an error");
    }
}

/// The first bytes of an HTTP/2 connection with prior knowledge (RFC 9113, 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// HTTP/1 without the sniffing layer: `builder`'s settings, and the header limit checked
/// exactly (`max_buf_size` alone lets a head through when one read fills the buffer past
/// it; the sniffing builder has no such setting).
fn http1_builder(limits: &Limits) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Headers beyond this get 431 (validated >= 8192, hyper's minimum).
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_header_size(limits.max_header_bytes.max(8192));
    b
}

/// `h2`: `None` sniffs the HTTP/2 preface; `Some` is the ALPN decision.
fn builder(limits: &Limits, h2: Option<bool>) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b = match h2 {
        Some(true) => b.http2_only(),
        Some(false) => b.http1_only(),
        None => b,
    };
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Headers beyond this get 431 (validated >= 8192, hyper's minimum).
        .max_buf_size(limits.max_header_bytes.max(8192));
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}
