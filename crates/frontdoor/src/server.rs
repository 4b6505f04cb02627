//! Client-facing listeners: accept (bounded by `limits.max_connections`), optional TLS,
//! HTTP/1.1 and HTTP/2 (ALPN with TLS, preface sniffing without), limits on headers and
//! slow senders, graceful drain on shutdown.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::Limits;
use crate::forward::{self, ClientInfo};
use crate::tls::TlsAcceptor;
use crate::Frontdoor;

/// Accepts clients on one listener until `stop` is cancelled.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    fd: Arc<Frontdoor>,
    graceful: Arc<GracefulShutdown>,
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
        let watcher = graceful.watcher();
        let fd = Arc::clone(&fd);
        let tls = tls.clone();
        tokio::spawn(async move {
            let client = Arc::new(ClientInfo::new(peer, tls.is_some()));
            serve_connection(stream, tls, client, fd, watcher, permit).await;
        });
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

async fn serve_connection(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    client: Arc<ClientInfo>,
    fd: Arc<Frontdoor>,
    watcher: hyper_util::server::graceful::Watcher,
    _permit: OwnedSemaphorePermit,
) {
    fd.stats.connections_open.fetch_add(1, Ordering::Relaxed);
    let _open = OpenConnection(Arc::clone(&fd));
    let limits = fd.routing.load().cfg.limits.clone();
    let service = {
        let fd = Arc::clone(&fd);
        let client = Arc::clone(&client);
        service_fn(move |req| {
            let fd = Arc::clone(&fd);
            let client = Arc::clone(&client);
            async move { Ok::<_, Infallible>(forward::handle(fd, client, req).await) }
        })
    };
    match tls {
        None => {
            // A client that connects and sends nothing is cut at the header timeout (the
            // HTTP/2 preface sniffing below would otherwise wait forever).
            let mut first = [0u8; 1];
            match tokio::time::timeout(limits.header_read_timeout, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let builder = builder(&limits, None);
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            if let Err(err) = watcher.watch(conn).await {
                tracing::debug!(%err, peer = %client.peer, "client connection ended with an error");
            }
        }
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream));
            let stream = match handshake.await {
                Ok(Ok(s)) => s,
                Ok(Err(err)) => {
                    tracing::debug!(%err, peer = %client.peer, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let builder = builder(&limits, Some(h2));
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            if let Err(err) = watcher.watch(conn).await {
                tracing::debug!(%err, peer = %client.peer, "client connection ended with an error");
            }
        }
    }
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
