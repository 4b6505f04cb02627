//! Runs a scenario's steps on schedule while the load runs, and remembers what each
//! one did and when (the raw material of the report's `events[]`).

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::control::LabEndpoint;
use crate::scenario::{FaultTarget, Step, StepAction};

/// How much of a failed command's stderr an event keeps.
const STDERR_TAIL_BYTES: usize = 400;

/// One step as it happened.
#[derive(Debug, Clone)]
pub(crate) struct EventRecord {
    /// When the scenario wanted it, from the start of the load.
    pub(crate) planned_at: Duration,
    /// When it was actually issued.
    pub(crate) at: Duration,
    /// `kill region:eastus2 stay-down`, `sh -c "..."`.
    pub(crate) label: String,
    /// `fault` or `shell`.
    pub(crate) kind: &'static str,
    /// Whose answers should stop (or come back) after it.
    pub(crate) watch: Option<FaultTarget>,
    /// True for thaw/heal: the watched target should come back.
    pub(crate) restores: bool,
    /// Why it failed, if it did.
    pub(crate) error: Option<String>,
    /// How long the action took.
    pub(crate) took: Duration,
}

/// Carries out one action; `target_url` is passed to shell steps as
/// `GEOHA_DRILL_TARGET`.
pub(crate) async fn perform(
    action: &StepAction,
    control: Option<&LabEndpoint>,
    target_url: &str,
) -> Result<(), String> {
    match action {
        StepAction::Fault(fault) => match control {
            Some(control) => control.apply(fault).await.map(|_| ()),
            None => Err("no lab control API to send the fault to".into()),
        },
        StepAction::Shell { command, timeout } => run_shell(command, *timeout, target_url).await,
    }
}

async fn run_shell(command: &str, timeout: Duration, target_url: &str) -> Result<(), String> {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("GEOHA_DRILL_TARGET", target_url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // A command that outlives its timeout is killed when its future is dropped.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start sh: {e}"))?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => Err(format!(
            "timed out after {}",
            humantime::format_duration(timeout)
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stderr = stderr.trim();
            let cut = stderr.len().saturating_sub(STDERR_TAIL_BYTES);
            let tail = stderr.get(cut..).unwrap_or(stderr);
            Err(format!("{}: {tail}", out.status))
        }
    }
}

/// Issues each step at `start + step.at` and appends its record to `log`. Steps run one
/// after another: a step that overruns delays the next (and its record says so).
pub(crate) async fn run_steps(
    steps: Vec<Step>,
    control: Option<LabEndpoint>,
    target_url: String,
    start: Instant,
    log: Arc<Mutex<Vec<EventRecord>>>,
) {
    for step in steps {
        tokio::time::sleep_until(start + step.at).await;
        let issued = Instant::now();
        let result = perform(&step.action, control.as_ref(), &target_url).await;
        let record = EventRecord {
            planned_at: step.at,
            at: issued - start,
            label: step.action.to_string(),
            kind: match step.action {
                StepAction::Fault(_) => "fault",
                StepAction::Shell { .. } => "shell",
            },
            watch: step.watched().cloned(),
            restores: matches!(&step.action, StepAction::Fault(f) if f.action.restores()),
            error: result.err(),
            took: issued.elapsed(),
        };
        if let Some(e) = &record.error {
            tracing::warn!(step = %record.label, error = %e, "drill step failed");
        } else {
            tracing::info!(step = %record.label, at = ?record.at, "drill step done");
        }
        if let Ok(mut log) = log.lock() {
            log.push(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shell_steps_report_exit_status_and_timeouts() {
        let sh = |c: &str, t: u64| StepAction::Shell {
            command: c.into(),
            timeout: Duration::from_millis(t),
        };
        assert_eq!(perform(&sh("true", 5000), None, "u").await, Ok(()));
        assert_eq!(
            perform(
                &sh("test \"$GEOHA_DRILL_TARGET\" = http://x", 5000),
                None,
                "http://x"
            )
            .await,
            Ok(())
        );
        let e = perform(&sh("echo boom >&2; exit 3", 5000), None, "u")
            .await
            .unwrap_err();
        assert!(e.contains("3") && e.contains("boom"), "{e}");
        let e = perform(&sh("sleep 5", 100), None, "u").await.unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        let fault = StepAction::Fault(crate::scenario::LabFault::new(
            crate::scenario::FaultAction::Kill,
            "region:x".parse().unwrap(),
        ));
        assert!(perform(&fault, None, "u").await.is_err());
    }
}
