//! The front door's configuration: the TOML shape (see `CONFIG.md`), typed values
//! (`Priority`, `Weight`, `Duration`, `SocketAddr`) and validation whose errors name the
//! file, line and key.
//!
//! Every struct has public fields and a `Default`, so the lab can build a config in code,
//! serialize it with `toml::to_string` and hand the file to `geoha frontdoor --config`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The whole front door configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// After shutdown starts, in-flight requests get at most this long to finish.
    #[serde(default = "defaults::drain_deadline", with = "humantime_serde")]
    pub drain_deadline: Duration,
    /// Data-plane threads serving client connections, each with its own event loop and
    /// its own idle origin connections; 0: one per available CPU. Needs a restart.
    #[serde(default)]
    pub workers: usize,
    /// Traffic listeners; `Listeners::traffic[i]` is served with `listeners[i]`'s TLS
    /// settings. Addresses are bound by the caller (the binary), not by `run`.
    #[serde(rename = "listener", default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerConfig>,
    /// The admin API (its own listener, bearer token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminConfig>,
    /// Limits on what clients may send.
    #[serde(default)]
    pub limits: Limits,
    /// Retries on another origin and the budget that caps them.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Routes: host and path patterns to an origin group. The most specific match wins.
    #[serde(rename = "route", default)]
    pub routes: Vec<RouteConfig>,
    /// Origin groups (Front Door's "backend pools").
    #[serde(rename = "origin_group", default)]
    pub origin_groups: Vec<OriginGroupConfig>,
    /// The file this config was read from (set by [`Config::from_file`]); `POST
    /// /admin/reload` with an empty body re-reads it. Never serialized.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            drain_deadline: defaults::drain_deadline(),
            workers: 0,
            listeners: Vec::new(),
            admin: None,
            limits: Limits::default(),
            retry: RetryConfig::default(),
            routes: Vec::new(),
            origin_groups: Vec::new(),
            source: None,
        }
    }
}

/// One traffic listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Where the binary binds it.
    pub address: SocketAddr,
    /// Serve HTTPS (HTTP/1.1 and HTTP/2 by ALPN) with these PEM files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// Certificate chain and private key, both PEM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain (leaf first).
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The admin API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where the binary binds the admin listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<SocketAddr>,
    /// Bearer token required by `/admin/*` (not by `/healthz` and `/metrics`).
    pub token: String,
}

/// Limits on client input; each one answers with its own status code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Request line plus headers (HTTP/1.1) or header list (HTTP/2); over it: 431.
    /// At least 8192 (hyper's minimum read buffer).
    pub max_header_bytes: usize,
    /// Request body; over it: 413. Absent: unlimited (bodies are streamed, never buffered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// Open client connections; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// A client that has not sent its request headers within this is disconnected.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Requests that already crossed this many front doors (`X-Geoha-Hops`) get 508.
    pub max_hops: u8,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 32 * 1024,
            max_body_bytes: None,
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            max_hops: 8,
        }
    }
}

/// Retries on another origin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Tries per request, the first one included (1 = never retry).
    pub max_attempts: u32,
    /// Retries may add at most this share (percent) of the live requests of the last 10 s...
    pub budget_percent: f64,
    /// ...plus this many per second, so that a quiet front door can still retry.
    pub min_retries_per_second: u32,
    /// Also retry an idempotent request without a body on another origin when the
    /// answer is a 5xx (Front Door does not; off by default). The 5xx still counts
    /// against its origin, and is what the client gets if no other origin does better.
    pub on_5xx: bool,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 3,
            budget_percent: 20.0,
            min_retries_per_second: 10,
            on_5xx: false,
        }
    }
}

/// A route: requests whose host and path match go to `origin_group`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Host patterns: `*`, `*.example.com` or `api.example.com` (port ignored).
    #[serde(default = "defaults::any_host")]
    pub hosts: Vec<String>,
    /// Path patterns: `/*`, `/api/*` (prefix) or `/exact`.
    #[serde(default = "defaults::any_path")]
    pub paths: Vec<String>,
    /// The origin group's name.
    pub origin_group: String,
}

impl Default for RouteConfig {
    fn default() -> Self {
        RouteConfig {
            hosts: defaults::any_host(),
            paths: defaults::any_path(),
            origin_group: String::new(),
        }
    }
}

/// An origin group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginGroupConfig {
    /// Unique name, referenced by routes.
    pub name: String,
    /// Pin a client to its origin with a cookie while that origin is healthy.
    #[serde(default)]
    pub session_affinity: bool,
    /// Time to wait for an origin's response headers, retries included; then 504.
    #[serde(
        default = "defaults::origin_response_timeout",
        with = "humantime_serde"
    )]
    pub origin_response_timeout: Duration,
    /// Time to wait for one TCP connect to an origin; then the next origin is tried.
    #[serde(default = "defaults::connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Per-try timeout: how long one try may wait for response headers before an
    /// idempotent request moves to another origin (off by default: only
    /// `origin_response_timeout` applies).
    #[serde(default, skip_serializing_if = "TryTimeoutConfig::is_off")]
    pub try_timeout: TryTimeoutConfig,
    /// Hedged requests (off by default): when the first try of an idempotent request
    /// without a body has no answer after this delay, a second copy goes to another
    /// origin and the first answer wins. `p99_multiplier` is taken of the fastest
    /// healthy origin's recent p99 (what "normal" looks like in the group). Hedges are
    /// paid from the retry budget, so they cannot double the load.
    #[serde(default, skip_serializing_if = "TryTimeoutConfig::is_off")]
    pub hedge: TryTimeoutConfig,
    /// A recovered origin's weight ramps from 10% to 100% over this window (0: off).
    #[serde(default = "defaults::slow_start", with = "humantime_serde")]
    pub slow_start: Duration,
    /// Active health probes.
    #[serde(default)]
    pub probe: ProbeConfig,
    /// Passive health: ejection on failures seen in live traffic.
    #[serde(default)]
    pub passive: PassiveHealthConfig,
    /// The origins.
    #[serde(rename = "origin", default)]
    pub origins: Vec<OriginConfig>,
}

impl Default for OriginGroupConfig {
    fn default() -> Self {
        OriginGroupConfig {
            name: String::new(),
            session_affinity: false,
            origin_response_timeout: defaults::origin_response_timeout(),
            connect_timeout: defaults::connect_timeout(),
            try_timeout: TryTimeoutConfig::default(),
            hedge: TryTimeoutConfig::default(),
            slow_start: defaults::slow_start(),
            probe: ProbeConfig::default(),
            passive: PassiveHealthConfig::default(),
            origins: Vec::new(),
        }
    }
}

/// The per-try timeout: fixed, or adaptive (a multiple of the origin's recent p99 time
/// to response headers, between a floor and a ceiling).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TryTimeoutConfig {
    /// A fixed per-try timeout.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub fixed: Option<Duration>,
    /// Adaptive: this multiple of the origin's p99 over its last 256 answers...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_multiplier: Option<f64>,
    /// ...but at least this...
    #[serde(with = "humantime_serde")]
    pub floor: Duration,
    /// ...and at most this (also used until an origin has 20 answers).
    #[serde(with = "humantime_serde")]
    pub ceiling: Duration,
}

impl Default for TryTimeoutConfig {
    fn default() -> Self {
        TryTimeoutConfig {
            fixed: None,
            p99_multiplier: None,
            floor: Duration::from_millis(100),
            ceiling: Duration::from_secs(2),
        }
    }
}

impl TryTimeoutConfig {
    /// A fixed per-try timeout.
    pub fn fixed(d: Duration) -> Self {
        TryTimeoutConfig {
            fixed: Some(d),
            ..TryTimeoutConfig::default()
        }
    }

    /// An adaptive one.
    pub fn adaptive(p99_multiplier: f64, floor: Duration, ceiling: Duration) -> Self {
        TryTimeoutConfig {
            fixed: None,
            p99_multiplier: Some(p99_multiplier),
            floor,
            ceiling,
        }
    }

    /// Neither fixed nor adaptive.
    pub fn is_off(&self) -> bool {
        self.fixed.is_none() && self.p99_multiplier.is_none()
    }

    /// The per-try timeout for an origin whose recent p99 is `p99` (`None`: off).
    pub fn for_origin(&self, p99: Option<Duration>) -> Option<Duration> {
        if let Some(fixed) = self.fixed {
            return Some(fixed);
        }
        let multiplier = self.p99_multiplier?;
        Some(match p99 {
            Some(p) => p.mul_f64(multiplier).clamp(self.floor, self.ceiling),
            None => self.ceiling,
        })
    }
}

/// HTTP method of health probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProbeMethod {
    /// `HEAD` (Front Door's default: no body to transfer).
    #[serde(rename = "HEAD")]
    Head,
    /// `GET`.
    #[serde(rename = "GET")]
    Get,
}

impl ProbeMethod {
    /// The HTTP method.
    pub fn as_method(self) -> http::Method {
        match self {
            ProbeMethod::Head => http::Method::HEAD,
            ProbeMethod::Get => http::Method::GET,
        }
    }
}

/// Active health probes (Front Door's health probe settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    /// Probe at all (off: every origin counts as healthy).
    pub enabled: bool,
    /// Path probed.
    pub path: String,
    /// `HEAD` or `GET`.
    pub method: ProbeMethod,
    /// Time between probes of one origin.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Bound for one probe (connect + response headers); absent: min(interval, 2 s).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Probes remembered per origin.
    pub sample_size: u32,
    /// Healthy when at least this many of the last `sample_size` probes answered 200.
    pub successful_samples_required: u32,
    /// Origins whose probe latency is within the fastest one's plus this share traffic.
    pub additional_latency_ms: u32,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            enabled: true,
            path: "/".into(),
            method: ProbeMethod::Head,
            interval: Duration::from_secs(30),
            timeout: None,
            sample_size: 4,
            successful_samples_required: 2,
            additional_latency_ms: 0,
        }
    }
}

impl ProbeConfig {
    /// The bound for one probe.
    pub fn effective_timeout(&self) -> Duration {
        self.timeout
            .unwrap_or_else(|| self.interval.min(Duration::from_secs(2)))
    }
}

/// Passive health: live-traffic failures eject an origin for a while.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveHealthConfig {
    /// Eject at all.
    pub enabled: bool,
    /// This many failures in a row (connect error, closed before headers, timeout, and
    /// 5xx when `count_5xx`) eject the origin.
    pub consecutive_failures: u32,
    /// Count 5xx answers as failures.
    pub count_5xx: bool,
    /// A timeout (connect, per-try or response) ejects at once: an origin that accepts
    /// and never answers, or a black-holed link, should not get more requests.
    pub eject_on_timeout: bool,
    /// First ejection lasts this long; each repeat doubles it...
    #[serde(with = "humantime_serde")]
    pub base_ejection_time: Duration,
    /// ...up to this.
    #[serde(with = "humantime_serde")]
    pub max_ejection_time: Duration,
    /// At most this share (percent) of a group's origins is ejected at once (at least
    /// one origin of a group of two or more may be).
    pub max_ejected_percent: u32,
}

impl Default for PassiveHealthConfig {
    fn default() -> Self {
        PassiveHealthConfig {
            enabled: true,
            consecutive_failures: 3,
            count_5xx: true,
            eject_on_timeout: true,
            base_ejection_time: Duration::from_secs(5),
            max_ejection_time: Duration::from_secs(120),
            max_ejected_percent: 50,
        }
    }
}

/// One origin (a region's ingress, a replica).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginConfig {
    /// Unique name within the front door (admin API, metrics, affinity cookie).
    pub name: String,
    /// Where to connect.
    pub address: SocketAddr,
    /// `Host` header sent to this origin; absent: the client's host is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_header: Option<String>,
    /// 1 (first choice) to 5.
    #[serde(default)]
    pub priority: Priority,
    /// 1 to 1000; share of traffic among origins of equal priority and latency band.
    #[serde(default)]
    pub weight: Weight,
    /// Disabled origins get no traffic (they are still probed).
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// Region label; retries prefer another region or zone than the one that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Zone label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

impl OriginConfig {
    /// An enabled origin with priority 1 and weight 50 (Front Door's defaults).
    pub fn new(name: impl Into<String>, address: SocketAddr) -> Self {
        OriginConfig {
            name: name.into(),
            address,
            host_header: None,
            priority: Priority::default(),
            weight: Weight::default(),
            enabled: true,
            region: None,
            zone: None,
        }
    }
}

/// Origin priority, 1 (first choice) to 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u8")]
pub struct Priority(u8);

impl Priority {
    /// `Some` for 1..=5.
    pub const fn new(value: u8) -> Option<Self> {
        if value >= 1 && value <= 5 {
            Some(Priority(value))
        } else {
            None
        }
    }

    /// The value, 1..=5.
    pub const fn get(self) -> u8 {
        self.0
    }
}

impl Default for Priority {
    fn default() -> Self {
        Priority(1)
    }
}

impl TryFrom<i64> for Priority {
    type Error = String;
    fn try_from(value: i64) -> Result<Self, String> {
        u8::try_from(value)
            .ok()
            .and_then(Priority::new)
            .ok_or_else(|| format!("priority must be 1..=5, got {value}"))
    }
}

impl From<Priority> for u8 {
    fn from(p: Priority) -> u8 {
        p.0
    }
}

/// Origin weight, 1 to 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u16")]
pub struct Weight(u16);

impl Weight {
    /// `Some` for 1..=1000.
    pub const fn new(value: u16) -> Option<Self> {
        if value >= 1 && value <= 1000 {
            Some(Weight(value))
        } else {
            None
        }
    }

    /// The value, 1..=1000.
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl Default for Weight {
    fn default() -> Self {
        Weight(50)
    }
}

impl TryFrom<i64> for Weight {
    type Error = String;
    fn try_from(value: i64) -> Result<Self, String> {
        u16::try_from(value)
            .ok()
            .and_then(Weight::new)
            .ok_or_else(|| format!("weight must be 1..=1000, got {value}"))
    }
}

impl From<Weight> for u16 {
    fn from(w: Weight) -> u16 {
        w.0
    }
}

/// More data-plane threads than this is a typo, not a machine.
const MAX_WORKERS: usize = 1024;

mod defaults {
    use std::time::Duration;

    pub(super) fn drain_deadline() -> Duration {
        Duration::from_secs(10)
    }
    pub(super) fn origin_response_timeout() -> Duration {
        // Front Door's default.
        Duration::from_secs(30)
    }
    pub(super) fn connect_timeout() -> Duration {
        Duration::from_secs(1)
    }
    pub(super) fn slow_start() -> Duration {
        Duration::from_secs(5)
    }
    pub(super) fn any_host() -> Vec<String> {
        vec!["*".into()]
    }
    pub(super) fn any_path() -> Vec<String> {
        vec!["/*".into()]
    }
    pub(super) fn yes() -> bool {
        true
    }
}

// === errors ===

/// One problem in a config, located as precisely as the source allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key path, e.g. `origin_group[0].origin[1].weight`.
    pub key: String,
    /// 1-based line, when the config came from text.
    pub line: Option<usize>,
    /// 1-based column, when the config came from text.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// A config that cannot be used; lists every problem found (not just the first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file name (or `<config>` for a config built in code).
    pub file: String,
    /// The problems, in file order when located.
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}", self.file)?;
            if let Some(line) = p.line {
                write!(f, ":{line}")?;
                if let Some(col) = p.column {
                    write!(f, ":{col}")?;
                }
            }
            if p.key.is_empty() {
                write!(f, ": {}", p.message)?;
            } else {
                write!(f, ": {}: {}", p.key, p.message)?;
            }
        }
        Ok(())
    }
}

/// A step in a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(&'static str),
    Index(usize),
}

/// A key path built while validating; rendered as `a[0].b`.
#[derive(Debug, Clone, Default)]
struct KeyPath(Vec<Seg>);

impl KeyPath {
    fn key(&self, k: &'static str) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(k));
        p
    }
    fn index(&self, i: usize) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            match seg {
                Seg::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Problems(Vec<(KeyPath, String)>);

impl Problems {
    fn add(&mut self, at: KeyPath, message: impl Into<String>) {
        self.0.push((at, message.into()));
    }
}

// === impl Config ===

impl Config {
    /// Parses and validates TOML text; `file_name` only labels the errors.
    pub fn from_toml_str(text: &str, file_name: &str) -> Result<Config, ConfigError> {
        let cfg: Config = match toml::from_str(text) {
            Ok(cfg) => cfg,
            Err(err) => return Err(syntax_error(text, file_name, &err)),
        };
        let problems = cfg.check();
        if problems.0.is_empty() {
            return Ok(cfg);
        }
        let located = span_index(text);
        let mut list: Vec<ConfigProblem> = problems
            .0
            .into_iter()
            .map(|(path, message)| {
                let (line, column) = match located.as_ref().and_then(|doc| locate(doc, &path.0)) {
                    Some(offset) => {
                        let (l, c) = line_col(text, offset);
                        (Some(l), Some(c))
                    }
                    None => (None, None),
                };
                ConfigProblem {
                    key: path.to_string(),
                    line,
                    column,
                    message,
                }
            })
            .collect();
        list.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        Err(ConfigError {
            file: file_name.to_string(),
            problems: list,
        })
    }

    /// Reads, parses and validates a file (on a blocking thread), remembering its path
    /// for `POST /admin/reload`.
    pub async fn from_file(path: PathBuf) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let read_path = path.clone();
        let text = tokio::task::spawn_blocking(move || std::fs::read_to_string(read_path))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        let text = text.map_err(|message| ConfigError {
            file: name.clone(),
            problems: vec![ConfigProblem {
                key: String::new(),
                line: None,
                column: None,
                message: format!("cannot read: {message}"),
            }],
        })?;
        let mut cfg = Config::from_toml_str(&text, &name)?;
        cfg.source = Some(path);
        Ok(cfg)
    }

    /// Serializes to TOML (the shape `from_toml_str` reads).
    pub fn to_toml_string(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }

    /// The number of data-plane threads: `workers`, or one per available CPU when 0.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// Checks everything serde cannot: ranges, references, uniqueness. A config built in
    /// code must pass this before `run` (which calls it too).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = self.check();
        if problems.0.is_empty() {
            return Ok(());
        }
        Err(ConfigError {
            file: self
                .source
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "<config>".into()),
            problems: problems
                .0
                .into_iter()
                .map(|(path, message)| ConfigProblem {
                    key: path.to_string(),
                    line: None,
                    column: None,
                    message,
                })
                .collect(),
        })
    }

    fn check(&self) -> Problems {
        let mut p = Problems::default();
        let root = KeyPath::default();
        if self.drain_deadline.is_zero() {
            p.add(root.key("drain_deadline"), "must be more than 0s");
        }
        if self.workers > MAX_WORKERS {
            p.add(
                root.key("workers"),
                format!("must be 0..={MAX_WORKERS}, got {}", self.workers),
            );
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if let Some(tls) = &l.tls {
                let at = root.key("listener").index(i).key("tls");
                if tls.cert.as_os_str().is_empty() {
                    p.add(at.key("cert"), "must name a PEM file");
                }
                if tls.key.as_os_str().is_empty() {
                    p.add(at.key("key"), "must name a PEM file");
                }
            }
        }
        if let Some(admin) = &self.admin {
            if admin.token.trim().is_empty() {
                p.add(root.key("admin").key("token"), "must not be empty");
            }
        }
        let limits = root.key("limits");
        if self.limits.max_header_bytes < 8192 {
            p.add(
                limits.key("max_header_bytes"),
                format!(
                    "must be at least 8192, got {}",
                    self.limits.max_header_bytes
                ),
            );
        }
        if self.limits.max_connections == 0 {
            p.add(limits.key("max_connections"), "must be at least 1");
        }
        if self.limits.header_read_timeout.is_zero() {
            p.add(limits.key("header_read_timeout"), "must be more than 0s");
        }
        if self.limits.max_hops == 0 {
            p.add(limits.key("max_hops"), "must be at least 1");
        }
        let retry = root.key("retry");
        if self.retry.max_attempts == 0 || self.retry.max_attempts > 10 {
            p.add(
                retry.key("max_attempts"),
                format!("must be 1..=10, got {}", self.retry.max_attempts),
            );
        }
        if !(0.0..=100.0).contains(&self.retry.budget_percent) {
            p.add(
                retry.key("budget_percent"),
                format!("must be 0..=100, got {}", self.retry.budget_percent),
            );
        }

        let mut group_names = std::collections::HashSet::new();
        let mut origin_names = std::collections::HashSet::new();
        if self.origin_groups.is_empty() {
            p.add(
                root.key("origin_group"),
                "at least one origin group is required",
            );
        }
        for (gi, g) in self.origin_groups.iter().enumerate() {
            let at = root.key("origin_group").index(gi);
            if g.name.trim().is_empty() {
                p.add(at.key("name"), "must not be empty");
            } else if !group_names.insert(g.name.as_str()) {
                p.add(
                    at.key("name"),
                    format!("duplicate origin group {:?}", g.name),
                );
            }
            if g.origin_response_timeout.is_zero() {
                p.add(at.key("origin_response_timeout"), "must be more than 0s");
            }
            if g.connect_timeout.is_zero() {
                p.add(at.key("connect_timeout"), "must be more than 0s");
            }
            for (name, t) in [("try_timeout", &g.try_timeout), ("hedge", &g.hedge)] {
                let tt = at.key(name);
                if let Some(fixed) = t.fixed {
                    if fixed.is_zero() || fixed > g.origin_response_timeout {
                        p.add(
                            tt.key("fixed"),
                            "must be more than 0s and at most origin_response_timeout",
                        );
                    }
                    if t.p99_multiplier.is_some() {
                        p.add(
                            tt.key("p99_multiplier"),
                            "set either fixed or p99_multiplier",
                        );
                    }
                }
                if let Some(m) = t.p99_multiplier {
                    if !(1.0..=100.0).contains(&m) {
                        p.add(
                            tt.key("p99_multiplier"),
                            format!("must be 1..=100, got {m}"),
                        );
                    }
                    if t.floor.is_zero() {
                        p.add(tt.key("floor"), "must be more than 0s");
                    }
                    if t.ceiling < t.floor {
                        p.add(tt.key("ceiling"), "must be at least floor");
                    }
                }
            }
            let probe = at.key("probe");
            if !g.probe.path.starts_with('/') {
                p.add(
                    probe.key("path"),
                    format!("must start with '/', got {:?}", g.probe.path),
                );
            } else if g.probe.path.parse::<http::uri::PathAndQuery>().is_err() {
                p.add(
                    probe.key("path"),
                    format!("not a valid path: {:?}", g.probe.path),
                );
            }
            if g.probe.interval.is_zero() {
                p.add(probe.key("interval"), "must be more than 0s");
            }
            if let Some(t) = g.probe.timeout {
                if t.is_zero() {
                    p.add(probe.key("timeout"), "must be more than 0s");
                }
            }
            if g.probe.sample_size == 0 || g.probe.sample_size > 255 {
                p.add(
                    probe.key("sample_size"),
                    format!("must be 1..=255, got {}", g.probe.sample_size),
                );
            }
            if g.probe.successful_samples_required == 0
                || g.probe.successful_samples_required > g.probe.sample_size
            {
                p.add(
                    probe.key("successful_samples_required"),
                    format!(
                        "must be 1..=sample_size ({}), got {}",
                        g.probe.sample_size, g.probe.successful_samples_required
                    ),
                );
            }
            let passive = at.key("passive");
            if g.passive.consecutive_failures == 0 {
                p.add(passive.key("consecutive_failures"), "must be at least 1");
            }
            if g.passive.base_ejection_time.is_zero() {
                p.add(passive.key("base_ejection_time"), "must be more than 0s");
            }
            if g.passive.max_ejection_time < g.passive.base_ejection_time {
                p.add(
                    passive.key("max_ejection_time"),
                    "must be at least base_ejection_time",
                );
            }
            if g.passive.max_ejected_percent > 100 {
                p.add(
                    passive.key("max_ejected_percent"),
                    format!("must be 0..=100, got {}", g.passive.max_ejected_percent),
                );
            }
            if g.origins.is_empty() {
                p.add(
                    at.key("origin"),
                    "an origin group needs at least one origin",
                );
            }
            for (oi, o) in g.origins.iter().enumerate() {
                let oat = at.key("origin").index(oi);
                if o.name.trim().is_empty() {
                    p.add(oat.key("name"), "must not be empty");
                } else if !o
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                {
                    p.add(
                        oat.key("name"),
                        format!(
                            "only letters, digits, '-', '_' and '.' are allowed, got {:?}",
                            o.name
                        ),
                    );
                } else if !origin_names.insert(o.name.as_str()) {
                    p.add(oat.key("name"), format!("duplicate origin {:?}", o.name));
                }
                if o.address.port() == 0 {
                    p.add(oat.key("address"), "port must not be 0");
                }
                if let Some(h) = &o.host_header {
                    if h.is_empty() || http::HeaderValue::from_str(h).is_err() {
                        p.add(
                            oat.key("host_header"),
                            format!("not a valid Host header: {h:?}"),
                        );
                    }
                }
            }
        }
        if self.routes.is_empty() {
            p.add(root.key("route"), "at least one route is required");
        }
        for (ri, r) in self.routes.iter().enumerate() {
            let at = root.key("route").index(ri);
            if !self.origin_groups.iter().any(|g| g.name == r.origin_group) {
                p.add(
                    at.key("origin_group"),
                    format!("no origin group named {:?}", r.origin_group),
                );
            }
            if r.hosts.is_empty() {
                p.add(at.key("hosts"), "at least one host pattern is required");
            }
            for h in &r.hosts {
                if let Err(e) = crate::route::HostPattern::parse(h) {
                    p.add(at.key("hosts"), e);
                }
            }
            if r.paths.is_empty() {
                p.add(at.key("paths"), "at least one path pattern is required");
            }
            for path in &r.paths {
                if let Err(e) = crate::route::PathPattern::parse(path) {
                    p.add(at.key("paths"), e);
                }
            }
        }
        p
    }
}

/// Turns a toml/serde error into a located problem, naming the key under the error.
fn syntax_error(text: &str, file: &str, err: &toml::de::Error) -> ConfigError {
    let (line, column, key) = match err.span() {
        Some(span) => {
            let (l, c) = line_col(text, span.start);
            let key = span_index(text)
                .and_then(|doc| key_at(&doc, span.start))
                .unwrap_or_default();
            (Some(l), Some(c), key)
        }
        None => (None, None, String::new()),
    };
    ConfigError {
        file: file.to_string(),
        problems: vec![ConfigProblem {
            key,
            line,
            column,
            message: err.message().trim().to_string(),
        }],
    }
}

type SpannedDoc<'a> = toml_edit::ImDocument<&'a str>;

fn span_index(text: &str) -> Option<SpannedDoc<'_>> {
    toml_edit::ImDocument::parse(text).ok()
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| offset - i).unwrap_or(offset + 1);
    (line, col)
}

#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a toml_edit::Item),
    Table(&'a toml_edit::Table),
    Value(&'a toml_edit::Value),
}

impl<'a> Node<'a> {
    fn span(self) -> Option<std::ops::Range<usize>> {
        match self {
            Node::Item(i) => i.span(),
            Node::Table(t) => t.span(),
            Node::Value(v) => v.span(),
        }
    }

    fn child_key(self, key: &str) -> Option<(Option<std::ops::Range<usize>>, Node<'a>)> {
        let table_like: &dyn toml_edit::TableLike = match self {
            Node::Item(toml_edit::Item::Table(t)) | Node::Table(t) => t,
            Node::Item(toml_edit::Item::Value(toml_edit::Value::InlineTable(t)))
            | Node::Value(toml_edit::Value::InlineTable(t)) => t,
            _ => return None,
        };
        let (k, item) = table_like.get_key_value(key)?;
        Some((k.span(), Node::Item(item)))
    }

    fn child_index(self, index: usize) -> Option<Node<'a>> {
        match self {
            Node::Item(toml_edit::Item::ArrayOfTables(a)) => a.get(index).map(Node::Table),
            Node::Item(toml_edit::Item::Value(toml_edit::Value::Array(a)))
            | Node::Value(toml_edit::Value::Array(a)) => a.get(index).map(Node::Value),
            _ => None,
        }
    }

    /// `(key, key span, child)` for every child of a table-like node.
    fn children(self) -> Vec<(String, Option<std::ops::Range<usize>>, Node<'a>)> {
        let table_like: Option<&dyn toml_edit::TableLike> = match self {
            Node::Item(toml_edit::Item::Table(t)) | Node::Table(t) => Some(t),
            Node::Item(toml_edit::Item::Value(toml_edit::Value::InlineTable(t)))
            | Node::Value(toml_edit::Value::InlineTable(t)) => Some(t),
            _ => None,
        };
        if let Some(t) = table_like {
            return t
                .iter()
                .filter_map(|(k, _)| {
                    let (ks, child) = self.child_key(k)?;
                    Some((k.to_string(), ks, child))
                })
                .collect();
        }
        let mut out = Vec::new();
        let mut i = 0;
        while let Some(child) = self.child_index(i) {
            out.push((format!("[{i}]"), child.span(), child));
            i += 1;
        }
        out
    }
}

/// Byte offset of the key at `path` (or the deepest part of it that exists).
fn locate(doc: &SpannedDoc<'_>, path: &[Seg]) -> Option<usize> {
    let mut node = Node::Table(doc.as_table());
    let mut best: Option<usize> = None;
    for seg in path {
        let next = match seg {
            Seg::Key(k) => node.child_key(k).map(|(ks, n)| {
                if let Some(s) = ks.or_else(|| n.span()) {
                    best = Some(s.start);
                }
                n
            }),
            Seg::Index(i) => node.child_index(*i).inspect(|n| {
                if let Some(s) = n.span() {
                    best = Some(s.start);
                }
            }),
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    best
}

/// The dotted key path whose key or value covers `offset` (the innermost one).
fn key_at(doc: &SpannedDoc<'_>, offset: usize) -> Option<String> {
    fn walk(node: Node<'_>, offset: usize, prefix: &str, found: &mut Option<String>) {
        for (name, key_span, child) in node.children() {
            let path = if name.starts_with('[') || prefix.is_empty() {
                format!("{prefix}{name}")
            } else {
                format!("{prefix}.{name}")
            };
            let covers = |s: &Option<std::ops::Range<usize>>| {
                s.as_ref()
                    .is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1))
            };
            if covers(&key_span) || covers(&child.span()) {
                *found = Some(path.clone());
            }
            walk(child, offset, &path, found);
        }
    }
    let mut found = None;
    walk(Node::Table(doc.as_table()), offset, "", &mut found);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[listener]]
address = "127.0.0.1:8080"

[admin]
address = "127.0.0.1:9080"
token = "secret"

[[route]]
origin_group = "api"

[[origin_group]]
name = "api"
origin_response_timeout = "5s"

[origin_group.probe]
interval = "1s"

[[origin_group.origin]]
name = "eastus2-z1-r0"
address = "127.1.1.1:8080"
region = "eastus2"
zone = "1"

[[origin_group.origin]]
name = "centralus-z1-r0"
address = "127.2.1.1:8080"
weight = 10
priority = 2
"#;

    #[test]
    fn parses_the_documented_shape_with_defaults() {
        let cfg = Config::from_toml_str(GOOD, "fd.toml").unwrap();
        assert_eq!(cfg.routes[0].hosts, vec!["*"]);
        assert_eq!(cfg.routes[0].paths, vec!["/*"]);
        let g = &cfg.origin_groups[0];
        assert_eq!(g.origin_response_timeout, Duration::from_secs(5));
        assert_eq!(g.probe.interval, Duration::from_secs(1));
        assert_eq!(g.probe.sample_size, 4);
        assert_eq!(g.probe.method, ProbeMethod::Head);
        assert_eq!(g.origins[0].weight.get(), 50);
        assert_eq!(g.origins[0].priority.get(), 1);
        assert_eq!(g.origins[1].weight.get(), 10);
        assert_eq!(g.origins[1].priority.get(), 2);
        assert!(g.origins[1].enabled);
    }

    #[test]
    fn serializes_to_toml_that_parses_back_identically() {
        let cfg = Config::from_toml_str(GOOD, "fd.toml").unwrap();
        let text = cfg.to_toml_string().unwrap();
        let back = Config::from_toml_str(&text, "round.toml").unwrap();
        assert_eq!(cfg, back, "{text}");
    }

    #[test]
    fn a_config_built_in_code_round_trips() {
        let mut cfg = Config::default();
        cfg.routes.push(RouteConfig {
            origin_group: "g".into(),
            ..RouteConfig::default()
        });
        let mut g = OriginGroupConfig {
            name: "g".into(),
            try_timeout: TryTimeoutConfig::fixed(Duration::from_millis(250)),
            ..OriginGroupConfig::default()
        };
        g.origins
            .push(OriginConfig::new("a", "127.0.0.1:1".parse().unwrap()));
        cfg.origin_groups.push(g);
        cfg.limits.max_body_bytes = Some(1 << 20);
        cfg.validate().unwrap();
        let text = cfg.to_toml_string().unwrap();
        assert_eq!(Config::from_toml_str(&text, "x").unwrap(), cfg, "{text}");
    }

    fn error_of(text: &str) -> ConfigError {
        Config::from_toml_str(text, "fd.toml").unwrap_err()
    }

    #[test]
    fn out_of_range_weight_names_file_line_and_key() {
        let bad = GOOD.replace("weight = 10", "weight = 0");
        let err = error_of(&bad);
        let line = bad.lines().position(|l| l == "weight = 0").unwrap() + 1;
        let p = &err.problems[0];
        assert_eq!(p.line, Some(line), "{err}");
        assert_eq!(p.key, "origin_group[0].origin[1].weight", "{err}");
        assert!(p.message.contains("1..=1000"), "{err}");
        assert!(
            err.to_string().starts_with(&format!("fd.toml:{line}:")),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let bad = GOOD.replace("weight = 10", "wieght = 10");
        let err = error_of(&bad);
        let line = bad.lines().position(|l| l == "wieght = 10").unwrap() + 1;
        assert_eq!(err.problems[0].line, Some(line), "{err}");
        assert!(err.to_string().contains("wieght"), "{err}");
        assert!(
            err.problems[0].key.contains("origin_group[0].origin[1]"),
            "{err}"
        );
    }

    #[test]
    fn bad_duration_is_named() {
        let bad = GOOD.replace("interval = \"1s\"", "interval = \"soon\"");
        let err = error_of(&bad);
        let line = bad.lines().position(|l| l.starts_with("interval")).unwrap() + 1;
        assert_eq!(err.problems[0].line, Some(line), "{err}");
        assert_eq!(
            err.problems[0].key, "origin_group[0].probe.interval",
            "{err}"
        );
    }

    #[test]
    fn semantic_errors_are_all_reported_with_lines() {
        let bad = GOOD
            .replace("origin_group = \"api\"", "origin_group = \"nope\"")
            .replace(
                "interval = \"1s\"",
                "interval = \"1s\"\nsuccessful_samples_required = 9",
            )
            .replace("name = \"centralus-z1-r0\"", "name = \"eastus2-z1-r0\"");
        let err = error_of(&bad);
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "route[0].origin_group",
                "origin_group[0].probe.successful_samples_required",
                "origin_group[0].origin[1].name"
            ],
            "{err}"
        );
        let line_of = |needle: &str| bad.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
        assert_eq!(
            err.problems[0].line,
            Some(line_of("origin_group = \"nope\""))
        );
        assert_eq!(
            err.problems[1].line,
            Some(line_of("successful_samples_required"))
        );
        // The second origin's name line, not the first's.
        let second = bad
            .match_indices("name = \"eastus2-z1-r0\"")
            .nth(1)
            .unwrap()
            .0;
        assert_eq!(err.problems[2].line, Some(line_col(&bad, second).0));
    }

    #[test]
    fn syntax_error_has_a_line() {
        let err = error_of("[[route]\norigin_group = 1");
        assert_eq!(err.problems[0].line, Some(1), "{err}");
    }

    #[test]
    fn missing_groups_and_routes_are_errors() {
        let err = error_of("");
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert!(
            keys.contains(&"origin_group") && keys.contains(&"route"),
            "{err}"
        );
    }

    #[test]
    fn the_example_in_config_md_parses_and_shows_the_defaults() {
        let doc = include_str!("../CONFIG.md");
        let start = doc.find("```toml\n").unwrap() + 8;
        let end = start + doc[start..].find("```").unwrap();
        let cfg = Config::from_toml_str(&doc[start..end], "CONFIG.md").unwrap();
        let g = &cfg.origin_groups[0];
        assert_eq!(cfg.workers, Config::default().workers);
        assert_eq!(cfg.limits, Limits::default());
        assert_eq!(cfg.retry, RetryConfig::default());
        assert_eq!(g.probe, ProbeConfig::default());
        assert_eq!(g.passive, PassiveHealthConfig::default());
        assert_eq!(g.slow_start, OriginGroupConfig::default().slow_start);
        assert_eq!(g.try_timeout, TryTimeoutConfig::default());
        assert_eq!(
            g.origin_response_timeout,
            OriginGroupConfig::default().origin_response_timeout
        );
    }

    #[test]
    fn random_edits_of_a_good_config_never_panic_and_errors_stay_in_the_file() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let lines = GOOD.lines().count();
        let alphabet = b"[]=\"{}#.,0123456789azAZ_- \n";
        for _ in 0..2000 {
            let mut text: Vec<u8> = GOOD.as_bytes().to_vec();
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..text.len());
                match rng.random_range(0..3) {
                    0 => {
                        text.remove(i);
                    }
                    1 => text.insert(i, alphabet[rng.random_range(0..alphabet.len())]),
                    _ => text[i] = alphabet[rng.random_range(0..alphabet.len())],
                }
            }
            let text = String::from_utf8_lossy(&text);
            if let Err(err) = Config::from_toml_str(&text, "fuzz.toml") {
                assert!(!err.problems.is_empty());
                for p in &err.problems {
                    assert!(p.line.is_none_or(|l| l >= 1 && l <= lines + 3), "{err}");
                }
            }
        }
    }

    #[test]
    fn try_timeout_is_fixed_or_a_clamped_multiple_of_p99() {
        let ms = Duration::from_millis;
        assert_eq!(TryTimeoutConfig::default().for_origin(Some(ms(5))), None);
        assert_eq!(
            TryTimeoutConfig::fixed(ms(300)).for_origin(Some(ms(5))),
            Some(ms(300))
        );
        let a = TryTimeoutConfig::adaptive(4.0, ms(50), ms(500));
        assert_eq!(
            a.for_origin(None),
            Some(ms(500)),
            "no data yet: the ceiling"
        );
        assert_eq!(a.for_origin(Some(ms(5))), Some(ms(50)));
        assert_eq!(a.for_origin(Some(ms(30))), Some(ms(120)));
        assert_eq!(a.for_origin(Some(ms(900))), Some(ms(500)));
    }

    #[test]
    fn workers_zero_means_one_per_cpu_and_absurd_counts_are_errors() {
        let cfg = Config::from_toml_str(GOOD, "fd.toml").unwrap();
        assert_eq!(cfg.workers, 0);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(cfg.worker_count(), cpus);
        let cfg = Config::from_toml_str(&format!("workers = 3\n{GOOD}"), "fd.toml").unwrap();
        assert_eq!(cfg.worker_count(), 3);
        let err = error_of(&format!("workers = 5000\n{GOOD}"));
        assert_eq!(err.problems[0].key, "workers", "{err}");
        assert_eq!(err.problems[0].line, Some(1), "{err}");
    }

    #[test]
    fn validate_reports_config_built_in_code() {
        let cfg = Config::default();
        let err = cfg.validate().unwrap_err();
        assert_eq!(err.file, "<config>");
    }
}
