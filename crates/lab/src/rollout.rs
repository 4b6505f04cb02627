//! `geoha deploy`: a gated rollout of a new version through the running lab.
//!
//! Region by region in topology order (the first region is the canary), zone by zone,
//! one replica at a time: drain it through the front door's admin API (no new requests;
//! in-flight ones finish), replace it (the supervisor stops it gracefully and starts the
//! new launch), wait until it answers `/readyz` and the front door has probed it healthy,
//! enable it, then watch its error rate through the front door for a bake period. A
//! replica that is not ready in time, dies, or fails more than the limit stops the
//! rollout: every replica of the current region already on the new version goes back to
//! its previous launch the same way, and regions not reached are never touched.
//!
//! Every step is recorded with its time; `GET /v1/deploy` returns the record.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::edge::OriginView;
use crate::supervisor::{Launch, ProcessState};
use crate::LabInner;

/// What to deploy (the body of `POST /v1/deploy`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// The version label the new replicas report.
    pub version: String,
    /// Process mode: the executable the new replicas run [default: the current one].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<PathBuf>,
    /// Container mode: the image the new replicas run [default: the current one].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// How long a new replica may take to answer `/readyz` (ms).
    #[serde(default = "default_ready_ms")]
    pub ready_timeout_ms: u64,
    /// How long a new replica's live traffic is watched before the next step (ms).
    #[serde(default = "default_bake_ms")]
    pub bake_ms: u64,
    /// Largest share of failed tries (connect errors, timeouts, 5xx) during the bake.
    #[serde(default = "default_max_error_rate")]
    pub max_error_rate: f64,
    /// Largest p99 time to response headers of a new replica's answered tries during
    /// the bake (ms; judged at the front door's histogram bucket bounds).
    #[serde(default = "default_max_p99_ms")]
    pub max_p99_ms: u64,
}

fn default_ready_ms() -> u64 {
    15_000
}
fn default_bake_ms() -> u64 {
    2_000
}
fn default_max_error_rate() -> f64 {
    0.01
}
fn default_max_p99_ms() -> u64 {
    1_000
}

impl DeployRequest {
    /// Checks values a person typed.
    pub fn validate(&self) -> Result<(), String> {
        if self.version.is_empty()
            || !self
                .version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(format!(
                "version {:?}: letters, digits, '.', '-' or '_'",
                self.version
            ));
        }
        if let Some(b) = &self.binary {
            if !b.is_file() {
                return Err(format!("binary {}: no such file", b.display()));
            }
        }
        if !(0.0..=1.0).contains(&self.max_error_rate) {
            return Err(format!(
                "max_error_rate {} is not within 0..1",
                self.max_error_rate
            ));
        }
        if self.ready_timeout_ms == 0 || self.ready_timeout_ms > 600_000 {
            return Err("ready_timeout_ms must be 1..=600000".into());
        }
        if self.bake_ms > 600_000 {
            return Err("bake_ms must be at most 600000".into());
        }
        if self.max_p99_ms == 0 || self.max_p99_ms > 600_000 {
            return Err("max_p99_ms must be 1..=600000".into());
        }
        Ok(())
    }
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutState {
    /// Steps are being carried out.
    Running,
    /// Every replica runs the new version.
    Succeeded,
    /// A step failed; the region it was in went back to the previous version.
    RolledBack,
    /// A step failed and the rollback did not complete either.
    Failed,
}

/// One recorded step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutStep {
    /// Seconds since the rollout started.
    pub at_s: f64,
    /// Replica (empty for rollout-wide steps).
    pub replica: String,
    /// What happened, e.g. `drain`, `replace`, `ready`, `enable`, `bake ok`.
    pub action: String,
    /// Details (failure reasons, measured rates).
    pub detail: String,
}

/// The record of the current (or last) rollout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutRecord {
    /// The version being deployed.
    pub version: String,
    /// State.
    pub state: RolloutState,
    /// Why it stopped, when it did not succeed.
    pub reason: Option<String>,
    /// Every step so far.
    pub steps: Vec<RolloutStep>,
    /// Total duration once finished (s).
    pub duration_s: Option<f64>,
}

/// Shared between the control API and the rollout task.
#[derive(Debug, Clone)]
pub(crate) struct RolloutLog {
    started: Instant,
    record: Arc<Mutex<RolloutRecord>>,
}

impl RolloutLog {
    fn new(version: &str) -> Self {
        RolloutLog {
            started: Instant::now(),
            record: Arc::new(Mutex::new(RolloutRecord {
                version: version.to_string(),
                state: RolloutState::Running,
                reason: None,
                steps: Vec::new(),
                duration_s: None,
            })),
        }
    }

    fn step(&self, replica: &str, action: &str, detail: impl Into<String>) {
        let detail = detail.into();
        tracing::info!(replica, action, %detail, "rollout step");
        if let Ok(mut r) = self.record.lock() {
            r.steps.push(RolloutStep {
                at_s: self.started.elapsed().as_secs_f64(),
                replica: replica.to_string(),
                action: action.to_string(),
                detail,
            });
        }
    }

    fn finish(&self, state: RolloutState, reason: Option<String>) {
        if let Ok(mut r) = self.record.lock() {
            r.state = state;
            r.reason = reason;
            r.duration_s = Some(self.started.elapsed().as_secs_f64());
        }
    }

    pub(crate) fn snapshot(&self) -> Option<RolloutRecord> {
        self.record.lock().ok().map(|r| r.clone())
    }

    pub(crate) fn is_running(&self) -> bool {
        self.snapshot()
            .is_some_and(|r| r.state == RolloutState::Running)
    }
}

/// Starts a rollout in the background; refuses while another one runs.
pub(crate) fn start(lab: &Arc<LabInner>, req: DeployRequest) -> Result<(), String> {
    req.validate()?;
    let log = RolloutLog::new(&req.version);
    {
        let mut current = lab
            .rollout
            .lock()
            .map_err(|_| "rollout state poisoned".to_string())?;
        if current.as_ref().is_some_and(RolloutLog::is_running) {
            return Err("a rollout is already running".into());
        }
        *current = Some(log.clone());
    }
    let lab = Arc::clone(lab);
    tokio::spawn(async move { run(lab, req, log).await });
    Ok(())
}

async fn run(lab: Arc<LabInner>, mut req: DeployRequest, log: RolloutLog) {
    log.step("", "start", format!("version {}", req.version));
    let previous: Vec<Launch> = lab.slots.iter().map(|s| s.current_launch()).collect();
    // Container mode with registries: build once, push once, every region pulls by digest
    // from its own replica (the digest is served everywhere before the first step).
    let mut pinned: Option<String> = None;
    let containers = previous.iter().any(|l| l.container.is_some());
    if let (Some(image), Some(regs), true) = (&req.image, &lab.registries, containers) {
        match regs
            .push_once(image, &lab.plan.image_name, &req.version)
            .await
        {
            Ok(digest) => {
                log.step(
                    "",
                    "push",
                    format!("{image} as {digest}, served by every replica"),
                );
                pinned = Some(digest);
            }
            Err(err) => {
                log.finish(RolloutState::Failed, Some(format!("push: {err}")));
                return;
            }
        }
        req.image = None;
    }
    for region in &lab.plan.regions {
        let indices: Vec<usize> = lab
            .plan
            .replicas
            .iter()
            .enumerate()
            .filter(|(_, r)| r.region == region.name)
            .map(|(i, _)| i)
            .collect();
        log.step(
            "",
            "region",
            format!("{} ({} replicas)", region.name, indices.len()),
        );
        // The registry this region pulls from: its own while it serves the digest.
        let source = match (&pinned, &lab.registries) {
            (Some(digest), Some(regs)) => regs
                .source_for(&region.name, &lab.plan.image_name, digest)
                .await
                .map(|reg| (reg.addr, reg.region.clone())),
            _ => None,
        };
        match (&pinned, &source) {
            (Some(digest), Some((addr, from))) => {
                log.step(
                    "",
                    "pull",
                    format!("{digest} from the registry of {from} ({addr})"),
                );
            }
            (Some(digest), None) => {
                // Regions done so far keep the new version: the next deploy finishes it.
                log.finish(
                    RolloutState::Failed,
                    Some(format!(
                        "{}: no registry replica serves {digest}",
                        region.name
                    )),
                );
                return;
            }
            _ => {}
        }
        let mut done: Vec<usize> = Vec::new();
        for &i in &indices {
            let mut next = new_launch(&previous[i], &req);
            if let (Some(digest), Some((addr, _)), Some(c)) =
                (&pinned, &source, next.container.as_mut())
            {
                c.image = format!("{addr}/{}@{digest}", lab.plan.image_name);
            }
            done.push(i);
            if let Err(reason) = replace_one(&lab, i, next, &req, &log, true).await {
                log.step(&lab.plan.replicas[i].name, "failed", reason.clone());
                let rolled_back = rollback(&lab, &done, &previous, &req, &log).await;
                let reason = format!("{}: {reason}", lab.plan.replicas[i].name);
                log.finish(
                    if rolled_back {
                        RolloutState::RolledBack
                    } else {
                        RolloutState::Failed
                    },
                    Some(reason),
                );
                return;
            }
        }
        log.step("", "region done", region.name.clone());
    }
    log.finish(RolloutState::Succeeded, None);
}

async fn rollback(
    lab: &Arc<LabInner>,
    done: &[usize],
    previous: &[Launch],
    req: &DeployRequest,
    log: &RolloutLog,
) -> bool {
    log.step("", "rollback", format!("{} replicas", done.len()));
    let mut ok = true;
    for &i in done.iter().rev() {
        if let Err(reason) = replace_one(lab, i, previous[i].clone(), req, log, false).await {
            log.step(&lab.plan.replicas[i].name, "rollback failed", reason);
            ok = false;
        }
    }
    ok
}

fn new_launch(current: &Launch, req: &DeployRequest) -> Launch {
    let mut next = current.clone();
    next.replica.version = req.version.clone();
    if let Some(b) = &req.binary {
        next.exe = b.clone();
    }
    if let (Some(image), Some(c)) = (&req.image, next.container.as_mut()) {
        c.image = image.clone();
    }
    next
}

/// Origin view by name from the front door; `None` when it does not answer.
/// Requests a new replica answers directly before it takes traffic.
const DIRECT_TRIES: usize = 10;

/// The 90th percentile of [`DIRECT_TRIES`] sequential `GET /default/` sent to `addr`,
/// and whether it is a cut-off: a request that takes longer than twice `limit` (at least
/// 200 ms) is abandoned and counts as that long.
async fn direct_answer_time(
    addr: std::net::SocketAddr,
    limit: Duration,
) -> Result<(Duration, bool), String> {
    let bound = (limit * 2).max(Duration::from_millis(200));
    let mut times = Vec::with_capacity(DIRECT_TRIES);
    for _ in 0..DIRECT_TRIES {
        let started = Instant::now();
        match crate::admin_client::call(addr, http::Method::GET, "/default/", None, None, bound)
            .await
        {
            Ok(_) => times.push(started.elapsed()),
            Err(crate::admin_client::AdminCallError::Timeout { .. }) => times.push(bound),
            Err(e) => return Err(format!("GET /default/ sent to it directly: {e}")),
        }
    }
    times.sort();
    let p90 = times[DIRECT_TRIES * 9 / 10 - 1];
    Ok((p90, p90 >= bound))
}

/// The failed tries a bake judges: every kind but `hedge_lost`. A lost hedge means
/// another origin answered first (a latency signal, and a cold new replica loses a few
/// on a busy machine); counting it rolled back good versions. Timeouts still count.
fn judged_failures(o: &OriginView) -> u64 {
    o.failures_total.saturating_sub(hedges_lost(o))
}

fn hedges_lost(o: &OriginView) -> u64 {
    o.failures_by_kind.get("hedge_lost").copied().unwrap_or(0)
}

async fn origin(lab: &LabInner, name: &str) -> Option<OriginView> {
    lab.edge.origins().await?.remove(name)
}

async fn admin_post(lab: &LabInner, name: &str, action: &str) -> Result<(), String> {
    let (status, body) = crate::admin_client::call(
        lab.edge.admin_addr(),
        http::Method::POST,
        &format!("/admin/origins/{name}/{action}"),
        Some(lab.edge.token()),
        None,
        Duration::from_secs(2),
    )
    .await
    .map_err(|e| format!("front door admin API: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "front door refused {action}: {status} {}",
            String::from_utf8_lossy(&body)
        ));
    }
    Ok(())
}

/// Drain → replace → ready → probed healthy → enable → bake. With `judge` false (a
/// rollback) the bake is only recorded.
async fn replace_one(
    lab: &Arc<LabInner>,
    i: usize,
    launch: Launch,
    req: &DeployRequest,
    log: &RolloutLog,
    judge: bool,
) -> Result<(), String> {
    let r = &lab.plan.replicas[i];
    let slot = &lab.slots[i];
    let name = r.name.as_str();
    let version = launch.replica.version.clone();

    admin_post(lab, name, "drain").await?;
    log.step(name, "drain", "no new requests");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match origin(lab, name).await {
            Some(o) if o.in_flight <= 0 => break,
            _ if Instant::now() > deadline => {
                log.step(name, "drain", "in-flight requests did not finish in 10 s");
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }

    slot.replace(launch).await?;
    log.step(name, "replace", format!("started version {version}"));

    // Ready: the replica itself says so on its own address.
    let ready_by = Instant::now() + Duration::from_millis(req.ready_timeout_ms);
    loop {
        let ready = crate::admin_client::call(
            r.addr,
            http::Method::GET,
            "/readyz",
            None,
            None,
            Duration::from_millis(500),
        )
        .await
        .is_ok_and(|(s, _)| s.is_success());
        if ready {
            break;
        }
        if Instant::now() > ready_by {
            return Err(format!(
                "not ready within {} ms (last exit: {})",
                req.ready_timeout_ms,
                slot.supervisor
                    .status()
                    .last_exit
                    .unwrap_or_else(|| "still running".into())
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    log.step(name, "ready", "/readyz answered 200");

    // Before any user request: the new version's own answer time, measured directly
    // (the front door would hide a slow replica behind hedges, and eject it after a few
    // tries, leaving the bake too little to judge). Status codes are judged by the bake.
    let limit = Duration::from_millis(req.max_p99_ms);
    let (p90, cut) = direct_answer_time(r.addr, limit).await?;
    let timed = format!(
        "{DIRECT_TRIES} GET /default/ sent to it directly: p90 {}{:.1} ms",
        if cut { "over " } else { "" },
        p90.as_secs_f64() * 1000.0
    );
    if judge && p90 > limit {
        return Err(format!(
            "answers slower than the limit of {} ms: {timed}",
            req.max_p99_ms
        ));
    }
    log.step(name, "timed", timed);

    // The front door must have probed the new process: one interval after ready, its
    // latest probe is fresh.
    tokio::time::sleep(lab.plan.probe.interval + Duration::from_millis(100)).await;
    let probed_by = Instant::now() + lab.plan.probe.interval * 3 + Duration::from_secs(1);
    loop {
        if origin(lab, name)
            .await
            .is_some_and(|o| o.healthy && o.probe_window.last() == Some(&true))
        {
            break;
        }
        if Instant::now() > probed_by {
            return Err("the front door does not see it healthy".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = origin(lab, name).await.unwrap_or_default();
    let restarts_before = slot.supervisor.status().restarts;
    admin_post(lab, name, "enable").await?;
    log.step(name, "enable", "back in the front door's rotation");

    tokio::time::sleep(Duration::from_millis(req.bake_ms)).await;
    let after = origin(lab, name).await.unwrap_or_default();
    let tries = after.requests_total.saturating_sub(before.requests_total);
    let failed = judged_failures(&after).saturating_sub(judged_failures(&before));
    let rate = if tries == 0 {
        0.0
    } else {
        failed as f64 / tries as f64
    };
    let lost = hedges_lost(&after).saturating_sub(hedges_lost(&before));
    let p99 = after.latency.quantile_since(&before.latency, 0.99);
    let st = slot.supervisor.status();
    let mut detail = format!("{failed} of {tries} tries failed ({:.2}%)", rate * 100.0);
    match p99 {
        Some(p) if p.is_finite() => detail.push_str(&format!(", p99 <= {:.0} ms", p * 1000.0)),
        Some(_) => detail.push_str(", p99 over 30 s"),
        None => {}
    }
    if lost > 0 {
        detail.push_str(&format!(", {lost} lost to a hedge"));
    }
    if judge {
        if st.restarts > restarts_before || st.state != ProcessState::Running {
            return Err(format!("it died during the bake ({detail})"));
        }
        if rate > req.max_error_rate {
            return Err(format!(
                "error rate over the limit of {:.2}%: {detail}",
                req.max_error_rate * 100.0
            ));
        }
        if p99.is_some_and(|p| p * 1000.0 > req.max_p99_ms as f64) {
            return Err(format!(
                "p99 over the limit of {} ms: {detail}",
                req.max_p99_ms
            ));
        }
    }
    log.step(name, "bake ok", detail);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bake_does_not_count_lost_hedges_as_errors() {
        let mut o = OriginView {
            failures_total: 7,
            ..OriginView::default()
        };
        o.failures_by_kind.insert("hedge_lost".into(), 5);
        o.failures_by_kind.insert("status_5xx".into(), 2);
        assert_eq!(judged_failures(&o), 2);
        // An older front door without the breakdown: every failure counts.
        o.failures_by_kind.clear();
        assert_eq!(judged_failures(&o), 7);
    }

    fn req() -> DeployRequest {
        serde_json::from_str(r#"{"version":"2.0.0"}"#).unwrap()
    }

    #[test]
    fn defaults_and_validation() {
        let r = req();
        assert_eq!(r.bake_ms, 2_000);
        assert!(r.validate().is_ok());
        let mut bad = req();
        bad.version = "2 0".into();
        assert!(bad.validate().unwrap_err().contains("version"));
        let mut bad = req();
        bad.max_error_rate = 2.0;
        assert!(bad.validate().is_err());
        let mut bad = req();
        bad.binary = Some("/nonexistent/geoha".into());
        assert!(bad.validate().unwrap_err().contains("no such file"));
        assert!(serde_json::from_str::<DeployRequest>(r#"{"version":"1","x":1}"#).is_err());
    }
}
