//! The registry's configuration file (TOML): parsed once at the edge into typed values,
//! with errors that name file, line and key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::RegistryError;

/// One registry replica's configuration.
///
/// ```toml
/// replica_id = "eastus2"
/// listen = "127.0.0.1:5000"
/// storage = "/var/lib/geoha/registry"
/// anonymous_pull = true
/// htpasswd = "/etc/geoha/htpasswd"          # bcrypt lines `user:$2y$...`; unset = no auth
///
/// [token]                                    # Docker bearer-token flow at /token
/// secret = "at least sixteen characters"
///
/// [[peers]]
/// id = "centralus"
/// url = "http://127.0.1.1:5000"
///
/// [replication]
/// secret = "shared by all peers"             # required with htpasswd and peers
///
/// [[notifications]]
/// url = "http://127.0.0.1:9000/hook"
/// events = ["push", "delete"]
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This replica's name; orders concurrent tag writes after the clock, so it must be
    /// unique among peers (`[A-Za-z0-9._-]{1,64}`).
    pub replica_id: String,
    /// Where the binary binds (the library itself is handed a bound listener).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The storage root directory.
    pub storage: PathBuf,
    /// Whether pulls need no credentials.
    #[serde(default = "default_true")]
    pub anonymous_pull: bool,
    /// htpasswd file with bcrypt entries. Unset means the registry is open (lab use).
    #[serde(default)]
    pub htpasswd: Option<PathBuf>,
    /// The built-in token endpoint (`/token`) for the Docker bearer-token flow.
    #[serde(default)]
    pub token: Option<TokenConfig>,
    /// The other replicas; each replicates to every peer it names.
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// Replication tuning.
    #[serde(default)]
    pub replication: ReplicationConfig,
    /// Webhooks called on push and delete.
    #[serde(default)]
    pub notifications: Vec<Webhook>,
    /// Size and time limits.
    #[serde(default)]
    pub limits: Limits,
}

/// The bearer-token issuer served at `/token`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// HMAC-SHA256 signing secret (at least 16 bytes).
    pub secret: String,
    /// The `service` named in challenges and tokens.
    #[serde(default = "default_service")]
    pub service: String,
    /// The realm URL in challenges; default `http://<Host header>/token`.
    #[serde(default)]
    pub realm: Option<String>,
    /// How long an issued token is valid.
    #[serde(default = "default_token_lifetime", with = "humantime_serde")]
    pub lifetime: Duration,
}

/// A peer replica.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// The peer's `replica_id`.
    pub id: String,
    /// Its base URL, `http://host:port`.
    pub url: HttpUrl,
}

/// Replication settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationConfig {
    /// Shared secret peers present on the replication endpoints; unset = open.
    #[serde(default)]
    pub secret: Option<String>,
    /// Upper bound for one call to a peer (connect + answer).
    #[serde(default = "default_peer_timeout", with = "humantime_serde")]
    pub peer_timeout: Duration,
    /// First retry delay after a failed send; doubles up to `retry_max`.
    #[serde(default = "default_retry_min", with = "humantime_serde")]
    pub retry_min: Duration,
    /// Longest retry delay.
    #[serde(default = "default_retry_max", with = "humantime_serde")]
    pub retry_max: Duration,
    /// Whether a local miss is fetched from peers.
    #[serde(default = "default_true")]
    pub read_through: bool,
    /// Log records sent to a peer in one request.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// How often each peer's full state is compared and merged (anti-entropy, which
    /// repairs a replica that lost its storage); `0s` disables it.
    #[serde(default = "default_anti_entropy", with = "humantime_serde")]
    pub anti_entropy: Duration,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            secret: None,
            peer_timeout: default_peer_timeout(),
            retry_min: default_retry_min(),
            retry_max: default_retry_max(),
            read_through: true,
            batch: default_batch(),
            anti_entropy: default_anti_entropy(),
        }
    }
}

/// A webhook.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// Where events are POSTed.
    pub url: HttpUrl,
    /// Which events: `push`, `delete`.
    #[serde(default = "default_events")]
    pub events: Vec<EventKind>,
    /// Upper bound for one call.
    #[serde(default = "default_webhook_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// A notification kind.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A manifest or blob was pushed.
    Push,
    /// A manifest, tag or blob was deleted.
    Delete,
}

/// Limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest manifest accepted (the spec suggests 4 MiB).
    #[serde(default = "default_manifest_bytes")]
    pub max_manifest_bytes: u64,
    /// Requests served at once; more are answered 429 at once rather than queued.
    #[serde(default = "default_max_requests")]
    pub max_requests: usize,
    /// On shutdown, how long in-flight requests may still run.
    #[serde(default = "default_drain", with = "humantime_serde")]
    pub drain_deadline: Duration,
    /// Most tags listed in one page when the client gives no `n`.
    #[serde(default = "default_page")]
    pub tags_page: usize,
    /// An upload session untouched this long is closed in memory (its data stays on
    /// disk until `gc`, so the client can still resume it).
    #[serde(default = "default_upload_idle", with = "humantime_serde")]
    pub upload_idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_manifest_bytes: default_manifest_bytes(),
            max_requests: default_max_requests(),
            drain_deadline: default_drain(),
            tags_page: default_page(),
            upload_idle: default_upload_idle(),
        }
    }
}

/// An `http://host:port[/path]` URL, checked when the config is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HttpUrl(String);

impl HttpUrl {
    /// The URL without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for HttpUrl {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let uri: http::Uri = s.parse().map_err(|e| format!("not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(format!("{s:?} must be an http://host:port URL"));
        }
        Ok(HttpUrl(s.trim_end_matches('/').to_owned()))
    }
}

impl From<HttpUrl> for String {
    fn from(u: HttpUrl) -> String {
        u.0
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5000))
}
fn default_true() -> bool {
    true
}
fn default_service() -> String {
    "geoha-registry".to_owned()
}
fn default_token_lifetime() -> Duration {
    Duration::from_secs(300)
}
fn default_peer_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_retry_min() -> Duration {
    Duration::from_millis(100)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(10)
}
fn default_batch() -> usize {
    64
}
fn default_anti_entropy() -> Duration {
    Duration::from_secs(300)
}
fn default_events() -> Vec<EventKind> {
    vec![EventKind::Push, EventKind::Delete]
}
fn default_webhook_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_manifest_bytes() -> u64 {
    4 * 1024 * 1024
}
fn default_max_requests() -> usize {
    1024
}
fn default_drain() -> Duration {
    Duration::from_secs(20)
}
fn default_page() -> usize {
    1000
}
fn default_upload_idle() -> Duration {
    Duration::from_secs(15 * 60)
}

impl Config {
    /// A config with defaults for everything but the replica id and storage (tests).
    pub fn new(replica_id: impl Into<String>, storage: impl Into<PathBuf>) -> Config {
        Config {
            replica_id: replica_id.into(),
            listen: default_listen(),
            storage: storage.into(),
            anonymous_pull: true,
            htpasswd: None,
            token: None,
            peers: Vec::new(),
            replication: ReplicationConfig::default(),
            notifications: Vec::new(),
            limits: Limits::default(),
        }
    }

    /// Parses and validates a config file's text; `path` only labels errors.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Config, RegistryError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let (line, col, key) = match e.span() {
                Some(span) => locate_span(text, span.start),
                None => (0, 0, String::new()),
            };
            RegistryError::Config {
                file: path.to_owned(),
                line,
                col,
                key,
                message: e.message().to_owned(),
            }
        })?;
        cfg.check(Some(text), path)?;
        Ok(cfg)
    }

    /// Checks the values that types alone do not (ids, duplicates, ranges); for a config
    /// built or changed in code, e.g. by command-line overrides. `origin` labels errors.
    pub fn validate(&self, origin: &Path) -> Result<(), RegistryError> {
        self.check(None, origin)
    }

    fn check(&self, text: Option<&str>, path: &Path) -> Result<(), RegistryError> {
        let fail = |key: &str, message: String| {
            let (line, col) = text.map_or((0, 0), |t| locate_key(t, key));
            Err(RegistryError::Config {
                file: path.to_owned(),
                line,
                col,
                key: key.to_owned(),
                message,
            })
        };
        if !valid_replica_id(&self.replica_id) {
            return fail(
                "replica_id",
                format!("{:?} must match [A-Za-z0-9._-]{{1,64}}", self.replica_id),
            );
        }
        if self.storage.as_os_str().is_empty() {
            return fail("storage", "must name a directory".to_owned());
        }
        let mut seen = std::collections::HashSet::new();
        for peer in &self.peers {
            if !valid_replica_id(&peer.id) {
                return fail(
                    "peers.id",
                    format!("{:?} must match [A-Za-z0-9._-]{{1,64}}", peer.id),
                );
            }
            if peer.id == self.replica_id {
                return fail(
                    "peers.id",
                    format!("{:?} is this replica's own id", peer.id),
                );
            }
            if !seen.insert(&peer.id) {
                return fail("peers.id", format!("{:?} is listed twice", peer.id));
            }
        }
        if self.htpasswd.is_some() && !self.peers.is_empty() && self.replication.secret.is_none() {
            return fail(
                "replication.secret",
                "required when htpasswd is set and peers are named: peer endpoints bypass user auth"
                    .to_owned(),
            );
        }
        if let Some(token) = &self.token {
            if token.secret.len() < 16 {
                return fail("token.secret", "must be at least 16 bytes".to_owned());
            }
        }
        if self.limits.max_manifest_bytes == 0
            || self.limits.max_requests == 0
            || self.limits.tags_page == 0
        {
            return fail("limits", "limits must be greater than zero".to_owned());
        }
        if self.replication.batch == 0 {
            return fail("replication.batch", "must be greater than zero".to_owned());
        }
        if self.replication.retry_min > self.replication.retry_max {
            return fail(
                "replication.retry_min",
                "must not exceed retry_max".to_owned(),
            );
        }
        Ok(())
    }
}

pub(crate) fn valid_replica_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Line, column and dotted key of a byte offset: the key is the one assigned on that
/// line (or the word at the offset), prefixed by the enclosing `[table]`.
fn locate_span(text: &str, offset: usize) -> (usize, usize, String) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    let line_text = text[line_start..].lines().next().unwrap_or("");
    let key = match line_text.split_once('=') {
        Some((k, _)) if !line_text.trim_start().starts_with('[') => {
            k.trim().trim_matches('"').to_owned()
        }
        _ => line_text.trim().trim_matches(['[', ']']).to_owned(),
    };
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(['[', ']']).trim().to_owned());
    let key = match table {
        Some(t) if !line_text.trim_start().starts_with('[') => format!("{t}.{key}"),
        _ => key,
    };
    (line, col, key)
}

/// Line and column of the first assignment of `key`'s last component (0, 0 if absent).
fn locate_key(text: &str, key: &str) -> (usize, usize) {
    let last = key.rsplit('.').next().unwrap_or(key);
    for (i, l) in text.lines().enumerate() {
        let t = l.trim_start();
        if let Some((k, _)) = t.split_once('=') {
            if k.trim() == last {
                return (i + 1, l.len() - t.len() + 1);
            }
        }
    }
    (0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let cfg = Config::from_toml_str(
            "replica_id = \"a\"\nstorage = \"/tmp/x\"\n",
            Path::new("r.toml"),
        )
        .unwrap();
        assert_eq!(cfg.listen, default_listen());
        assert!(cfg.anonymous_pull);
        assert_eq!(cfg.limits.max_manifest_bytes, 4 << 20);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = "replica_id = \"a\"\nstorage = \"/x\"\n\n[limits]\nmax_manifest_byte = 3\n";
        let err = Config::from_toml_str(text, Path::new("r.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("r.toml:5:1: limits.max_manifest_byte: unknown field"),
            "{err}"
        );
    }

    #[test]
    fn bad_value_and_bad_peer_url() {
        let text =
            "replica_id = \"a\"\nstorage = \"/x\"\n[[peers]]\nid = \"b\"\nurl = \"ftp://x\"\n";
        let err = Config::from_toml_str(text, Path::new("r.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("r.toml:5:7: peers.url:"), "{err}");
        let text =
            "replica_id = \"a\"\nstorage = \"/x\"\n[[peers]]\nid = \"a\"\nurl = \"http://x:1\"\n";
        let err = Config::from_toml_str(text, Path::new("r.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(":4:1: peers.id:"), "{err}");
    }

    #[test]
    fn documented_examples_parse() {
        let doc = include_str!("config.rs");
        let start = doc.find("/// ```toml\n").unwrap() + "/// ```toml\n".len();
        let end = start + doc[start..].find("/// ```\n").unwrap();
        let text: String = doc[start..end]
            .lines()
            .map(|l| l.trim_start_matches("///").strip_prefix(' ').unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        Config::from_toml_str(&text, Path::new("config.rs")).unwrap();
        let guide = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/registry.md");
        if let Ok(md) = std::fs::read_to_string(guide) {
            let start = md.find("```toml\n").unwrap() + "```toml\n".len();
            let end = start + md[start..].find("```").unwrap();
            Config::from_toml_str(&md[start..end], Path::new("docs/registry.md")).unwrap();
        }
    }

    #[test]
    fn durations_are_humantime() {
        let text =
            "replica_id = \"a\"\nstorage = \"/x\"\n[replication]\npeer_timeout = \"250ms\"\n";
        let cfg = Config::from_toml_str(text, Path::new("r.toml")).unwrap();
        assert_eq!(cfg.replication.peer_timeout, Duration::from_millis(250));
    }
}
