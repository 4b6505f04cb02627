//! The public IP lookup: once at start-up, then refreshed in the background.
//!
//! A request never waits on it: the answer carries whatever is known (or `"Error"`).
//! Only plain `http://` URLs are supported: the lookup runs inside a `FROM scratch`
//! image with no CA bundle, and the answer is informational.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use crate::identity::CardCache;

/// Where to look up the public IP, and how patiently.
#[derive(Debug, Clone)]
pub struct IpLookup {
    /// An `http://` URL whose body is the caller's IP address as text (e.g. ipify).
    pub url: http::Uri,
    /// Upper bound for connect + request + body.
    pub timeout: Duration,
    /// Time between lookups.
    pub refresh: Duration,
}

/// Why a lookup failed (logged at debug level; the answer keeps the last known IP).
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The URL is not `http://host[:port]/path`.
    #[error("unsupported lookup URL {0} (only http:// is supported)")]
    Url(String),
    /// Name resolution, connect, or HTTP failure.
    #[error("lookup failed: {0}")]
    Io(String),
    /// No answer within the timeout.
    #[error("lookup timed out after {0:?}")]
    Timeout(Duration),
    /// The body is not an IP address.
    #[error("lookup answered {0:?}, which is not an IP address")]
    NotAnIp(String),
}

impl IpLookup {
    /// Checks the URL once, at configuration time.
    pub fn new(url: &str, timeout: Duration, refresh: Duration) -> Result<Self, LookupError> {
        let uri: http::Uri = url.parse().map_err(|_| LookupError::Url(url.into()))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(LookupError::Url(url.into()));
        }
        Ok(IpLookup {
            url: uri,
            timeout,
            refresh,
        })
    }

    /// One lookup, bounded by `timeout`.
    pub async fn lookup(&self) -> Result<IpAddr, LookupError> {
        tokio::time::timeout(self.timeout, self.lookup_unbounded())
            .await
            .map_err(|_| LookupError::Timeout(self.timeout))?
    }

    async fn lookup_unbounded(&self) -> Result<IpAddr, LookupError> {
        let host = self.url.host().unwrap_or_default();
        let port = self.url.port_u16().unwrap_or(80);
        let io = |e: &dyn std::fmt::Display| LookupError::Io(e.to_string());
        let stream = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| io(&e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| io(&e))?;
        let conn = tokio::spawn(conn);
        let path = self.url.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let req = http::Request::get(path)
            .header(http::header::HOST, host)
            .header(http::header::USER_AGENT, "geoha-api")
            .body(Empty::<Bytes>::new())
            .map_err(|e| io(&e))?;
        let resp = sender.send_request(req).await.map_err(|e| io(&e))?;
        if !resp.status().is_success() {
            conn.abort();
            return Err(LookupError::Io(format!("status {}", resp.status())));
        }
        // An IP address is short: refuse to buffer anything large.
        let body = Limited::new(resp.into_body(), 256)
            .collect()
            .await
            .map_err(|e| io(&e))?
            .to_bytes();
        conn.abort();
        let text = String::from_utf8_lossy(&body).trim().to_string();
        text.parse().map_err(|_| LookupError::NotAnIp(text))
    }
}

/// Looks the IP up now and then every `refresh`, until `stop` is cancelled. A failed
/// lookup keeps the last known IP: it is still the best answer there is.
pub async fn refresh_forever(lookup: IpLookup, card: Arc<CardCache>, stop: CancellationToken) {
    loop {
        match lookup.lookup().await {
            Ok(ip) => card.set_ip(Some(&ip.to_string())),
            Err(err) => tracing::debug!(%err, url = %lookup.url, "public IP lookup failed"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(lookup.refresh) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_are_accepted() {
        let t = Duration::from_secs(1);
        assert!(IpLookup::new("http://api.ipify.org", t, t).is_ok());
        assert!(IpLookup::new("https://api.ipify.org", t, t).is_err());
        assert!(IpLookup::new("not a url", t, t).is_err());
        assert!(IpLookup::new("/relative", t, t).is_err());
    }
}
