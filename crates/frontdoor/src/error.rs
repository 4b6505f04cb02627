//! Errors: what stops the front door ([`FrontdoorError`]) and why one request failed
//! ([`ForwardError`]). A `ForwardError` becomes an HTTP response in exactly one place,
//! [`ForwardError::into_response`]: a short text body that names the request reference.

use std::time::Duration;

use http::{header, HeaderValue, Response, StatusCode};

use crate::body::{full, ServedBody};
use crate::config::ConfigError;

/// Errors that stop [`crate::run`].
#[derive(Debug, thiserror::Error)]
pub enum FrontdoorError {
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A TLS certificate or key could not be loaded.
    #[error("listener {listener}: TLS: {reason}")]
    Tls {
        /// Listener address from config.
        listener: String,
        /// What went wrong.
        reason: String,
    },
    /// A listener is unusable.
    #[error("listener {addr}: {source}")]
    Listener {
        /// Its address.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A data-plane worker (thread and its runtime) could not be started.
    #[error("data-plane worker {index}: {source}")]
    Worker {
        /// Its index.
        index: usize,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Why a request got no answer from an origin (or was refused before).
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No route matches the host and path.
    #[error("no route for this host and path")]
    NoRoute,
    /// The request is malformed in a way hyper lets through.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// `X-Geoha-Hops` reached `limits.max_hops`: a routing loop.
    #[error("loop detected: the request already crossed {hops} front doors")]
    LoopDetected {
        /// Hops seen.
        hops: u32,
    },
    /// The body is over `limits.max_body_bytes`.
    #[error("request body over the {limit}-byte limit")]
    BodyTooLarge {
        /// The limit.
        limit: u64,
    },
    /// The client's request body broke while being forwarded.
    #[error("request body from the client failed")]
    ClientBody,
    /// Every origin of the group is disabled or draining.
    #[error("no origin available in group {group}")]
    NoOrigin {
        /// The group.
        group: String,
    },
    /// No connection to any origin tried.
    #[error("origin {origin} unreachable")]
    Connect {
        /// The last origin tried.
        origin: String,
    },
    /// The connection broke before the response headers.
    #[error("origin {origin} closed the connection before answering")]
    Closed {
        /// The last origin tried.
        origin: String,
    },
    /// No response headers within the origin response timeout (or the last try's).
    #[error("origin {origin} sent no response within {after:?}")]
    OriginTimeout {
        /// The last origin tried.
        origin: String,
        /// How long it waited.
        after: Duration,
    },
}

impl ForwardError {
    /// The status sent to the client.
    pub fn status(&self) -> StatusCode {
        match self {
            ForwardError::NoRoute => StatusCode::NOT_FOUND,
            ForwardError::BadRequest(_) | ForwardError::ClientBody => StatusCode::BAD_REQUEST,
            ForwardError::LoopDetected { .. } => StatusCode::LOOP_DETECTED,
            ForwardError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ForwardError::NoOrigin { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ForwardError::Connect { .. } | ForwardError::Closed { .. } => StatusCode::BAD_GATEWAY,
            ForwardError::OriginTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The client-facing response: status, a one-line body naming the reference.
    pub(crate) fn into_response(self, reference: &str) -> Response<ServedBody> {
        let status = self.status();
        let text = format!("geoha: {self} (ref {reference})\n");
        let mut resp = Response::new(full(text));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if matches!(
            self,
            ForwardError::BodyTooLarge { .. } | ForwardError::ClientBody
        ) {
            // The rest of the body may still be on the wire.
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}
