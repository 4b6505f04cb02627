//! The outgoing HTTP client (peers and webhooks). Every call has a deadline from the
//! config and fails with a [`PeerError`] that names the URL.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// Header carrying the replication secret between peers.
pub(crate) const SECRET_HEADER: &str = "geoha-replication-secret";

type OutBody = BoxBody<Bytes, std::io::Error>;

/// A failed outgoing call.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerError {
    #[error("{url}: no answer within {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
    #[error("{url}: answered {status}")]
    Status { url: String, status: StatusCode },
}

/// A pooled HTTP/1 client.
#[derive(Debug, Clone)]
pub(crate) struct PeerClient {
    client: Client<HttpConnector, OutBody>,
    secret: Option<String>,
}

fn full(b: impl Into<Bytes>) -> OutBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

impl PeerClient {
    pub(crate) fn new(secret: Option<String>, connect_timeout: Duration) -> PeerClient {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        PeerClient { client, secret }
    }

    fn request(
        &self,
        method: Method,
        url: &str,
        body: OutBody,
    ) -> Result<Request<OutBody>, PeerError> {
        let mut b = Request::builder().method(method).uri(url);
        if let Some(s) = &self.secret {
            b = b.header(SECRET_HEADER, s.as_str());
        }
        b.body(body).map_err(|e| PeerError::Http {
            url: url.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Sends a request; the deadline covers connect and response headers.
    pub(crate) async fn send(
        &self,
        req: Request<OutBody>,
        timeout: Duration,
    ) -> Result<hyper::Response<Incoming>, PeerError> {
        let url = req.uri().to_string();
        match tokio::time::timeout(timeout, self.client.request(req)).await {
            Err(_) => Err(PeerError::Timeout {
                url,
                after: timeout,
            }),
            Ok(Err(e)) => Err(PeerError::Http {
                url,
                reason: error_chain(&e),
            }),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// GET/HEAD with the whole body read (at most `limit` bytes) within `timeout`.
    pub(crate) async fn fetch(
        &self,
        method: Method,
        url: &str,
        timeout: Duration,
        limit: usize,
    ) -> Result<(StatusCode, HeaderMap, Bytes), PeerError> {
        let req = self.request(method, url, full(Bytes::new()))?;
        let work = async {
            let resp = self.send(req, timeout).await?;
            let (parts, body) = resp.into_parts();
            let body = http_body_util::Limited::new(body, limit)
                .collect()
                .await
                .map_err(|e| PeerError::Http {
                    url: url.to_owned(),
                    reason: e.to_string(),
                })?
                .to_bytes();
            Ok((parts.status, parts.headers, body))
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| PeerError::Timeout {
                url: url.to_owned(),
                after: timeout,
            })?
    }

    /// GET whose body the caller streams (read-through of blobs).
    pub(crate) async fn get_stream(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<hyper::Response<Incoming>, PeerError> {
        let req = self.request(Method::GET, url, full(Bytes::new()))?;
        self.send(req, timeout).await
    }

    pub(crate) async fn post_json(
        &self,
        url: &str,
        body: String,
        timeout: Duration,
    ) -> Result<StatusCode, PeerError> {
        let mut req = self.request(Method::POST, url, full(body))?;
        req.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        let work = async {
            let resp = self.send(req, timeout).await?;
            let status = resp.status();
            let _ = resp.into_body().collect().await;
            Ok(status)
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| PeerError::Timeout {
                url: url.to_owned(),
                after: timeout,
            })?
    }

    /// PUTs a file's bytes.
    pub(crate) async fn put_file(
        &self,
        url: &str,
        path: &Path,
        timeout: Duration,
    ) -> Result<StatusCode, PeerError> {
        use futures_util::StreamExt as _;
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| PeerError::Http {
                url: url.to_owned(),
                reason: format!("open {}: {e}", path.display()),
            })?;
        let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024)
            .map(|r| r.map(Frame::data));
        let mut req = self.request(
            Method::PUT,
            url,
            http_body_util::BodyExt::boxed(StreamBody::new(stream)),
        )?;
        req.headers_mut()
            .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
        // The answer comes after the whole body: allow the transfer at 1 MiB/s or better.
        let deadline = timeout + Duration::from_secs(len / (1 << 20));
        let resp = self.send(req, deadline).await?;
        let status = resp.status();
        let _ = tokio::time::timeout(timeout, resp.into_body().collect()).await;
        Ok(status)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
