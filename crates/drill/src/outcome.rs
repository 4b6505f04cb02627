//! What one request came to: who answered it, or which kind of failure it met.

use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};

/// The kinds of failure the report counts separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FailureKind {
    /// The TCP connection was refused (nothing listening).
    #[serde(rename = "connect_refused")]
    ConnectRefused,
    /// The connection was reset or closed before a full response arrived.
    #[serde(rename = "reset")]
    Reset,
    /// No full response within the request timeout (connect included).
    #[serde(rename = "timeout")]
    Timeout,
    /// The server answered with a 5xx status.
    #[serde(rename = "http_5xx")]
    Http5xx,
    /// Anything else: a 4xx answer, a malformed response, another I/O error.
    #[serde(rename = "other")]
    Other,
}

impl FailureKind {
    /// Every kind, in report order.
    pub const ALL: [FailureKind; 5] = [
        FailureKind::ConnectRefused,
        FailureKind::Reset,
        FailureKind::Timeout,
        FailureKind::Http5xx,
        FailureKind::Other,
    ];

    /// The name used in the JSON report.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::ConnectRefused => "connect_refused",
            FailureKind::Reset => "reset",
            FailureKind::Timeout => "timeout",
            FailureKind::Http5xx => "http_5xx",
            FailureKind::Other => "other",
        }
    }

    /// Classifies an I/O error met while connecting, sending or reading.
    pub(crate) fn of_io(err: &io::Error) -> FailureKind {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => FailureKind::ConnectRefused,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof => FailureKind::Reset,
            io::ErrorKind::TimedOut => FailureKind::Timeout,
            _ => FailureKind::Other,
        }
    }

    /// Classifies a hyper error: an I/O cause decides; a connection that closed
    /// before the whole message arrived is a reset (that is what a killed peer looks
    /// like from here).
    pub(crate) fn of_hyper(err: &hyper::Error) -> FailureKind {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = source {
            if let Some(io) = e.downcast_ref::<io::Error>() {
                return FailureKind::of_io(io);
            }
            source = e.source();
        }
        if err.is_incomplete_message() || err.is_canceled() || err.is_closed() {
            FailureKind::Reset
        } else if err.is_timeout() {
            FailureKind::Timeout
        } else {
            FailureKind::Other
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Failure counts by kind (the JSON report's `failed_by_kind`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedByKind {
    /// See [`FailureKind::ConnectRefused`].
    pub connect_refused: u64,
    /// See [`FailureKind::Reset`].
    pub reset: u64,
    /// See [`FailureKind::Timeout`].
    pub timeout: u64,
    /// See [`FailureKind::Http5xx`].
    pub http_5xx: u64,
    /// See [`FailureKind::Other`].
    pub other: u64,
}

impl FailedByKind {
    /// Counts one failure.
    pub fn add(&mut self, kind: FailureKind) {
        *self.slot(kind) += 1;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &FailedByKind) {
        for kind in FailureKind::ALL {
            *self.slot(kind) += other.get(kind);
        }
    }

    /// The count of one kind.
    pub fn get(&self, kind: FailureKind) -> u64 {
        match kind {
            FailureKind::ConnectRefused => self.connect_refused,
            FailureKind::Reset => self.reset,
            FailureKind::Timeout => self.timeout,
            FailureKind::Http5xx => self.http_5xx,
            FailureKind::Other => self.other,
        }
    }

    /// All failures.
    pub fn total(&self) -> u64 {
        FailureKind::ALL.iter().map(|k| self.get(*k)).sum()
    }

    fn slot(&mut self, kind: FailureKind) -> &mut u64 {
        match kind {
            FailureKind::ConnectRefused => &mut self.connect_refused,
            FailureKind::Reset => &mut self.reset,
            FailureKind::Timeout => &mut self.timeout,
            FailureKind::Http5xx => &mut self.http_5xx,
            FailureKind::Other => &mut self.other,
        }
    }
}

/// Who answered a request, from the `x-geoha-*` headers or the JSON body.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Answerer {
    /// Region label, e.g. `eastus2` (empty when the answer did not say).
    pub region: String,
    /// Zone label, e.g. `1` (may be empty).
    pub zone: String,
    /// Replica name, e.g. `eastus2-z1-r0` (may be empty).
    pub replica: String,
}

impl Answerer {
    /// Reads the identity headers the API service sets; `None` when there are none.
    pub(crate) fn from_headers(headers: &http::HeaderMap) -> Option<Answerer> {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let who = Answerer {
            region: get("x-geoha-region"),
            zone: get("x-geoha-zone"),
            replica: get("x-geoha-replica"),
        };
        (!who.is_unknown()).then_some(who)
    }

    /// Reads `region`, `zone` and `replica` from a JSON body; `hostname` stands in for
    /// the replica when the service is the reference one (`{"hostname","ip"}`).
    pub(crate) fn from_json_body(body: &[u8]) -> Option<Answerer> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let field = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_string);
        let who = Answerer {
            region: field("region").unwrap_or_default(),
            zone: field("zone").unwrap_or_default(),
            replica: field("replica")
                .or_else(|| field("hostname"))
                .unwrap_or_default(),
        };
        (!who.is_unknown()).then_some(who)
    }

    fn is_unknown(&self) -> bool {
        self.region.is_empty() && self.zone.is_empty() && self.replica.is_empty()
    }
}

/// The result of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A 1xx-3xx answer, with who gave it when the answer said.
    Ok(Option<Answerer>),
    /// A failure of one kind.
    Failed(FailureKind),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_kinds() {
        let k = |kind| FailureKind::of_io(&io::Error::from(kind));
        assert_eq!(
            k(io::ErrorKind::ConnectionRefused),
            FailureKind::ConnectRefused
        );
        assert_eq!(k(io::ErrorKind::ConnectionReset), FailureKind::Reset);
        assert_eq!(k(io::ErrorKind::BrokenPipe), FailureKind::Reset);
        assert_eq!(k(io::ErrorKind::TimedOut), FailureKind::Timeout);
        assert_eq!(k(io::ErrorKind::PermissionDenied), FailureKind::Other);
    }

    #[test]
    fn kinds_serialize_with_report_names() {
        for kind in FailureKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        let mut by = FailedByKind::default();
        by.add(FailureKind::Http5xx);
        by.add(FailureKind::Http5xx);
        by.add(FailureKind::Reset);
        assert_eq!(by.total(), 3);
        let v = serde_json::to_value(by).unwrap();
        assert_eq!(v["http_5xx"], 2);
        assert_eq!(v["reset"], 1);
    }

    #[test]
    fn identity_from_headers_then_body() {
        let mut h = http::HeaderMap::new();
        assert_eq!(Answerer::from_headers(&h), None);
        h.insert("x-geoha-region", "eastus2".parse().unwrap());
        h.insert("x-geoha-replica", "eastus2-z1-r0".parse().unwrap());
        let who = Answerer::from_headers(&h).unwrap();
        assert_eq!(who.region, "eastus2");
        assert_eq!(who.replica, "eastus2-z1-r0");
        assert_eq!(who.zone, "");

        let body =
            br#"{"hostname":"h","region":"centralus","zone":"2","replica":"centralus-z2-r1"}"#;
        let who = Answerer::from_json_body(body).unwrap();
        assert_eq!(
            (who.region.as_str(), who.zone.as_str(), who.replica.as_str()),
            ("centralus", "2", "centralus-z2-r1")
        );
        // The reference service only says its hostname.
        let who = Answerer::from_json_body(br#"{"hostname":"pod-7","ip":"1.2.3.4"}"#).unwrap();
        assert_eq!(who.replica, "pod-7");
        assert_eq!(Answerer::from_json_body(b"not json"), None);
        assert_eq!(Answerer::from_json_body(br#"{"x":1}"#), None);
    }
}
