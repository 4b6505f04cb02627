//! Origins and origin groups at run time.
//!
//! - [`OriginRuntime`]: what the front door learned about one origin (probe window,
//!   passive-health state, admin state, statistics, pooled connections). It survives a
//!   reload as long as an origin with the same name and address is still configured.
//! - [`OriginGroup`]: one config generation of a group: settings plus its origins, each
//!   an `OriginConfig` paired with its runtime. In-flight requests keep the generation
//!   they started with; new requests see the new one.
//! - [`Routing`]: a whole generation (route table + groups), swapped atomically.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::{Config, OriginConfig, OriginGroupConfig, PassiveHealthConfig};
use crate::eject::{max_ejected, Ejector, FailureVerdict};
use crate::metrics::{FailureKind, OriginStats};
use crate::pool::ConnectionPool;
use crate::probe::{ProbeSample, ProbeWindow};
use crate::route::RouteTable;
use crate::select::{Candidate, Selector};

/// Idle keep-alive connections kept per origin.
const MAX_IDLE_PER_ORIGIN: usize = 256;

/// Admin state of an origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    /// Gets traffic.
    Enabled,
    /// Gets none (still probed).
    Disabled,
    /// Gets no new requests; in-flight ones finish.
    Draining,
}

#[derive(Debug)]
struct Health {
    window: ProbeWindow,
    probing: bool,
    ejector: Ejector,
    /// Set through the admin API; overrides the config's `enabled` until the next
    /// admin call (reloads keep it).
    admin_override: Option<AdminState>,
    config_enabled: bool,
    /// Slow start: when the origin last became selectable again.
    selectable_since: Option<Instant>,
    was_selectable: bool,
}

impl Health {
    fn admin_state(&self) -> AdminState {
        self.admin_override.unwrap_or(if self.config_enabled {
            AdminState::Enabled
        } else {
            AdminState::Disabled
        })
    }

    fn healthy(&self) -> bool {
        !self.probing || self.window.is_healthy()
    }

    fn selectable(&self) -> bool {
        self.admin_state() == AdminState::Enabled && self.healthy() && !self.ejector.is_ejected()
    }

    /// Notices a return to service (for slow start).
    fn refresh(&mut self, now: Instant) {
        let selectable = self.selectable();
        if selectable && !self.was_selectable {
            self.selectable_since = Some(now);
        }
        self.was_selectable = selectable;
    }
}

/// What the front door knows about one origin; survives reloads.
#[derive(Debug)]
pub struct OriginRuntime {
    /// Origin name.
    pub name: String,
    /// Origin address.
    pub address: SocketAddr,
    /// Keep-alive connections.
    pub(crate) pool: ConnectionPool,
    /// Statistics.
    pub stats: OriginStats,
    /// Wakes the prober (ejection, enable).
    pub(crate) probe_wake: Notify,
    health: Mutex<Health>,
    /// Set (under the `health` lock) when a live failure is counted; a success takes the
    /// lock to reset the count only then, so the common success writes nothing shared.
    failure_counted: AtomicBool,
}

/// A point-in-time view of an origin's state.
#[derive(Debug, Clone)]
pub struct OriginStatus {
    /// Admin state.
    pub admin: AdminState,
    /// Healthy by probes.
    pub healthy: bool,
    /// Ejected by passive health.
    pub ejected: bool,
    /// When the ejection time ends, while ejected.
    pub ejected_until: Option<Instant>,
    /// Probe results, oldest first.
    pub probe_window: Vec<bool>,
    /// Mean latency of successful probes.
    pub probe_latency: Option<Duration>,
    /// Slow-start factor now (1.0 when not ramping).
    pub ramp: f64,
}

impl OriginRuntime {
    fn new(cfg: &OriginConfig, group: &OriginGroupConfig, workers: usize) -> Self {
        OriginRuntime {
            name: cfg.name.clone(),
            address: cfg.address,
            pool: ConnectionPool::new(cfg.address, MAX_IDLE_PER_ORIGIN, workers),
            stats: OriginStats::new(),
            probe_wake: Notify::new(),
            health: Mutex::new(Health {
                window: ProbeWindow::new(
                    group.probe.sample_size,
                    group.probe.successful_samples_required,
                ),
                probing: group.probe.enabled,
                ejector: Ejector::default(),
                admin_override: None,
                config_enabled: cfg.enabled,
                selectable_since: None,
                // Not "recovering" at start: a new front door sends full weight at once.
                was_selectable: true,
            }),
            failure_counted: AtomicBool::new(false),
        }
    }

    fn health(&self) -> MutexGuard<'_, Health> {
        // A panic while holding this lock cannot leave the state half-updated in a way
        // that matters more than losing the origin: keep going with what is there.
        self.health
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn reconfigure(&self, cfg: &OriginConfig, group: &OriginGroupConfig, now: Instant) {
        let mut h = self.health();
        h.window.resize(
            group.probe.sample_size,
            group.probe.successful_samples_required,
        );
        h.probing = group.probe.enabled;
        h.config_enabled = cfg.enabled;
        h.refresh(now);
    }

    /// Records a probe result; logs health flips and re-admissions.
    pub(crate) fn record_probe(&self, sample: ProbeSample, now: Instant) {
        use std::sync::atomic::Ordering::Relaxed;
        if sample.ok {
            self.stats.probes_ok.fetch_add(1, Relaxed);
        } else {
            self.stats.probes_failed.fetch_add(1, Relaxed);
        }
        let mut h = self.health();
        let was_healthy = h.window.is_healthy();
        h.window.record(sample);
        let healthy = h.window.is_healthy();
        let readmitted = h.ejector.on_probe(sample.ok, now);
        h.refresh(now);
        drop(h);
        if was_healthy != healthy {
            tracing::info!(origin = %self.name, healthy, "probe health changed");
        }
        if readmitted {
            tracing::info!(origin = %self.name, "re-admitted after ejection (probe succeeded)");
        }
    }

    /// When the prober should probe for re-admission, while ejected.
    pub(crate) fn ejection_probe_at(&self) -> Option<Instant> {
        self.health().ejector.ejected_until()
    }

    /// Sets the admin state (admin API).
    pub fn set_admin(&self, state: AdminState, now: Instant) {
        let mut h = self.health();
        h.admin_override = Some(state);
        if state == AdminState::Enabled {
            // An operator's enable also ends a passive ejection.
            h.ejector.clear(now);
        }
        h.refresh(now);
        drop(h);
        if state != AdminState::Enabled {
            self.pool.clear();
        }
    }

    /// The current state.
    pub fn status(&self, now: Instant, slow_start: Duration) -> OriginStatus {
        let mut h = self.health();
        h.refresh(now);
        OriginStatus {
            admin: h.admin_state(),
            healthy: h.healthy(),
            ejected: h.ejector.is_ejected(),
            ejected_until: h.ejector.ejected_until(),
            probe_window: h.window.results(),
            probe_latency: h.window.latency(),
            ramp: ramp(h.selectable_since, now, slow_start),
        }
    }
}

/// Slow-start factor: 10% right after a return to service, growing linearly to 100%.
fn ramp(since: Option<Instant>, now: Instant, window: Duration) -> f64 {
    match since {
        Some(since) if !window.is_zero() => {
            let elapsed = now.saturating_duration_since(since).as_secs_f64();
            (elapsed / window.as_secs_f64()).clamp(0.1, 1.0)
        }
        _ => 1.0,
    }
}

/// An origin in one config generation.
#[derive(Debug)]
pub struct GroupOrigin {
    /// Its configuration.
    pub cfg: OriginConfig,
    /// Its runtime state.
    pub rt: Arc<OriginRuntime>,
    /// Value of the affinity cookie that pins a client to it.
    pub affinity_id: String,
}

impl GroupOrigin {
    /// The `Host` header probes send.
    pub fn probe_host(&self) -> String {
        self.cfg
            .host_header
            .clone()
            .unwrap_or_else(|| self.cfg.address.to_string())
    }

    /// 0: unrelated (another region, or no labels); 1: same region, another zone;
    /// 2: same zone (of the same region, when regions are labelled).
    fn closeness(&self, other: &GroupOrigin) -> u8 {
        let same_zone = matches!((&self.cfg.zone, &other.cfg.zone), (Some(a), Some(b)) if a == b);
        match (&self.cfg.region, &other.cfg.region) {
            (Some(a), Some(b)) if a != b => 0,
            (Some(_), Some(_)) if same_zone => 2,
            (Some(_), Some(_)) => 1,
            _ if same_zone => 2,
            _ => 0,
        }
    }
}

/// One generation of an origin group.
#[derive(Debug)]
pub struct OriginGroup {
    /// Its configuration (origins included).
    pub cfg: OriginGroupConfig,
    /// Its origins, in config order.
    pub origins: Vec<GroupOrigin>,
    /// Its selector.
    pub selector: Selector,
    /// Serializes ejection decisions (the max-ejected-share check).
    eject_gate: Mutex<()>,
}

impl OriginGroup {
    /// Selection candidates now; `tried` and `failed` are origin indexes of this request.
    pub fn candidates(&self, now: Instant, tried: &[usize], failed: &[usize]) -> Vec<Candidate> {
        self.origins
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let mut h = o.rt.health();
                h.refresh(now);
                let factor = if h.selectable() {
                    ramp(h.selectable_since, now, self.cfg.slow_start)
                } else {
                    1.0
                };
                Candidate {
                    enabled: h.admin_state() == AdminState::Enabled,
                    healthy: h.healthy(),
                    ejected: h.ejector.is_ejected(),
                    priority: o.cfg.priority.get(),
                    weight: f64::from(o.cfg.weight.get()) * factor,
                    latency: h.window.latency(),
                    tried: tried.contains(&i),
                    near_failure: failed
                        .iter()
                        .map(|&f| {
                            if f == i {
                                2
                            } else {
                                self.origins[f].closeness(o)
                            }
                        })
                        .max()
                        .unwrap_or(0),
                }
            })
            .collect()
    }

    /// A live try succeeded (an answer below 500, or any answer when 5xx do not count).
    pub fn record_success(&self, index: usize) {
        let rt = &self.origins[index].rt;
        // A stale `false` orders this success before a concurrent failure: still correct.
        if rt.failure_counted.load(Ordering::Relaxed) {
            let mut h = rt.health();
            h.ejector.on_success();
            rt.failure_counted.store(false, Ordering::Relaxed);
        }
    }

    /// A live try failed; may eject the origin.
    pub fn record_failure(&self, index: usize, kind: FailureKind, now: Instant) {
        let origin = &self.origins[index];
        origin.rt.stats.fail(kind);
        let passive: &PassiveHealthConfig = &self.cfg.passive;
        if kind == FailureKind::Status5xx && !passive.count_5xx {
            return;
        }
        let _gate = self
            .eject_gate
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // One origin lock at a time: never hold two (no lock-order deadlock).
        let others_ejected = self
            .origins
            .iter()
            .enumerate()
            .filter(|&(i, o)| i != index && o.rt.health().ejector.is_ejected())
            .count();
        let allowed = others_ejected < max_ejected(self.origins.len(), passive.max_ejected_percent);
        let verdict = {
            let mut h = origin.rt.health();
            let immediate = passive.eject_on_timeout && kind.is_timeout();
            let v = h.ejector.on_failure(now, passive, immediate, || allowed);
            origin.rt.failure_counted.store(true, Ordering::Relaxed);
            h.refresh(now);
            v
        };
        match verdict {
            FailureVerdict::Ejected(time) => {
                origin.rt.stats.ejections.fetch_add(1, Ordering::Relaxed);
                origin.rt.pool.clear();
                origin.rt.probe_wake.notify_one();
                tracing::warn!(origin = %origin.cfg.name, kind = kind.label(), ?time,
                    "ejected by passive health");
            }
            FailureVerdict::EjectionRefused => {
                tracing::debug!(origin = %origin.cfg.name, "not ejected: max ejected share reached");
            }
            FailureVerdict::Counted => {}
        }
    }

    /// The per-try timeout for an origin now (`None`: off).
    pub fn try_timeout(&self, index: usize) -> Option<Duration> {
        self.cfg
            .try_timeout
            .for_origin(self.origins[index].rt.stats.recent_latency.p99())
    }

    /// The hedge delay now (`None`: hedging off): from the fastest selectable origin's
    /// recent p99, so one slow origin does not make the group's "normal" slow.
    pub fn hedge_delay(&self) -> Option<Duration> {
        if self.cfg.hedge.is_off() {
            return None;
        }
        let fastest = self
            .origins
            .iter()
            .filter(|o| {
                let h = o.rt.health();
                h.healthy() && !h.ejector.is_ejected()
            })
            .filter_map(|o| o.rt.stats.recent_latency.p99())
            .min();
        self.cfg.hedge.for_origin(fastest)
    }

    /// The origin whose affinity cookie value is `id`.
    pub fn by_affinity(&self, id: &str) -> Option<usize> {
        self.origins.iter().position(|o| o.affinity_id == id)
    }
}

/// One generation of the whole routing state.
#[derive(Debug)]
pub struct Routing {
    /// The config it was built from.
    pub cfg: Arc<Config>,
    /// Routes to group indexes.
    pub routes: RouteTable,
    /// Groups, in config order.
    pub groups: Vec<Arc<OriginGroup>>,
}

impl Routing {
    /// Builds a generation, reusing the runtime of every origin that is still configured
    /// with the same name and address.
    pub fn build(cfg: Arc<Config>, previous: Option<&Routing>) -> Routing {
        let mut old: HashMap<(String, SocketAddr), Arc<OriginRuntime>> = HashMap::new();
        if let Some(prev) = previous {
            for g in &prev.groups {
                for o in &g.origins {
                    old.insert((o.cfg.name.clone(), o.cfg.address), Arc::clone(&o.rt));
                }
            }
        }
        let now = Instant::now();
        let workers = cfg.worker_count();
        let groups: Vec<Arc<OriginGroup>> = cfg
            .origin_groups
            .iter()
            .map(|g| {
                let origins = g
                    .origins
                    .iter()
                    .map(|o| {
                        let rt = match old.remove(&(o.name.clone(), o.address)) {
                            Some(rt) => {
                                rt.reconfigure(o, g, now);
                                rt
                            }
                            None => Arc::new(OriginRuntime::new(o, g, workers)),
                        };
                        GroupOrigin {
                            cfg: o.clone(),
                            rt,
                            affinity_id: affinity_id(&g.name, &o.name),
                        }
                    })
                    .collect();
                Arc::new(OriginGroup {
                    cfg: g.clone(),
                    origins,
                    selector: Selector {
                        additional_latency: Duration::from_millis(u64::from(
                            g.probe.additional_latency_ms,
                        )),
                    },
                    eject_gate: Mutex::new(()),
                })
            })
            .collect();
        // Origins that are gone: close their idle connections now.
        for rt in old.values() {
            rt.pool.clear();
        }
        let names: Vec<&str> = cfg.origin_groups.iter().map(|g| g.name.as_str()).collect();
        let routes = RouteTable::build(&cfg.routes, |n| names.iter().position(|g| *g == n));
        Routing {
            cfg: Arc::clone(&cfg),
            routes,
            groups,
        }
    }

    /// Finds an origin by name in any group.
    pub fn origin(&self, name: &str) -> Option<(&Arc<OriginGroup>, &GroupOrigin)> {
        self.groups.iter().find_map(|g| {
            g.origins
                .iter()
                .find(|o| o.cfg.name == name)
                .map(|o| (g, o))
        })
    }
}

/// A stable, opaque cookie value for an origin (FNV-1a of group and origin name): the
/// cookie does not reveal the origin's address and stays valid across restarts.
fn affinity_id(group: &str, origin: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in group.bytes().chain([0u8]).chain(origin.bytes()) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RouteConfig, Weight};

    fn config(origins: &[(&str, u16)]) -> Arc<Config> {
        let mut g = OriginGroupConfig {
            name: "g".into(),
            slow_start: Duration::from_secs(10),
            ..OriginGroupConfig::default()
        };
        for (i, (name, w)) in origins.iter().enumerate() {
            let mut o =
                OriginConfig::new(*name, SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16)));
            o.weight = Weight::new(*w).unwrap();
            g.origins.push(o);
        }
        Arc::new(Config {
            routes: vec![RouteConfig {
                origin_group: "g".into(),
                ..RouteConfig::default()
            }],
            origin_groups: vec![g],
            ..Config::default()
        })
    }

    fn fail_probe(rt: &OriginRuntime, n: usize) {
        for _ in 0..n {
            rt.record_probe(
                ProbeSample {
                    ok: false,
                    latency: Duration::ZERO,
                },
                Instant::now(),
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reload_keeps_probe_history_of_surviving_origins() {
        let r1 = Routing::build(config(&[("a", 50), ("b", 50)]), None);
        fail_probe(&r1.groups[0].origins[0].rt, 3);
        assert!(
            !r1.groups[0].origins[0]
                .rt
                .status(Instant::now(), Duration::ZERO)
                .healthy
        );
        let r2 = Routing::build(config(&[("a", 10), ("c", 50)]), Some(&r1));
        let a = &r2.groups[0].origins[0];
        assert!(Arc::ptr_eq(&a.rt, &r1.groups[0].origins[0].rt));
        assert_eq!(a.cfg.weight.get(), 10);
        assert_eq!(
            a.rt.status(Instant::now(), Duration::ZERO).probe_window,
            vec![false; 3]
        );
        let c = &r2.groups[0].origins[1];
        assert!(c
            .rt
            .status(Instant::now(), Duration::ZERO)
            .probe_window
            .is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn slow_start_ramps_a_recovered_origin() {
        let r = Routing::build(config(&[("a", 100), ("b", 100)]), None);
        let g = &r.groups[0];
        let c = g.candidates(Instant::now(), &[], &[]);
        assert_eq!(
            (c[0].weight, c[1].weight),
            (100.0, 100.0),
            "no ramp at start"
        );
        fail_probe(&g.origins[0].rt, 3);
        assert!(!g.candidates(Instant::now(), &[], &[])[0].healthy);
        for _ in 0..2 {
            g.origins[0].rt.record_probe(
                ProbeSample {
                    ok: true,
                    latency: Duration::ZERO,
                },
                Instant::now(),
            );
        }
        let c = g.candidates(Instant::now(), &[], &[]);
        assert!(c[0].healthy);
        assert!((c[0].weight - 10.0).abs() < 1e-9, "{}", c[0].weight);
        tokio::time::advance(Duration::from_secs(5)).await;
        let c = g.candidates(Instant::now(), &[], &[]);
        assert!((c[0].weight - 50.0).abs() < 1e-6, "{}", c[0].weight);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(g.candidates(Instant::now(), &[], &[])[0].weight, 100.0);
    }

    #[tokio::test(start_paused = true)]
    async fn max_ejected_share_keeps_one_of_two_in() {
        let r = Routing::build(config(&[("a", 50), ("b", 50)]), None);
        let g = &r.groups[0];
        for i in [0, 1] {
            for _ in 0..3 {
                g.record_failure(i, FailureKind::Connect, Instant::now());
            }
        }
        let c = g.candidates(Instant::now(), &[], &[]);
        assert!(c[0].ejected);
        assert!(!c[1].ejected, "50% of 2 = 1 ejected at most");
    }

    #[tokio::test(start_paused = true)]
    async fn admin_states() {
        let r = Routing::build(config(&[("a", 50)]), None);
        let o = &r.groups[0].origins[0];
        o.rt.set_admin(AdminState::Draining, Instant::now());
        assert!(!r.groups[0].candidates(Instant::now(), &[], &[])[0].enabled);
        assert_eq!(
            o.rt.status(Instant::now(), Duration::ZERO).admin,
            AdminState::Draining
        );
        o.rt.set_admin(AdminState::Enabled, Instant::now());
        assert!(r.groups[0].candidates(Instant::now(), &[], &[])[0].enabled);
    }

    #[test]
    fn failure_domains() {
        let o = |region: Option<&str>, zone: Option<&str>| {
            let mut c = OriginConfig::new("x", SocketAddr::from(([127, 0, 0, 1], 1)));
            c.region = region.map(Into::into);
            c.zone = zone.map(Into::into);
            GroupOrigin {
                cfg: c,
                rt: Arc::new(OriginRuntime::new(
                    &OriginConfig::new("x", SocketAddr::from(([127, 0, 0, 1], 1))),
                    &OriginGroupConfig::default(),
                    1,
                )),
                affinity_id: String::new(),
            }
        };
        assert_eq!(
            o(Some("e"), Some("1")).closeness(&o(Some("e"), Some("1"))),
            2
        );
        assert_eq!(
            o(Some("e"), Some("1")).closeness(&o(Some("e"), Some("2"))),
            1
        );
        // Zone "1" of another region is another failure domain.
        assert_eq!(
            o(Some("e"), Some("1")).closeness(&o(Some("c"), Some("1"))),
            0
        );
        assert_eq!(o(None, Some("1")).closeness(&o(None, Some("1"))), 2);
        assert_eq!(o(None, None).closeness(&o(None, None)), 0);
    }
}
