//! A small client of the lab's control API (`GET /v1/status`, `POST /v1/faults`) and
//! the state file (`lab.json`) through which a running lab is found. The drill only
//! speaks HTTP to the lab; it does not link the lab crate.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;

use crate::error::DrillError;
use crate::scenario::LabFault;

/// Bound on one control call: loopback, but a fault on a whole region may take the
/// lab a moment.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// Control answers are small.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// The contents of `lab.json`, as far as the drill needs them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LabState {
    /// Base URL of the control API.
    pub control_url: String,
    /// Bearer token for it.
    pub token: String,
    /// Where the lab takes traffic.
    pub frontdoor_url: String,
}

impl LabState {
    /// Reads `DIR/lab.json` (the caller picks DIR: `$GEOHA_STATE_DIR`, else
    /// `$HOME/.geoha`); `Ok(None)` when no lab runs. Blocking: call before the runtime.
    pub fn read(dir: &Path) -> Result<Option<LabState>, DrillError> {
        let path = dir.join("lab.json");
        let bad = |reason: String| DrillError::Control {
            url: path.display().to_string(),
            reason,
        };
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| bad(format!("unreadable state file: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(bad(e.to_string())),
        }
    }

    /// The control endpoint it names.
    pub fn endpoint(&self) -> Result<LabEndpoint, DrillError> {
        LabEndpoint::new(&self.control_url, &self.token)
    }
}

/// Where the lab's control API listens, and the token it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabEndpoint {
    base: Uri,
    token: String,
}

impl LabEndpoint {
    /// `url` is `http://HOST:PORT` (the control API is plain HTTP on loopback).
    pub fn new(url: &str, token: &str) -> Result<LabEndpoint, DrillError> {
        let base: Uri = url
            .trim_end_matches('/')
            .parse()
            .map_err(|e| DrillError::BadInput(format!("--control {url:?}: {e}")))?;
        if base.scheme_str() != Some("http") || base.authority().is_none() {
            return Err(DrillError::BadInput(format!(
                "--control {url:?}: expected http://HOST:PORT"
            )));
        }
        Ok(LabEndpoint {
            base,
            token: token.to_string(),
        })
    }

    /// The base URL.
    pub fn url(&self) -> String {
        self.base.to_string().trim_end_matches('/').to_string()
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<serde_json::Value, String> {
        self.call(Method::GET, "/v1/status", None).await
    }

    /// `POST /v1/faults`.
    pub async fn apply(&self, fault: &LabFault) -> Result<serde_json::Value, String> {
        let body = serde_json::to_vec(&fault.to_json()).map_err(|e| e.to_string())?;
        self.call(Method::POST, "/v1/faults", Some(body)).await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<serde_json::Value, String> {
        match tokio::time::timeout(CONTROL_TIMEOUT, self.call_inner(method, path, body)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {CONTROL_TIMEOUT:?}")),
        }
    }

    async fn call_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<serde_json::Value, String> {
        let authority = self.base.authority().ok_or("no authority")?.clone();
        let port = authority.port_u16().unwrap_or(80);
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let stream = TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, authority.as_str())
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
        if status.is_success() {
            Ok(value)
        } else {
            let detail = value
                .get("error")
                .and_then(|e| e.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| value.to_string());
            Err(format!("{status}: {detail}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_state_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(LabState::read(dir.path()).unwrap(), None);
        std::fs::write(
            dir.path().join("lab.json"),
            r#"{"control_url":"http://127.0.0.1:4000","token":"t","frontdoor_url":"http://127.0.0.1:8080","pid":7}"#,
        )
        .unwrap();
        let state = LabState::read(dir.path()).unwrap().unwrap();
        assert_eq!(state.frontdoor_url, "http://127.0.0.1:8080");
        assert_eq!(state.endpoint().unwrap().url(), "http://127.0.0.1:4000");
        std::fs::write(dir.path().join("lab.json"), "{").unwrap();
        assert!(LabState::read(dir.path()).is_err());
        assert!(LabEndpoint::new("127.0.0.1:4000", "t").is_err());
    }
}
