//! Webhook notifications on push and delete (ACR-style per-replica events): events
//! go through a bounded queue to one sender task; a full queue drops (and counts) an
//! event rather than slowing a push.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{EventKind, Webhook};
use crate::digest::Digest;
use crate::metrics::Metrics;
use crate::names::RepoName;
use crate::peer_client::PeerClient;

const QUEUE: usize = 1024;
const ATTEMPTS: u32 = 3;

/// One event, shaped like ACR's webhook payload: `{id, timestamp, action, target:
/// {mediaType, size, digest, length, repository, tag}}`, plus `source.replica`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NotifyEvent {
    #[serde(skip)]
    kind: EventKind,
    id: String,
    timestamp: String,
    action: &'static str,
    target: Target,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Target {
    #[serde(skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    length: Option<u64>,
    repository: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<String>,
}

impl NotifyEvent {
    fn new(kind: EventKind, target: Target) -> NotifyEvent {
        NotifyEvent {
            kind,
            id: crate::names::new_upload_id(),
            timestamp: crate::auth::rfc3339(crate::now_ms() / 1000),
            action: match kind {
                EventKind::Push => "push",
                EventKind::Delete => "delete",
            },
            target,
        }
    }

    pub(crate) fn push(
        repo: &RepoName,
        digest: &Digest,
        media_type: Option<&str>,
        size: u64,
        tag: Option<&str>,
    ) -> NotifyEvent {
        NotifyEvent::new(
            EventKind::Push,
            Target {
                media_type: media_type.map(str::to_owned),
                size: Some(size),
                digest: Some(digest.to_string()),
                length: Some(size),
                repository: repo.to_string(),
                tag: tag.map(str::to_owned),
            },
        )
    }

    pub(crate) fn delete(
        repo: &RepoName,
        digest: Option<&Digest>,
        tag: Option<&str>,
    ) -> NotifyEvent {
        NotifyEvent::new(
            EventKind::Delete,
            Target {
                media_type: None,
                size: None,
                digest: digest.map(ToString::to_string),
                length: None,
                repository: repo.to_string(),
                tag: tag.map(str::to_owned),
            },
        )
    }
}

/// The sending side, held by the registry.
#[derive(Debug)]
pub(crate) struct Notifier {
    tx: Option<mpsc::Sender<NotifyEvent>>,
    metrics: Arc<Metrics>,
}

impl Notifier {
    /// Starts the sender task (none when no webhook is configured).
    pub(crate) fn start(
        hooks: Vec<Webhook>,
        replica: String,
        client: PeerClient,
        metrics: Arc<Metrics>,
        tracker: &tokio_util::task::TaskTracker,
        cancel: CancellationToken,
    ) -> Notifier {
        if hooks.is_empty() {
            return Notifier { tx: None, metrics };
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        tracker.spawn(deliver(
            hooks,
            replica,
            client,
            Arc::clone(&metrics),
            rx,
            cancel,
        ));
        Notifier {
            tx: Some(tx),
            metrics,
        }
    }

    pub(crate) fn send(&self, event: NotifyEvent) {
        if let Some(tx) = &self.tx {
            if tx.try_send(event).is_err() {
                self.metrics.notifications_dropped.inc();
            }
        }
    }
}

async fn deliver(
    hooks: Vec<Webhook>,
    replica: String,
    client: PeerClient,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<NotifyEvent>,
    cancel: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            e = rx.recv() => match e { Some(e) => e, None => return },
        };
        for hook in hooks.iter().filter(|h| h.events.contains(&event.kind)) {
            let mut body = serde_json::to_value(&event).unwrap_or_default();
            body["source"] = serde_json::json!({ "replica": replica });
            let body = body.to_string();
            let mut delay = Duration::from_millis(100);
            let mut sent = false;
            for attempt in 1..=ATTEMPTS {
                match client
                    .post_json(hook.url.as_str(), body.clone(), hook.timeout)
                    .await
                {
                    Ok(status) if status.is_success() => {
                        sent = true;
                        break;
                    }
                    Ok(status) => {
                        tracing::warn!(url = hook.url.as_str(), %status, attempt, "webhook refused")
                    }
                    Err(err) => {
                        tracing::warn!(url = hook.url.as_str(), %err, attempt, "webhook failed")
                    }
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay *= 4;
            }
            if sent {
                metrics.notifications_sent.inc();
            } else {
                metrics.notifications_failed.inc();
            }
        }
    }
}
