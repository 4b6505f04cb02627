//! Errors: [`RegistryError`] for the library's callers, [`StoreError`] for storage, and
//! [`OciError`], the one place where anything becomes an HTTP response with the
//! distribution spec's JSON body (internals are logged, never sent).

use std::io;
use std::path::PathBuf;

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};

use crate::digest::DigestError;

/// What `run`, `gc` and `Config::from_toml_str` report to their caller.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The config file is wrong; the message names file, line, column and key.
    #[error("{file}:{line}:{col}: {key}: {message}")]
    Config {
        /// The file the text came from (as given by the caller).
        file: PathBuf,
        /// 1-based line, 0 when unknown.
        line: usize,
        /// 1-based column, 0 when unknown.
        col: usize,
        /// Dotted key path, e.g. `limits.max_manifest_bytes`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Reading the htpasswd file or preparing storage failed at start-up.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The htpasswd file has a line that is not `user:$2y$...`.
    #[error("{path}:{line}: {message}")]
    Htpasswd {
        /// The htpasswd file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A storage operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The HTTP server stopped with an error.
    #[error("serving HTTP: {0}")]
    Serve(io::Error),
}

/// A failure of the filesystem store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation (`write`, `rename`, `fsync`...).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A metadata file could not be parsed.
    #[error("corrupt metadata {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        reason: String,
    },
    /// A blocking task panicked or was cancelled.
    #[error("blocking task failed: {0}")]
    Join(String),
}

impl StoreError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { op, path, source }
    }
}

/// The error codes of the OCI distribution spec (plus `RANGE_INVALID`, which
/// distribution uses for 416).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OciCode {
    /// Blob unknown to registry.
    BlobUnknown,
    /// Blob upload invalid.
    BlobUploadInvalid,
    /// Blob upload unknown to registry.
    BlobUploadUnknown,
    /// Provided digest did not match uploaded content.
    DigestInvalid,
    /// Manifest references a manifest or blob unknown to registry.
    ManifestBlobUnknown,
    /// Manifest invalid.
    ManifestInvalid,
    /// Manifest unknown to registry.
    ManifestUnknown,
    /// Invalid repository name.
    NameInvalid,
    /// Repository name not known to registry.
    NameUnknown,
    /// Provided length did not match content length, or too large.
    SizeInvalid,
    /// Authentication required.
    Unauthorized,
    /// Requested access to the resource is denied.
    Denied,
    /// The operation is unsupported.
    Unsupported,
    /// Too many requests.
    TooManyRequests,
    /// Requested range not satisfiable.
    RangeInvalid,
}

impl OciCode {
    /// The code as written in error bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            OciCode::BlobUnknown => "BLOB_UNKNOWN",
            OciCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            OciCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            OciCode::DigestInvalid => "DIGEST_INVALID",
            OciCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            OciCode::ManifestInvalid => "MANIFEST_INVALID",
            OciCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            OciCode::NameInvalid => "NAME_INVALID",
            OciCode::NameUnknown => "NAME_UNKNOWN",
            OciCode::SizeInvalid => "SIZE_INVALID",
            OciCode::Unauthorized => "UNAUTHORIZED",
            OciCode::Denied => "DENIED",
            OciCode::Unsupported => "UNSUPPORTED",
            OciCode::TooManyRequests => "TOOMANYREQUESTS",
            OciCode::RangeInvalid => "RANGE_INVALID",
        }
    }

    fn default_status(self) -> StatusCode {
        match self {
            OciCode::BlobUnknown
            | OciCode::BlobUploadUnknown
            | OciCode::ManifestUnknown
            | OciCode::NameUnknown => StatusCode::NOT_FOUND,
            OciCode::Unauthorized => StatusCode::UNAUTHORIZED,
            OciCode::Denied => StatusCode::FORBIDDEN,
            OciCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            OciCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            OciCode::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn message(self) -> &'static str {
        match self {
            OciCode::BlobUnknown => "blob unknown to registry",
            OciCode::BlobUploadInvalid => "blob upload invalid",
            OciCode::BlobUploadUnknown => "blob upload unknown to registry",
            OciCode::DigestInvalid => "provided digest did not match uploaded content",
            OciCode::ManifestBlobUnknown => {
                "manifest references a manifest or blob unknown to registry"
            }
            OciCode::ManifestInvalid => "manifest invalid",
            OciCode::ManifestUnknown => "manifest unknown to registry",
            OciCode::NameInvalid => "invalid repository name",
            OciCode::NameUnknown => "repository name not known to registry",
            OciCode::SizeInvalid => "provided length did not match content length",
            OciCode::Unauthorized => "authentication required",
            OciCode::Denied => "requested access to the resource is denied",
            OciCode::Unsupported => "the operation is unsupported",
            OciCode::TooManyRequests => "too many requests",
            OciCode::RangeInvalid => "requested range not satisfiable",
        }
    }
}

/// An error answer: status, spec code, a message (the code's own unless replaced), a
/// detail for the client, and extra headers (`WWW-Authenticate`, `Range`).
#[derive(Debug)]
pub struct OciError {
    pub(crate) status: StatusCode,
    pub(crate) code: OciCode,
    pub(crate) message: Option<&'static str>,
    pub(crate) detail: Option<String>,
    pub(crate) headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl OciError {
    pub(crate) fn new(code: OciCode) -> OciError {
        OciError {
            status: code.default_status(),
            code,
            message: None,
            detail: None,
            headers: Vec::new(),
        }
    }

    /// Replaces the code's generic message (where distribution words it differently).
    pub(crate) fn message(mut self, message: &'static str) -> OciError {
        self.message = Some(message);
        self
    }

    pub(crate) fn detail(mut self, detail: impl Into<String>) -> OciError {
        self.detail = Some(detail.into());
        self
    }

    pub(crate) fn status(mut self, status: StatusCode) -> OciError {
        self.status = status;
        self
    }

    pub(crate) fn header(mut self, name: header::HeaderName, value: &str) -> OciError {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    /// A failure that is ours, not the client's: logged in full, answered as a bare 500.
    pub(crate) fn internal(err: impl std::fmt::Display) -> OciError {
        tracing::error!(%err, "internal error");
        OciError::new(OciCode::Unsupported)
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .detail("internal error; see the registry's log")
    }

    /// The spec code (tests and metrics).
    pub fn code(&self) -> OciCode {
        self.code
    }
}

impl From<StoreError> for OciError {
    fn from(err: StoreError) -> OciError {
        OciError::internal(err)
    }
}

impl From<DigestError> for OciError {
    fn from(err: DigestError) -> OciError {
        match err {
            DigestError::Invalid(_) => {
                OciError::new(OciCode::DigestInvalid).detail(err.to_string())
            }
            DigestError::Unsupported(_) => OciError::new(OciCode::Unsupported)
                .status(StatusCode::BAD_REQUEST)
                .detail(err.to_string()),
        }
    }
}

impl IntoResponse for OciError {
    fn into_response(self) -> Response {
        let mut entry = serde_json::json!({
            "code": self.code.as_str(),
            "message": self.message.unwrap_or(self.code.message()),
        });
        if let Some(detail) = self.detail {
            entry["detail"] = serde_json::Value::String(detail);
        }
        let body = serde_json::json!({ "errors": [entry] }).to_string();
        let mut resp = (self.status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers {
            h.append(name, value);
        }
        resp
    }
}
