//! A small HTTP/1.1 client for loopback admin APIs (the front door's, the lab's own
//! control API): one connection per call, a timeout on everything, bearer auth.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;

/// Answers above this size are refused (admin answers are small JSON documents).
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminCallError {
    /// Connect, send or read failed.
    #[error("{url}: {reason}")]
    Io {
        /// The URL called.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// No answer in time.
    #[error("{url}: no answer within {after:?}")]
    Timeout {
        /// The URL called.
        url: String,
        /// The bound.
        after: Duration,
    },
}

/// One call: `method` `path` on `addr` with an optional bearer token and JSON body.
/// Returns the status and the body.
pub async fn call(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    token: Option<&str>,
    json_body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<(http::StatusCode, Bytes), AdminCallError> {
    let url = format!("http://{addr}{path}");
    let work = async {
        let io = |e: &dyn std::fmt::Display| AdminCallError::Io {
            url: url.clone(),
            reason: e.to_string(),
        };
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| io(&e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| io(&e))?;
        let conn = tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, addr.to_string());
        if let Some(t) = token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if json_body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(json_body.unwrap_or_default())))
            .map_err(|e| io(&e))?;
        let resp = sender.send_request(req).await.map_err(|e| io(&e))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| io(&e))?
            .to_bytes();
        conn.abort();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| AdminCallError::Timeout {
            url: url.clone(),
            after: timeout,
        })?
}
