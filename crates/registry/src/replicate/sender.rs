//! The per-peer senders of the change log, their cursors, and log compaction.

use super::*;

/// Records every peer acknowledged are dropped from the log once this many pile up.
const COMPACT_AFTER: u64 = 4096;

/// Compacts the change log now and then, until cancelled.
pub(super) async fn compact_loop(
    rep: Arc<Replication>,
    reg: Arc<Registry>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
        }
        let upto = rep.min_acked(reg.log.head());
        if upto.saturating_sub(reg.log.base()) < COMPACT_AFTER {
            continue;
        }
        let reg2 = Arc::clone(&reg);
        let compacted = reg
            .store
            .blocking(move |store| {
                reg2.save_clock()?;
                // The records about to go are what vouched for their files' names.
                let base = reg2.log.base();
                let dropped = reg2.log.after(base, upto.saturating_sub(base) as usize);
                store.sync_logged(dropped.iter().map(|r| &r.change))?;
                reg2.log.compact(upto)
            })
            .await;
        match compacted {
            Ok(n) => tracing::info!(dropped = n, upto, "compacted the change log"),
            Err(err) => tracing::warn!(%err, "compacting the change log"),
        }
    }
}

pub(super) async fn run_peer(
    rep: Arc<Replication>,
    reg: Arc<Registry>,
    link: Arc<PeerLink>,
    cancel: CancellationToken,
) {
    let mut head = reg.log.subscribe();
    let mut backoff = rep.cfg.retry_min;
    loop {
        let acked = link.state.lock().unwrap_or_else(|p| p.into_inner()).acked;
        let batch = reg.log.after(acked, rep.cfg.batch);
        if batch.is_empty() {
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = head.changed() => if changed.is_err() { return },
            }
            continue;
        }
        let sent = tokio::select! {
            _ = cancel.cancelled() => return,
            r = send_batch(&rep, &reg, &link.peer, &batch) => r,
        };
        match sent {
            Ok(()) => {
                let last = batch.last().map_or(acked, |r| r.seq);
                if let Err(err) = save_cursor(&rep, &reg, &link.peer.id, last).await {
                    tracing::warn!(peer = %link.peer.id, %err, "saving the replication cursor");
                }
                let mut s = link.state.lock().unwrap_or_else(|p| p.into_inner());
                s.acked = last;
                if s.consecutive_failures > 0 {
                    tracing::info!(peer = %link.peer.id, after = s.consecutive_failures, "replication resumed");
                }
                s.consecutive_failures = 0;
                s.last_success_ms = Some(crate::now_ms());
                backoff = rep.cfg.retry_min;
            }
            Err(err) => {
                {
                    let mut s = link.state.lock().unwrap_or_else(|p| p.into_inner());
                    if s.consecutive_failures == 0 {
                        tracing::warn!(peer = %link.peer.id, %err, "replication failing; retrying with backoff");
                    }
                    s.consecutive_failures = s.consecutive_failures.saturating_add(1);
                    s.last_error = Some(err.to_string());
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = next_backoff(backoff, rep.cfg.retry_max);
            }
        }
    }
}

async fn save_cursor(
    rep: &Replication,
    reg: &Registry,
    peer: &str,
    seq: u64,
) -> Result<(), StoreError> {
    let path = rep.cursor_dir.join(peer);
    reg.store
        .blocking(move |s| s.write_atomic(&path, seq.to_string().as_bytes(), Durability::Synced))
        .await
}

async fn send_batch(
    rep: &Replication,
    reg: &Registry,
    peer: &Peer,
    batch: &[Arc<Record>],
) -> Result<(), PeerError> {
    let base = peer.url.as_str();
    let timeout = rep.cfg.peer_timeout;
    let mut ensured = std::collections::HashSet::new();
    for r in batch {
        let Change::Link { digest, state, .. } = &r.change else {
            continue;
        };
        if !state.live() || !ensured.insert(digest.clone()) {
            continue;
        }
        let url = format!("{base}/_geoha/v1/blobs/{digest}");
        let (status, _, _) = rep.client.fetch(Method::HEAD, &url, timeout, 0).await?;
        if status == StatusCode::OK {
            continue;
        }
        let path = reg.store.blob_path(digest);
        if !path.exists() {
            tracing::warn!(%digest, "a logged blob is missing locally (gc?); sending the change alone");
            continue;
        }
        let status = rep.client.put_file(&url, &path, timeout).await?;
        if !status.is_success() {
            return Err(PeerError::Status { url, status });
        }
    }
    let body = ChangeBatch {
        origin: reg.replica_id.clone(),
        changes: batch.iter().map(|r| r.change.clone()).collect(),
    };
    let url = format!("{base}/_geoha/v1/changes");
    let json = serde_json::to_string(&body).map_err(|e| PeerError::Http {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    let status = rep.client.post_json(&url, json, timeout).await?;
    if !status.is_success() {
        return Err(PeerError::Status { url, status });
    }
    Ok(())
}

/// The delay after another failure: double, capped.
fn next_backoff(current: std::time::Duration, max: std::time::Duration) -> std::time::Duration {
    (current * 2).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap() {
        use std::time::Duration;
        let mut s = vec![Duration::from_millis(100)];
        for _ in 0..4 {
            s.push(next_backoff(s[s.len() - 1], Duration::from_millis(500)));
        }
        assert_eq!(
            s.iter().map(|d| d.as_millis()).collect::<Vec<_>>(),
            vec![100, 200, 400, 500, 500]
        );
    }
}
