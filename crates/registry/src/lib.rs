//! geoha-registry: an OCI Distribution v1.1 registry whose replicas replicate to each
//! other with a stated rule (see `docs/registry.md`).
//!
//! # Layout
//! - `config`: the TOML config, parsed once into typed values.
//! - `api`: HTTP routes (`/v2/...`, `/token`, `/metrics`, `/_geoha/v1/...`).
//! - `auth`: htpasswd bcrypt basic auth, bearer tokens, anonymous pull.
//! - `registry`: the operations between HTTP and storage (stamp, log, apply, notify).
//! - `store`: the content-addressed filesystem store (fsync + rename, always).
//! - `upload`: upload sessions, hashed while streaming.
//! - `manifest`: manifest media types, references and subjects.
//! - `digest`, `names`: validated digests, repository names and tags (no traversal).
//! - `tags`: `TagClock` (hybrid logical clock), `Stamp`, and the merge rules.
//! - `changelog`: the durable write-ahead change log that replication ships.
//! - `replicate/`: `sender` (per-peer log shipping, compaction), `endpoints` (the peer
//!   API), `fetch` (read-through and anti-entropy).
//! - `peer_client`: outgoing HTTP with deadlines; `notify`: webhooks; `metrics`.
//! - `gc`: garbage collection with a grace period.
#![forbid(unsafe_code)]

mod api;
mod auth;
mod changelog;
mod config;
mod digest;
mod error;
mod gc;
mod manifest;
mod metrics;
mod names;
mod notify;
mod peer_client;
mod registry;
mod replicate;
mod store;
mod tags;
mod upload;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{
    Config, EventKind, HttpUrl, Limits, Peer, ReplicationConfig, TokenConfig, Webhook,
};
pub use digest::{Algorithm, Digest, DigestError};
pub use error::{OciCode, OciError, RegistryError, StoreError};
pub use gc::{gc, gc_plan, GcReport};
pub use tags::{Stamp, TagClock};

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Closes idle upload sessions now and then, until cancelled.
async fn sweep_uploads(
    reg: Arc<registry::Registry>,
    idle: std::time::Duration,
    cancel: CancellationToken,
) {
    let period = (idle / 4).max(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let n = reg.uploads.sweep(idle);
        if n > 0 {
            tracing::info!(n, "closed idle upload sessions");
        }
    }
}

/// Serves the registry on a bound listener until `shutdown` completes, then stops
/// accepting, lets in-flight requests finish (at most `limits.drain_deadline`), and
/// stops replication and notification tasks. Never binds, reads env or exits.
pub async fn run(
    cfg: Arc<Config>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RegistryError> {
    let root = cfg.storage.clone();
    let (store, log) = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
        let store = store::Store::open(&root)?;
        let log = changelog::ChangeLog::open(&root.join("replication"))?;
        Ok((store, log))
    })
    .await
    .map_err(|e| StoreError::Join(e.to_string()))??;
    let store = Arc::new(store);
    let auth = Arc::new(auth::Auth::from_config(&cfg)?);
    if !auth.enabled() {
        tracing::warn!("no htpasswd configured: anyone may push (lab mode)");
    }
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let metrics = Arc::new(metrics::Metrics::default());
    let client =
        peer_client::PeerClient::new(cfg.replication.secret.clone(), cfg.replication.peer_timeout);
    let notifier = notify::Notifier::start(
        cfg.notifications.clone(),
        cfg.replica_id.clone(),
        client.clone(),
        Arc::clone(&metrics),
        &tracker,
        cancel.clone(),
    );
    let reg = Arc::new(registry::Registry {
        replica_id: cfg.replica_id.clone(),
        uploads: upload::Uploads::new(Arc::clone(&store)),
        store,
        log: Arc::new(log),
        clock: tags::Clock::default(),
        limits: cfg.limits.clone(),
        metrics,
        notifier,
    });
    let reg2 = Arc::clone(&reg);
    let replayed = tokio::task::spawn_blocking(move || reg2.replay())
        .await
        .map_err(|e| StoreError::Join(e.to_string()))??;
    let cursor_dir = cfg.storage.join("replication").join("cursors");
    let rep = Arc::new(replicate::Replication::new(
        &cfg.peers,
        cfg.replication.clone(),
        client,
        cursor_dir,
        auth.enabled(),
    ));
    rep.start(&reg, &tracker, &cancel);
    tracker.spawn(sweep_uploads(
        Arc::clone(&reg),
        cfg.limits.upload_idle,
        cancel.clone(),
    ));

    let app = api::router(Arc::clone(&reg), Arc::clone(&rep), auth);
    let addr = listener.local_addr().map_err(RegistryError::Serve)?;
    tracing::info!(%addr, replica = %cfg.replica_id, peers = cfg.peers.len(), replayed, "listening addr={addr}");

    let fired = Arc::new(tokio::sync::Notify::new());
    let fired2 = Arc::clone(&fired);
    // Small responses (headers, then a short body) must not wait for delayed ACKs.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(%err, "TCP_NODELAY");
        }
    });
    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        fired2.notify_one();
    });
    let deadline = cfg.limits.drain_deadline;
    let result = tokio::select! {
        r = serve => r.map_err(RegistryError::Serve),
        _ = async { fired.notified().await; tokio::time::sleep(deadline).await } => {
            tracing::warn!(?deadline, "drain deadline passed; cutting the remaining requests");
            Ok(())
        }
    };
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(std::time::Duration::from_secs(5), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks did not stop within 5s");
    }
    tracing::info!("registry stopped");
    result
}
