//! Why a drill could not run. A missed objective is not an error: see
//! [`Verdict`](crate::verdict::Verdict).

/// A drill that cannot run (or a report that cannot be read or written).
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// Bad input from the user: a flag value, a URL, a plan that makes no sense.
    #[error("{0}")]
    BadInput(String),
    /// A scenario file (or name) that does not parse or validate.
    #[error("scenario {origin}: {message}")]
    Scenario {
        /// The file, or the name asked for.
        origin: String,
        /// What is wrong, with the line when known.
        message: String,
    },
    /// The target's host name does not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The host.
        host: String,
        /// Why.
        reason: String,
    },
    /// The scenario has lab faults but no lab control API was given or found.
    #[error("scenario {scenario:?} injects lab faults but no lab was found: start one with `geoha up`, or pass --control URL (and --token)")]
    NoLab {
        /// The scenario's name.
        scenario: String,
    },
    /// The lab's control API could not be used before the run started.
    #[error("lab control API {url}: {reason}")]
    Control {
        /// The control URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A report file could not be read, parsed or written.
    #[error("report {path}: {reason}")]
    Report {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

impl DrillError {
    /// True for mistakes in what the user gave (exit code 64), false for failures
    /// met while running (exit code 1).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, DrillError::BadInput(_) | DrillError::Scenario { .. })
    }
}
