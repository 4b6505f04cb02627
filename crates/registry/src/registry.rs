//! The registry's operations, between HTTP and storage: stamping local writes with the
//! replica's clock, logging them durably, applying them to the store, notifying
//! webhooks, and falling back to peers (read-through) on a local miss. Handlers in
//! `api` call these; these never build HTTP responses except as [`OciError`]s.

use std::sync::Arc;

use crate::changelog::{Change, ChangeLog};
use crate::config::Limits;
use crate::digest::Digest;
use crate::error::{OciCode, OciError, StoreError};
use crate::manifest::{self, ParsedManifest};
use crate::metrics::Metrics;
use crate::names::RepoName;
use crate::notify::{Notifier, NotifyEvent};
use crate::store::{Durability, LinkKind, Store};
use crate::tags::{Clock, LinkState, Stamp, TagHistory, TagVersion};
use crate::upload::Uploads;

/// A manifest or tag reference.
#[derive(Debug, Clone)]
pub(crate) enum Reference {
    Tag(String),
    Digest(Digest),
}

/// What a manifest lookup found.
#[derive(Debug, Clone)]
pub(crate) struct FoundManifest {
    pub(crate) digest: Digest,
    pub(crate) link: LinkState,
}

/// The replica's state shared by handlers and background tasks.
#[derive(Debug)]
pub(crate) struct Registry {
    pub(crate) replica_id: String,
    pub(crate) store: Arc<Store>,
    pub(crate) log: Arc<ChangeLog>,
    pub(crate) clock: Clock,
    pub(crate) uploads: Uploads,
    pub(crate) limits: Limits,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) notifier: Notifier,
}

impl Registry {
    pub(crate) fn stamp(&self) -> Stamp {
        Stamp {
            clock: self.clock.tick(),
            replica: self.replica_id.clone(),
        }
    }

    /// Logs local changes durably, then applies them (the write-ahead order).
    pub(crate) async fn commit(&self, changes: Vec<Change>) -> Result<(), OciError> {
        let log = Arc::clone(&self.log);
        self.store
            .blocking(move |store| {
                let records = log.append(changes)?;
                for r in records {
                    apply_logged(store, &r.change)?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// Replays the whole log into the store (start-up; idempotent).
    pub(crate) fn replay(&self) -> Result<usize, StoreError> {
        // The clock never goes back, even when the records that carried the latest
        // reading were compacted away and the wall clock was set back.
        let saved = self.store.root().join("replication").join("clock");
        if let Some(c) = crate::store::read_json::<crate::tags::TagClock>(&saved)? {
            self.clock.observe(c);
        }
        let records = self.log.all();
        for r in &records {
            match &r.change {
                Change::Tag { version, .. } => self.clock.observe(version.stamp.clock),
                Change::Link { state, .. } => {
                    self.clock.observe(state.added.clock);
                    if let Some(d) = &state.deleted {
                        self.clock.observe(d.clock);
                    }
                }
            }
            apply_logged(&self.store, &r.change)?;
            // A crash between a manifest's link and its referrer index leaves the link
            // unchanged for the replay above, which then indexes nothing: index every
            // live manifest of the log again (`put_referrer` skips existing entries).
            if let Change::Link {
                repo,
                kind: LinkKind::Manifest,
                digest,
                state,
            } = &r.change
            {
                if let (true, Some(repo)) = (state.live(), RepoName::parse(repo)) {
                    index_referrer(&self.store, &repo, digest, state)?;
                }
            }
        }
        Ok(records.len())
    }

    /// Saves the clock's reading (before the log is compacted).
    pub(crate) fn save_clock(&self) -> Result<(), StoreError> {
        let path = self.store.root().join("replication").join("clock");
        self.store
            .write_json(&path, &self.clock.last(), Durability::Synced)
    }

    // === blobs ===

    /// Links a stored blob into `repo` (after an upload or a mount).
    pub(crate) async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
    ) -> Result<(), OciError> {
        let state = LinkState {
            media_type: None,
            size,
            added: self.stamp(),
            deleted: None,
        };
        self.commit(vec![Change::Link {
            repo: repo.as_str().to_owned(),
            kind: LinkKind::Layer,
            digest: digest.clone(),
            state,
        }])
        .await?;
        self.metrics.blobs_pushed.inc();
        self.notifier
            .send(NotifyEvent::push(repo, digest, None, size, None));
        Ok(())
    }

    /// The blob's link in `repo`, if present locally.
    pub(crate) async fn blob_link(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<LinkState>, OciError> {
        let (r, d) = (repo.clone(), digest.clone());
        let link = self
            .store
            .blocking(move |s| {
                let link = s.live_link(&r, LinkKind::Layer, &d)?;
                // A manifest is also a blob of its repository.
                let link = match link {
                    Some(l) => Some(l),
                    None => s.live_link(&r, LinkKind::Manifest, &d)?,
                };
                Ok(link.filter(|_| s.blob_size(&d).is_some()))
            })
            .await?;
        Ok(link)
    }

    pub(crate) async fn delete_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<(), OciError> {
        self.tombstone_link(repo, LinkKind::Layer, digest, OciCode::BlobUnknown)
            .await
    }

    /// Deletes a blob or manifest from a repository: a tombstone with a fresh stamp
    /// (it replicates), then the `delete` notification; `unknown` when not linked.
    async fn tombstone_link(
        &self,
        repo: &RepoName,
        kind: LinkKind,
        digest: &Digest,
        unknown: OciCode,
    ) -> Result<(), OciError> {
        let (r, d) = (repo.clone(), digest.clone());
        let link = self
            .store
            .blocking(move |s| s.live_link(&r, kind, &d))
            .await?;
        let Some(mut link) = link else {
            return Err(OciError::new(unknown));
        };
        link.deleted = Some(self.stamp());
        self.commit(vec![Change::Link {
            repo: repo.as_str().to_owned(),
            kind,
            digest: digest.clone(),
            state: link,
        }])
        .await?;
        self.notifier
            .send(NotifyEvent::delete(repo, Some(digest), None));
        Ok(())
    }

    // === manifests ===

    /// Validates and stores a pushed manifest, tagging it with `reference` if that is a
    /// tag and with every one of `extra_tags` (the `?tag=` query parameters of v1.1).
    pub(crate) async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        extra_tags: &[String],
        bytes: bytes::Bytes,
        content_type: Option<&str>,
    ) -> Result<(Digest, ParsedManifest), OciError> {
        let algorithm = match reference {
            Reference::Digest(d) => d.algorithm(),
            Reference::Tag(_) => crate::digest::Algorithm::Sha256,
        };
        let digest = Digest::of(algorithm, &bytes);
        if let Reference::Digest(d) = reference {
            if *d != digest {
                return Err(OciError::new(OciCode::DigestInvalid)
                    .detail(format!("manifest has digest {digest}, not {d}")));
            }
        }
        let parsed = manifest::parse(&bytes, content_type)?;
        // Every referenced blob and child manifest must already be in this repository.
        let (r, p) = (repo.clone(), parsed.clone());
        let missing = self
            .store
            .blocking(move |s| {
                for d in &p.blobs {
                    if s.live_link(&r, LinkKind::Layer, d)?.is_none() || s.blob_size(d).is_none() {
                        return Ok(Some(d.clone()));
                    }
                }
                for d in &p.manifests {
                    if s.live_link(&r, LinkKind::Manifest, d)?.is_none() {
                        return Ok(Some(d.clone()));
                    }
                }
                Ok(None)
            })
            .await?;
        if let Some(d) = missing {
            return Err(
                OciError::new(OciCode::ManifestBlobUnknown).detail(format!("{d} is not in {repo}"))
            );
        }
        let (d2, b2) = (digest.clone(), bytes.clone());
        self.store
            .blocking(move |s| s.put_blob_bytes(&d2, &b2))
            .await?;
        let size = bytes.len() as u64;
        let mut changes = vec![Change::Link {
            repo: repo.as_str().to_owned(),
            kind: LinkKind::Manifest,
            digest: digest.clone(),
            state: LinkState {
                media_type: Some(parsed.media_type.clone()),
                size,
                added: self.stamp(),
                deleted: None,
            },
        }];
        let mut tags: Vec<&String> = extra_tags.iter().collect();
        if let Reference::Tag(t) = reference {
            tags.insert(0, t);
        }
        for t in &tags {
            changes.push(Change::Tag {
                repo: repo.as_str().to_owned(),
                tag: (*t).clone(),
                version: TagVersion {
                    digest: Some(digest.clone()),
                    stamp: self.stamp(),
                },
            });
        }
        self.commit(changes).await?;
        self.metrics.manifests_pushed.inc();
        if tags.is_empty() {
            self.notifier.send(NotifyEvent::push(
                repo,
                &digest,
                Some(&parsed.media_type),
                size,
                None,
            ));
        }
        for t in tags {
            self.notifier.send(NotifyEvent::push(
                repo,
                &digest,
                Some(&parsed.media_type),
                size,
                Some(t),
            ));
        }
        Ok((digest, parsed))
    }

    /// Finds a manifest locally.
    pub(crate) async fn find_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<FoundManifest>, OciError> {
        let (r, reference) = (repo.clone(), reference.clone());
        let found = self
            .store
            .blocking(move |s| {
                let digest = match reference {
                    Reference::Digest(d) => d,
                    Reference::Tag(t) => {
                        match s.tag(&r, &t)?.as_ref().and_then(TagHistory::current_digest) {
                            Some(d) => d.clone(),
                            None => return Ok(None),
                        }
                    }
                };
                let link = s.live_link(&r, LinkKind::Manifest, &digest)?;
                Ok(link
                    .filter(|_| s.blob_size(&digest).is_some())
                    .map(|link| FoundManifest { digest, link }))
            })
            .await?;
        Ok(found)
    }

    pub(crate) async fn delete_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<(), OciError> {
        match reference {
            Reference::Tag(tag) => {
                let (r, t) = (repo.clone(), tag.clone());
                let history = self.store.blocking(move |s| s.tag(&r, &t)).await?;
                if history
                    .as_ref()
                    .and_then(TagHistory::current_digest)
                    .is_none()
                {
                    return Err(OciError::new(OciCode::ManifestUnknown)
                        .detail(format!("tag {tag} is unknown")));
                }
                self.commit(vec![Change::Tag {
                    repo: repo.as_str().to_owned(),
                    tag: tag.clone(),
                    version: TagVersion {
                        digest: None,
                        stamp: self.stamp(),
                    },
                }])
                .await?;
                self.notifier
                    .send(NotifyEvent::delete(repo, None, Some(tag)));
            }
            Reference::Digest(digest) => {
                self.tombstone_link(repo, LinkKind::Manifest, digest, OciCode::ManifestUnknown)
                    .await?;
            }
        }
        Ok(())
    }

    pub(crate) async fn tag_history(
        &self,
        repo: &RepoName,
        tag: &str,
    ) -> Result<Option<TagHistory>, OciError> {
        let (r, t) = (repo.clone(), tag.to_owned());
        Ok(self.store.blocking(move |s| s.tag(&r, &t)).await?)
    }

    pub(crate) async fn tags(&self, repo: &RepoName) -> Result<Option<Vec<String>>, OciError> {
        let r = repo.clone();
        let tags = self
            .store
            .blocking(move |s| {
                if !s.repo_dir(&r).is_dir() {
                    return Ok(None);
                }
                s.live_tags(&r).map(Some)
            })
            .await?;
        Ok(tags)
    }

    /// Descriptors of live manifests whose subject is `subject`.
    pub(crate) async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<serde_json::Value>, OciError> {
        let (r, d) = (repo.clone(), subject.clone());
        let list = self
            .store
            .blocking(move |s| {
                let mut out = Vec::new();
                for (referrer, desc) in s.referrers(&r, &d)? {
                    if s.live_link(&r, LinkKind::Manifest, &referrer)?.is_some() {
                        out.push(desc);
                    }
                }
                Ok(out)
            })
            .await?;
        Ok(list)
    }
}

/// Applies one change that is not in the local change log (received from a peer, read
/// through, anti-entropy) to the store's files, durably: a merge, so repeats and
/// reorderings are harmless. A newly present manifest with a `subject` is indexed for
/// the referrers API.
pub(crate) fn apply(store: &Store, change: &Change) -> Result<(), StoreError> {
    apply_with(store, change, Durability::Synced)
}

/// Applies a change from the local change log: like [`apply`], but the files' names
/// are left for the log to vouch for (see [`Durability::Logged`]).
pub(crate) fn apply_logged(store: &Store, change: &Change) -> Result<(), StoreError> {
    apply_with(store, change, Durability::Logged)
}

fn apply_with(store: &Store, change: &Change, durability: Durability) -> Result<(), StoreError> {
    match change {
        Change::Link {
            repo,
            kind,
            digest,
            state,
        } => {
            let Some(repo) = RepoName::parse(repo) else {
                return Ok(());
            };
            let merged = store.merge_link(&repo, *kind, digest, state, durability)?;
            if *kind == LinkKind::Manifest && merged.is_some() {
                index_referrer(store, &repo, digest, state)?;
            }
        }
        Change::Tag { repo, tag, version } => {
            let Some(repo) = RepoName::parse(repo) else {
                return Ok(());
            };
            if crate::names::valid_tag(tag) {
                store.merge_tag(&repo, tag, version.clone(), durability)?;
            }
        }
    }
    Ok(())
}

fn index_referrer(
    store: &Store,
    repo: &RepoName,
    digest: &Digest,
    state: &LinkState,
) -> Result<(), StoreError> {
    let Ok(bytes) = std::fs::read(store.blob_path(digest)) else {
        return Ok(());
    };
    let Ok(parsed) = manifest::parse(&bytes, state.media_type.as_deref()) else {
        return Ok(());
    };
    let Some(subject) = &parsed.subject else {
        return Ok(());
    };
    let mut desc = serde_json::json!({
        "mediaType": parsed.media_type,
        "digest": digest.to_string(),
        "size": bytes.len(),
    });
    if let Some(t) = &parsed.artifact_type {
        desc["artifactType"] = serde_json::Value::String(t.clone());
    }
    if let Some(a) = &parsed.annotations {
        desc["annotations"] = a.clone();
    }
    store.put_referrer(repo, subject, digest, &desc)
}
