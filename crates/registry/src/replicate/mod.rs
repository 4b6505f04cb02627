//! Geo-replication between peers.
//!
//! - **Push**: one task per peer ships the change log from that peer's durable cursor,
//!   in batches: first the blobs the changes need (HEAD, then PUT if missing), then the
//!   changes. The cursor advances only after the peer answers 2xx, which it does only
//!   after applying them durably. Failures back off exponentially (`retry_min` ..
//!   `retry_max`) and retry forever, so replicas converge once a partition heals.
//! - **Receive**: changes are merged (links: add/tombstone by stamp; tags: history union,
//!   winner = largest (clock, replica)), so order and repetition do not matter.
//!   Received changes are not forwarded: peers form a full mesh.
//! - **Read-through**: a local miss asks each peer's internal endpoints in turn and keeps
//!   what it gets, verified by digest.
//! - **Anti-entropy**: now and then each peer's full snapshot is merged here, which
//!   repairs lost storage and changes compacted out of the log before a peer saw them.

mod endpoints;
mod fetch;
mod sender;

pub(crate) use endpoints::{
    peer_blob, peer_fetch_blob, peer_fetch_manifest, receive_changes, snapshot, status, PeerApi,
};

use std::path::PathBuf;

use fetch::anti_entropy_loop;
use sender::{compact_loop, run_peer};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt as _;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

use crate::changelog::{read_cursor, Change, Record};
use crate::config::{Peer, ReplicationConfig};
use crate::digest::{Digest, DigestHasher};
use crate::error::{OciCode, OciError, StoreError};
use crate::names::RepoName;
use crate::peer_client::{PeerClient, PeerError, SECRET_HEADER};
use crate::registry::{apply, FoundManifest, Reference, Registry};
use crate::store::{Durability, LinkKind, Store};
use crate::tags::{LinkState, TagHistory, TagVersion};

const LINK_HEADER: &str = "geoha-link";
const TAG_HEADER: &str = "geoha-tag-version";

/// Replication to and from the configured peers.
#[derive(Debug)]
pub(crate) struct Replication {
    peers: Vec<Arc<PeerLink>>,
    client: PeerClient,
    cfg: ReplicationConfig,
    cursor_dir: PathBuf,
    /// With auth on, the peer endpoints need the replication secret (they bypass
    /// user auth); without a secret they are closed.
    auth_enabled: bool,
}

#[derive(Debug)]
struct PeerLink {
    peer: Peer,
    // std Mutex: plain field updates, never held across .await.
    state: Mutex<PeerState>,
}

#[derive(Debug, Default, Clone)]
struct PeerState {
    acked: u64,
    consecutive_failures: u32,
    last_error: Option<String>,
    last_success_ms: Option<u64>,
}

/// One peer's replication state, as reported by `/_geoha/v1/replication` and `/metrics`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PeerStatus {
    pub(crate) id: String,
    pub(crate) url: String,
    /// Last change sequence number the peer acknowledged.
    pub(crate) acked: u64,
    /// Changes logged here and not yet acknowledged.
    pub(crate) queue: u64,
    /// Age of the oldest unacknowledged change (0 when in sync).
    pub(crate) lag_seconds: f64,
    pub(crate) consecutive_failures: u32,
    pub(crate) last_error: Option<String>,
    pub(crate) last_success_ms: Option<u64>,
}

/// The body of `POST /_geoha/v1/changes`.
#[derive(Debug, Serialize, Deserialize)]
struct ChangeBatch {
    origin: String,
    changes: Vec<Change>,
}

impl Replication {
    pub(crate) fn new(
        peers: &[Peer],
        cfg: ReplicationConfig,
        client: PeerClient,
        cursor_dir: PathBuf,
        auth_enabled: bool,
    ) -> Replication {
        let peers = peers
            .iter()
            .map(|p| {
                let acked = read_cursor(cursor_dir.parent().unwrap_or(&cursor_dir), &p.id);
                Arc::new(PeerLink {
                    peer: p.clone(),
                    state: Mutex::new(PeerState {
                        acked,
                        ..PeerState::default()
                    }),
                })
            })
            .collect();
        Replication {
            peers,
            client,
            cfg,
            cursor_dir,
            auth_enabled,
        }
    }

    /// Starts one sender task per peer.
    pub(crate) fn start(
        self: &Arc<Self>,
        reg: &Arc<Registry>,
        tracker: &tokio_util::task::TaskTracker,
        cancel: &CancellationToken,
    ) {
        let (base, head) = (reg.log.base(), reg.log.head());
        for link in &self.peers {
            let mut s = link.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.acked > head {
                // The log was lost or replaced: nothing beyond its head can be sent.
                tracing::warn!(peer = %link.peer.id, cursor = s.acked, head, "cursor beyond the log; resetting");
                s.acked = head;
            } else if s.acked < base {
                tracing::warn!(peer = %link.peer.id, cursor = s.acked, base, "changes before the log's base were compacted; the peer gets the rest");
            }
        }
        tracker.spawn(compact_loop(
            Arc::clone(self),
            Arc::clone(reg),
            cancel.clone(),
        ));
        if !self.cfg.anti_entropy.is_zero() {
            for link in &self.peers {
                tracker.spawn(anti_entropy_loop(
                    Arc::clone(self),
                    Arc::clone(reg),
                    link.peer.clone(),
                    cancel.clone(),
                ));
            }
        }
        for link in &self.peers {
            tracker.spawn(run_peer(
                Arc::clone(self),
                Arc::clone(reg),
                Arc::clone(link),
                cancel.clone(),
            ));
        }
    }

    pub(crate) fn status(&self, reg: &Registry) -> Vec<PeerStatus> {
        let head = reg.log.head();
        let now = crate::now_ms();
        self.peers
            .iter()
            .map(|l| {
                let s = l.state.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let lag_seconds = if s.acked < head {
                    reg.log
                        .get(s.acked + 1)
                        .map_or(0.0, |r| now.saturating_sub(r.at_ms) as f64 / 1000.0)
                } else {
                    0.0
                };
                PeerStatus {
                    id: l.peer.id.clone(),
                    url: l.peer.url.as_str().to_owned(),
                    acked: s.acked,
                    queue: head.saturating_sub(s.acked),
                    lag_seconds,
                    consecutive_failures: s.consecutive_failures,
                    last_error: s.last_error,
                    last_success_ms: s.last_success_ms,
                }
            })
            .collect()
    }

    pub(crate) fn secret_ok(&self, headers: &HeaderMap) -> bool {
        match &self.cfg.secret {
            None => !self.auth_enabled,
            Some(s) => headers
                .get(SECRET_HEADER)
                .is_some_and(|v| constant_time_eq(v.as_bytes(), s.as_bytes())),
        }
    }

    /// The lowest cursor of all peers (the head when there are none).
    fn min_acked(&self, head: u64) -> u64 {
        self.peers
            .iter()
            .map(|l| l.state.lock().unwrap_or_else(|p| p.into_inner()).acked)
            .min()
            .unwrap_or(head)
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| format!("missing header {name}"))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn insert_json<T: Serialize>(h: &mut HeaderMap, name: &'static str, value: &T) {
    if let Ok(v) = serde_json::to_string(value).unwrap_or_default().parse() {
        h.insert(name, v);
    }
}
