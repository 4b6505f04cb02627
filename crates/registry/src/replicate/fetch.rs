//! Read-through (a local miss fetched from peers) and anti-entropy (a peer's whole
//! state merged here), sharing one verified blob download.

use super::*;

impl Replication {
    // === read-through ===

    /// Looks a manifest up at the peers and keeps it locally.
    pub(crate) async fn read_through_manifest(
        &self,
        reg: &Registry,
        repo: &RepoName,
        reference: &Reference,
    ) -> Option<FoundManifest> {
        if !self.cfg.read_through || self.peers.is_empty() {
            return None;
        }
        let refstr = match reference {
            Reference::Tag(t) => t.clone(),
            Reference::Digest(d) => d.to_string(),
        };
        for link in &self.peers {
            let url = format!(
                "{}/_geoha/v1/manifest?repo={repo}&reference={refstr}",
                link.peer.url.as_str()
            );
            let limit = reg.limits.max_manifest_bytes as usize + 1;
            let (status, headers, bytes) = match self
                .client
                .fetch(Method::GET, &url, self.cfg.peer_timeout, limit)
                .await
            {
                Ok(r) => r,
                Err(err) => {
                    tracing::debug!(%err, "read-through manifest");
                    continue;
                }
            };
            if status != StatusCode::OK {
                continue;
            }
            match self
                .keep_manifest(reg, repo, reference, &headers, bytes)
                .await
            {
                Ok(found) => {
                    reg.metrics.read_through_hits.inc();
                    return Some(found);
                }
                Err(err) => {
                    tracing::warn!(peer = %link.peer.id, %err, "read-through manifest rejected")
                }
            }
        }
        reg.metrics.read_through_misses.inc();
        None
    }

    async fn keep_manifest(
        &self,
        reg: &Registry,
        repo: &RepoName,
        reference: &Reference,
        headers: &HeaderMap,
        bytes: bytes::Bytes,
    ) -> Result<FoundManifest, String> {
        let digest: Digest = header_str(headers, "docker-content-digest")?
            .parse()
            .map_err(|e| format!("{e}"))?;
        if Digest::of(digest.algorithm(), &bytes) != digest {
            return Err(format!("body does not match {digest}"));
        }
        if let Reference::Digest(d) = reference {
            if *d != digest {
                return Err(format!("asked for {d}, got {digest}"));
            }
        }
        let link: LinkState =
            serde_json::from_str(header_str(headers, LINK_HEADER)?).map_err(|e| e.to_string())?;
        let mut changes = vec![Change::Link {
            repo: repo.as_str().to_owned(),
            kind: LinkKind::Manifest,
            digest: digest.clone(),
            state: link.clone(),
        }];
        if let Reference::Tag(tag) = reference {
            let v: TagVersion = serde_json::from_str(header_str(headers, TAG_HEADER)?)
                .map_err(|e| e.to_string())?;
            reg.clock.observe(v.stamp.clock);
            changes.push(Change::Tag {
                repo: repo.as_str().to_owned(),
                tag: tag.clone(),
                version: v,
            });
        }
        reg.clock.observe(link.added.clock);
        let d2 = digest.clone();
        reg.store
            .blocking(move |s| {
                s.put_blob_bytes(&d2, &bytes)?;
                for c in &changes {
                    apply(s, c)?;
                }
                Ok(())
            })
            .await
            .map_err(|e| e.to_string())?;
        // The peer's view may still be older than ours (a local tombstone): re-check.
        reg.find_manifest(repo, reference)
            .await
            .map_err(|e| format!("{e:?}"))?
            .ok_or_else(|| "deleted locally".to_owned())
    }

    /// Looks a blob up at the peers and keeps it locally; returns its link.
    pub(crate) async fn read_through_blob(
        &self,
        reg: &Registry,
        repo: &RepoName,
        digest: &Digest,
    ) -> Option<LinkState> {
        if !self.cfg.read_through || self.peers.is_empty() {
            return None;
        }
        for link in &self.peers {
            let url = format!(
                "{}/_geoha/v1/blob?repo={repo}&digest={digest}",
                link.peer.url.as_str()
            );
            match self.fetch_blob(reg, repo, digest, &url).await {
                Ok(Some(l)) => {
                    reg.metrics.read_through_hits.inc();
                    return Some(l);
                }
                Ok(None) => {}
                Err(err) => tracing::warn!(peer = %link.peer.id, %err, "read-through blob failed"),
            }
        }
        reg.metrics.read_through_misses.inc();
        None
    }

    async fn fetch_blob(
        &self,
        reg: &Registry,
        repo: &RepoName,
        digest: &Digest,
        url: &str,
    ) -> Result<Option<LinkState>, String> {
        let timeout = self.cfg.peer_timeout;
        let resp = self
            .client
            .get_stream(url, timeout)
            .await
            .map_err(|e| e.to_string())?;
        if resp.status() != StatusCode::OK {
            return Ok(None);
        }
        let link: LinkState = serde_json::from_str(header_str(resp.headers(), LINK_HEADER)?)
            .map_err(|e| e.to_string())?;
        keep_blob(reg, resp, digest, url, timeout).await?;
        reg.clock.observe(link.added.clock);
        let change = Change::Link {
            repo: repo.as_str().to_owned(),
            kind: LinkKind::Layer,
            digest: digest.clone(),
            state: link,
        };
        reg.store
            .blocking(move |s| apply(s, &change))
            .await
            .map_err(|e| e.to_string())?;
        reg.blob_link(repo, digest)
            .await
            .map_err(|e| format!("{e:?}"))
    }

    // === anti-entropy ===

    /// Pulls a peer's whole state and merges what is missing here, fetching the blobs
    /// it needs first. This repairs what the change log cannot: a replica whose storage
    /// was lost, or a peer that joined after the log was compacted. Returns how many
    /// changes were applied.
    async fn anti_entropy(&self, reg: &Registry, peer: &Peer) -> Result<usize, String> {
        let url = format!("{}/_geoha/v1/snapshot", peer.url.as_str());
        let (status, _, body) = self
            .client
            .fetch(Method::GET, &url, self.cfg.peer_timeout, SNAPSHOT_LIMIT)
            .await
            .map_err(|e| e.to_string())?;
        if status != StatusCode::OK {
            return Err(format!("{url}: answered {status}"));
        }
        let snapshot: ChangeBatch = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let missing = reg
            .store
            .blocking(move |s| {
                let mut out = Vec::new();
                for c in snapshot.changes {
                    if would_change(s, &c)? {
                        out.push(c);
                    }
                }
                Ok(out)
            })
            .await
            .map_err(|e| e.to_string())?;
        let mut applied = 0;
        for c in missing {
            match &c {
                Change::Link { digest, state, .. } => {
                    reg.clock.observe(state.added.clock);
                    if state.live() && reg.store.blob_size(digest).is_none() {
                        let url = format!("{}/_geoha/v1/blobs/{digest}", peer.url.as_str());
                        let resp = self
                            .client
                            .get_stream(&url, self.cfg.peer_timeout)
                            .await
                            .map_err(|e| e.to_string())?;
                        if resp.status() != StatusCode::OK {
                            // The peer lists a link whose content it lacks (collected).
                            continue;
                        }
                        keep_blob(reg, resp, digest, &url, self.cfg.peer_timeout).await?;
                    }
                }
                Change::Tag { version, .. } => reg.clock.observe(version.stamp.clock),
            }
            reg.store
                .blocking(move |s| apply(s, &c))
                .await
                .map_err(|e| e.to_string())?;
            applied += 1;
        }
        Ok(applied)
    }
}

/// Largest snapshot accepted from a peer.
const SNAPSHOT_LIMIT: usize = 256 << 20;

/// Whether merging `c` would change this store.
fn would_change(store: &Store, c: &Change) -> Result<bool, StoreError> {
    Ok(match c {
        Change::Link {
            repo,
            kind,
            digest,
            state,
        } => {
            let Some(repo) = RepoName::parse(repo) else {
                return Ok(false);
            };
            match store.link(&repo, *kind, digest)? {
                None => true,
                Some(mut cur) => cur.merge(state),
            }
        }
        Change::Tag { repo, tag, version } => {
            let Some(repo) = RepoName::parse(repo) else {
                return Ok(false);
            };
            match store.tag(&repo, tag)? {
                None => true,
                Some(mut h) => h.merge(version.clone()),
            }
        }
    })
}

/// Streams a peer's blob into a temp file while hashing it, then commits it if the
/// digest matches. `timeout` bounds each stall, not the whole transfer.
async fn keep_blob(
    reg: &Registry,
    resp: hyper::Response<hyper::body::Incoming>,
    digest: &Digest,
    url: &str,
    timeout: std::time::Duration,
) -> Result<(), String> {
    let tmp = reg.store.tmp_path();
    let result = async {
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| e.to_string())?;
        let mut hasher = DigestHasher::new(digest.algorithm());
        let mut body = resp.into_body();
        loop {
            let frame = match tokio::time::timeout(timeout, body.frame()).await {
                Err(_) => return Err(format!("{url}: stalled for {timeout:?}")),
                Ok(None) => break,
                Ok(Some(f)) => f.map_err(|e| e.to_string())?,
            };
            if let Ok(data) = frame.into_data() {
                hasher.update(&data);
                file.write_all(&data).await.map_err(|e| e.to_string())?;
            }
        }
        // Written, not yet synced: `commit_blob_file` syncs it.
        file.flush().await.map_err(|e| e.to_string())?;
        if hasher.finish() != *digest {
            return Err(format!("{url}: body does not match {digest}"));
        }
        let (t2, d2) = (tmp.clone(), digest.clone());
        reg.store
            .blocking(move |s| {
                if s.blob_size(&d2).is_none() {
                    s.commit_blob_file(&t2, &d2)?;
                }
                Ok(())
            })
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    let _ = tokio::fs::remove_file(&tmp).await;
    result
}

/// Runs an anti-entropy pass against one peer now and then, until cancelled.
pub(super) async fn anti_entropy_loop(
    rep: Arc<Replication>,
    reg: Arc<Registry>,
    peer: Peer,
    cancel: CancellationToken,
) {
    let every = rep.cfg.anti_entropy;
    // A first pass soon after start repairs a replica that came back empty.
    let mut wait = every.min(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = every;
        match rep.anti_entropy(&reg, &peer).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(peer = %peer.id, applied = n, "anti-entropy merged changes"),
            Err(err) => tracing::debug!(peer = %peer.id, %err, "anti-entropy pass failed"),
        }
    }
}
