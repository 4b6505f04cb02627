//! Connections to one origin: HTTP/1.1, kept alive in a small pool of idle senders.
//!
//! Our own pool instead of hyper-util's legacy client because the proxy needs to know
//! exactly what happened to a try: connect refused (nothing sent), pooled connection
//! found closed (nothing sent: `try_send_request` hands the request back), or closed
//! after sending. Only then can it decide whether another origin may get the request.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::OutBody;

/// A sender on one HTTP/1.1 connection to an origin.
pub(crate) type Sender = http1::SendRequest<OutBody>;

/// Why no connection could be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// TCP connect or HTTP handshake failed.
    #[error("connect to {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// No TCP connection within the connect timeout (a black hole).
    #[error("connect to {addr}: no answer within {after:?}")]
    Timeout { addr: SocketAddr, after: Duration },
    /// HTTP/1 handshake failed.
    #[error("handshake with {addr}: {source}")]
    Handshake {
        addr: SocketAddr,
        #[source]
        source: hyper::Error,
    },
}

/// Idle keep-alive connections to one origin, one list per data-plane worker: a
/// connection is driven by a task on the worker that opened it, so reusing it from that
/// worker involves no other thread.
#[derive(Debug)]
pub(crate) struct ConnectionPool {
    addr: SocketAddr,
    idle: Box<[Mutex<Vec<Sender>>]>,
    max_idle_per_worker: usize,
}

impl ConnectionPool {
    /// At most `max_idle` idle connections in all, spread over `workers` lists.
    pub(crate) fn new(addr: SocketAddr, max_idle: usize, workers: usize) -> Self {
        let workers = workers.max(1);
        ConnectionPool {
            addr,
            idle: (0..workers).map(|_| Mutex::new(Vec::new())).collect(),
            max_idle_per_worker: max_idle.div_ceil(workers),
        }
    }

    /// The idle list of the worker running this code.
    fn local(&self) -> &Mutex<Vec<Sender>> {
        &self.idle[crate::dataplane::current_worker() % self.idle.len()]
    }

    /// An idle connection that still looks open, if any (most recently used first).
    pub(crate) fn take_idle(&self) -> Option<Sender> {
        let mut idle = self.local().lock().ok()?;
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    /// Returns a connection after its response was read to the end.
    pub(crate) fn put(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.local().lock() {
            if idle.len() < self.max_idle_per_worker {
                idle.push(sender);
            }
        }
    }

    /// Closes every idle connection (origin ejected, disabled or removed).
    pub(crate) fn clear(&self) {
        for list in &self.idle {
            if let Ok(mut idle) = list.lock() {
                idle.clear();
            }
        }
    }

    /// A new connection (not pooled until its first response completes).
    pub(crate) async fn connect(&self, timeout: Duration) -> Result<Sender, ConnectError> {
        let stream = open_tcp(self.addr, timeout).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| ConnectError::Handshake {
                addr: self.addr,
                source,
            })?;
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(%err, "origin connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// A new connection that may switch protocols (`Upgrade`); never pooled.
    pub(crate) async fn connect_upgradable(
        &self,
        timeout: Duration,
    ) -> Result<Sender, ConnectError> {
        let stream = open_tcp(self.addr, timeout).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| ConnectError::Handshake {
                addr: self.addr,
                source,
            })?;
        tokio::spawn(async move {
            if let Err(err) = conn.with_upgrades().await {
                tracing::debug!(%err, "upgraded origin connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// TCP keep-alive on origin connections: an origin that vanished (host down, link cut)
/// is noticed within ~5 s on an idle pooled connection, without a request paying for it.
const KEEPALIVE: socket2::TcpKeepalive = socket2::TcpKeepalive::new()
    .with_time(Duration::from_secs(2))
    .with_interval(Duration::from_secs(1))
    .with_retries(3);

/// A TCP connection with `TCP_NODELAY` and keep-alive, bounded by `timeout`.
pub(crate) async fn open_tcp(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => {
            return Err(ConnectError::Timeout {
                addr,
                after: timeout,
            })
        }
        Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&KEEPALIVE);
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn origin_connections_use_tcp_keepalive() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = open_tcp(addr, Duration::from_secs(1)).await.unwrap();
        let sock = socket2::SockRef::from(&stream);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(2));
        assert!(stream.nodelay().unwrap());
    }
}
