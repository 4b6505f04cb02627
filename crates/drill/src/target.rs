//! Where the load goes: a validated `http://` URL, resolved once before the run.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use http::uri::{PathAndQuery, Uri};
use http::HeaderValue;

use crate::error::DrillError;

/// The path used when the URL names none: the API's "who answered" endpoint.
pub const DEFAULT_PATH: &str = "/default/";

/// A load target, parsed at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl {
    host: String,
    port: u16,
    path: PathAndQuery,
}

impl TargetUrl {
    /// Parses `http://HOST[:PORT][/PATH]`. A URL without a path (or with `/`) targets
    /// [`DEFAULT_PATH`], so `--target http://127.0.0.1:8080` measures the API itself,
    /// not its Swagger page.
    pub fn parse(url: &str) -> Result<TargetUrl, DrillError> {
        let bad = |reason: &str| DrillError::BadInput(format!("target {url:?}: {reason}"));
        let uri: Uri = url.parse().map_err(|e| bad(&format!("not a URL ({e})")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(bad(
                "https is not supported yet; use an http:// URL (or a local TLS-terminating proxy)",
            )),
            _ => return Err(bad("expected http://HOST[:PORT][/PATH]")),
        }
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let path = match uri.path_and_query() {
            Some(p) if p.as_str() != "/" && !p.as_str().is_empty() => p.clone(),
            _ => PathAndQuery::from_static(DEFAULT_PATH),
        };
        Ok(TargetUrl {
            host,
            port: uri.port_u16().unwrap_or(80),
            path,
        })
    }

    /// The `Host` header value.
    pub(crate) fn host_header(&self) -> HeaderValue {
        let authority = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        HeaderValue::from_str(&authority).unwrap_or_else(|_| HeaderValue::from_static("localhost"))
    }

    /// Path and query sent on every request.
    pub(crate) fn path(&self) -> &PathAndQuery {
        &self.path
    }

    /// Resolves the host once (a name lookup per request would measure DNS, not the
    /// service), bounded by `timeout`.
    pub(crate) async fn resolve(&self, timeout: Duration) -> Result<SocketAddr, DrillError> {
        let lookup = tokio::net::lookup_host((self.host.as_str(), self.port));
        let fail = |reason: String| DrillError::Resolve {
            host: self.host.clone(),
            reason,
        };
        let mut addrs = tokio::time::timeout(timeout, lookup)
            .await
            .map_err(|_| fail(format!("no answer within {timeout:?}")))?
            .map_err(|e| fail(e.to_string()))?;
        addrs.next().ok_or_else(|| fail("no address".to_string()))
    }
}

impl fmt::Display for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.host_header();
        write!(f, "http://{}{}", host.to_str().unwrap_or("?"), self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_defaults_the_path() {
        let t = TargetUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(t.to_string(), "http://127.0.0.1:8080/default/");
        let t = TargetUrl::parse("http://example.test/healthz?x=1").unwrap();
        assert_eq!(t.to_string(), "http://example.test:80/healthz?x=1");
        let t = TargetUrl::parse("http://[::1]:81/").unwrap();
        assert_eq!(t.host_header(), "[::1]:81");
        assert!(TargetUrl::parse("https://x.azurefd.net").is_err());
        assert!(TargetUrl::parse("ftp://x").is_err());
        assert!(TargetUrl::parse("not a url").is_err());
    }
}
