//! The filesystem store: content-addressed blobs plus per-repository metadata.
//!
//! ```text
//! blobs/<algo>/<hex[..2]>/<hex>                       content (layers, configs, manifests)
//! repos/<name>/_layers/<algo>/<hex>                   LinkState: blob linked into the repo
//! repos/<name>/_manifests/<algo>/<hex>                LinkState: manifest (with media type)
//! repos/<name>/_tags/<tag>                            TagHistory
//! repos/<name>/_referrers/<algo>/<subject>/<algo>-<hex>  descriptor of a referrer
//! uploads/<id>/{data,meta}                            upload sessions
//! replication/                                        the durable change log and peer cursors
//! tmp/                                                temp files, emptied at start
//! ```
//!
//! Architecture invariant: every file becomes visible by `rename` from `tmp/` (or from
//! an upload's own data file) after `sync_all`, and the directory is fsynced after the
//! rename, so after kill -9 a path holds either nothing or complete, durable bytes.
//! Everything here is blocking `std::fs`; async callers go through [`Store::blocking`].

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{de::DeserializeOwned, Serialize};

use crate::digest::Digest;
use crate::error::StoreError;
use crate::names::RepoName;
use crate::tags::{LinkState, TagHistory, TagVersion};

const LOCK_STRIPES: usize = 64;

/// The store rooted at one directory.
#[derive(Debug)]
pub(crate) struct Store {
    root: PathBuf,
    /// Read-modify-write of one metadata file is serialized by the stripe its path
    /// hashes to; held only inside blocking code.
    stripes: Vec<Mutex<()>>,
}

/// Which kind of link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LinkKind {
    Layer,
    Manifest,
}

impl LinkKind {
    fn dir(self) -> &'static str {
        match self {
            LinkKind::Layer => "_layers",
            LinkKind::Manifest => "_manifests",
        }
    }
}

impl Store {
    pub(crate) fn open(root: &Path) -> Result<Store, StoreError> {
        for d in ["blobs", "repos", "uploads", "replication", "tmp"] {
            ensure_dir(&root.join(d))?;
        }
        // Leftovers of writes cut short by a crash: never renamed, so never visible.
        let tmp = root.join("tmp");
        for entry in fs::read_dir(&tmp).map_err(StoreError::io("read_dir", &tmp))? {
            let p = entry.map_err(StoreError::io("read_dir", &tmp))?.path();
            let _ = fs::remove_file(&p);
        }
        Ok(Store {
            root: root.to_owned(),
            stripes: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
        })
    }

    /// The store without start-up work (no directory creation, no temp cleanup): for
    /// `gc`, which may run next to a live server whose temp files are in use.
    pub(crate) fn attach(root: &Path) -> Store {
        Store {
            root: root.to_owned(),
            stripes: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Runs blocking store code on tokio's blocking pool.
    pub(crate) async fn blocking<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = Arc::clone(self);
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Join(e.to_string()))?
    }

    // === blobs ===

    pub(crate) fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(&d.hex()[..2])
            .join(d.hex())
    }

    /// The blob's size if it is stored.
    pub(crate) fn blob_size(&self, d: &Digest) -> Option<u64> {
        fs::metadata(self.blob_path(d)).ok().map(|m| m.len())
    }

    /// Stores bytes whose digest the caller computed.
    pub(crate) fn put_blob_bytes(&self, d: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        let dest = self.blob_path(d);
        if dest.exists() {
            return Ok(());
        }
        self.write_atomic(&dest, bytes)
    }

    /// Moves a fully written, fsynced file (an upload's data) into place as blob `d`.
    pub(crate) fn commit_blob_file(&self, src: &Path, d: &Digest) -> Result<(), StoreError> {
        let dest = self.blob_path(d);
        let parent = dest.parent().expect("blob path has a parent");
        ensure_dir(parent)?;
        fs::rename(src, &dest).map_err(StoreError::io("rename", &dest))?;
        fsync_dir(parent)
    }

    pub(crate) fn tmp_path(&self) -> PathBuf {
        self.root.join("tmp").join(crate::names::new_upload_id())
    }

    // === links ===

    pub(crate) fn repo_dir(&self, name: &RepoName) -> PathBuf {
        self.root.join("repos").join(name.as_str())
    }

    fn link_path(&self, name: &RepoName, kind: LinkKind, d: &Digest) -> PathBuf {
        self.repo_dir(name)
            .join(kind.dir())
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    pub(crate) fn link(
        &self,
        name: &RepoName,
        kind: LinkKind,
        d: &Digest,
    ) -> Result<Option<LinkState>, StoreError> {
        read_json(&self.link_path(name, kind, d))
    }

    /// The link if present and not tombstoned.
    pub(crate) fn live_link(
        &self,
        name: &RepoName,
        kind: LinkKind,
        d: &Digest,
    ) -> Result<Option<LinkState>, StoreError> {
        Ok(self.link(name, kind, d)?.filter(LinkState::live))
    }

    /// Merges a link state; returns the merged state if anything changed.
    pub(crate) fn merge_link(
        &self,
        name: &RepoName,
        kind: LinkKind,
        d: &Digest,
        state: &LinkState,
    ) -> Result<Option<LinkState>, StoreError> {
        let path = self.link_path(name, kind, d);
        let _guard = self.stripe(&path);
        let merged = match read_json::<LinkState>(&path)? {
            None => state.clone(),
            Some(mut cur) => {
                if !cur.merge(state) {
                    return Ok(None);
                }
                cur
            }
        };
        self.write_json(&path, &merged)?;
        Ok(Some(merged))
    }

    /// Every link of a kind in every repository (gc).
    pub(crate) fn all_links(
        &self,
        kind: LinkKind,
    ) -> Result<Vec<(RepoName, Digest, LinkState)>, StoreError> {
        let mut out = Vec::new();
        for name in self.repositories()? {
            let dir = self.repo_dir(&name).join(kind.dir());
            for algo in list_dir(&dir)? {
                for hex in list_dir(&dir.join(&algo))? {
                    let Ok(d) = format!("{algo}:{hex}").parse::<Digest>() else {
                        continue;
                    };
                    if let Some(state) = read_json::<LinkState>(&dir.join(&algo).join(&hex))? {
                        out.push((name.clone(), d, state));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every repository name (directories under `repos/` holding a `_`-prefixed dir).
    pub(crate) fn repositories(&self) -> Result<Vec<RepoName>, StoreError> {
        let mut out = Vec::new();
        let base = self.root.join("repos");
        let mut stack = vec![base.clone()];
        while let Some(dir) = stack.pop() {
            let mut is_repo = false;
            for child in list_dir(&dir)? {
                if child.starts_with('_') {
                    is_repo = true;
                } else if dir.join(&child).is_dir() {
                    stack.push(dir.join(child));
                }
            }
            if is_repo {
                let rel = dir
                    .strip_prefix(&base)
                    .unwrap_or(&dir)
                    .to_string_lossy()
                    .into_owned();
                if let Some(n) = RepoName::parse(&rel) {
                    out.push(n);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every link and tag version, as changes (anti-entropy).
    pub(crate) fn snapshot(&self) -> Result<Vec<crate::changelog::Change>, StoreError> {
        use crate::changelog::Change;
        let mut out = Vec::new();
        // Layers, then manifests, then tags: the order a receiver can apply them in.
        for kind in [LinkKind::Layer, LinkKind::Manifest] {
            for (repo, digest, state) in self.all_links(kind)? {
                out.push(Change::Link {
                    repo: repo.as_str().to_owned(),
                    kind,
                    digest,
                    state,
                });
            }
        }
        for repo in self.repositories()? {
            for tag in list_dir(&self.repo_dir(&repo).join("_tags"))? {
                let versions = self
                    .tag(&repo, &tag)?
                    .map(|h| h.versions)
                    .unwrap_or_default();
                for version in versions {
                    out.push(Change::Tag {
                        repo: repo.as_str().to_owned(),
                        tag: tag.clone(),
                        version,
                    });
                }
            }
        }
        Ok(out)
    }

    // === tags ===

    fn tag_path(&self, name: &RepoName, tag: &str) -> PathBuf {
        self.repo_dir(name).join("_tags").join(tag)
    }

    pub(crate) fn tag(&self, name: &RepoName, tag: &str) -> Result<Option<TagHistory>, StoreError> {
        read_json(&self.tag_path(name, tag))
    }

    /// Adds a version to a tag's history; returns whether it changed.
    pub(crate) fn merge_tag(
        &self,
        name: &RepoName,
        tag: &str,
        v: TagVersion,
    ) -> Result<bool, StoreError> {
        let path = self.tag_path(name, tag);
        let _guard = self.stripe(&path);
        let mut history = read_json::<TagHistory>(&path)?.unwrap_or_default();
        if !history.merge(v) {
            return Ok(false);
        }
        self.write_json(&path, &history)?;
        Ok(true)
    }

    /// Tags that currently resolve to a live manifest, sorted.
    pub(crate) fn live_tags(&self, name: &RepoName) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for tag in list_dir(&self.repo_dir(name).join("_tags"))? {
            let Some(h) = self.tag(name, &tag)? else {
                continue;
            };
            let Some(d) = h.current_digest() else {
                continue;
            };
            if self.live_link(name, LinkKind::Manifest, d)?.is_some() {
                out.push(tag);
            }
        }
        out.sort();
        Ok(out)
    }

    // === referrers ===

    fn referrers_dir(&self, name: &RepoName, subject: &Digest) -> PathBuf {
        self.repo_dir(name)
            .join("_referrers")
            .join(subject.algorithm().as_str())
            .join(subject.hex())
    }

    pub(crate) fn put_referrer(
        &self,
        name: &RepoName,
        subject: &Digest,
        referrer: &Digest,
        descriptor: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let path = self.referrers_dir(name, subject).join(format!(
            "{}-{}",
            referrer.algorithm().as_str(),
            referrer.hex()
        ));
        if path.exists() {
            return Ok(());
        }
        self.write_json(&path, descriptor)
    }

    /// Descriptors of the manifests whose subject is `subject` (including deleted ones:
    /// the caller filters by the manifest link).
    pub(crate) fn referrers(
        &self,
        name: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<(Digest, serde_json::Value)>, StoreError> {
        let dir = self.referrers_dir(name, subject);
        let mut out = Vec::new();
        for file in list_dir(&dir)? {
            let Some((algo, hex)) = file.split_once('-') else {
                continue;
            };
            let Ok(d) = format!("{algo}:{hex}").parse::<Digest>() else {
                continue;
            };
            if let Some(v) = read_json::<serde_json::Value>(&dir.join(&file))? {
                out.push((d, v));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    // === files ===

    fn stripe(&self, path: &Path) -> std::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        path.hash(&mut h);
        let i = (h.finish() as usize) % self.stripes.len();
        self.stripes[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn write_json<T: Serialize + ?Sized>(
        &self,
        path: &Path,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        self.write_atomic(path, &bytes)
    }

    /// Temp file, write, fsync, rename into place, fsync the directory.
    pub(crate) fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let tmp = self.tmp_path();
        let result = (|| {
            let mut f = File::create(&tmp).map_err(StoreError::io("create", &tmp))?;
            f.write_all(bytes).map_err(StoreError::io("write", &tmp))?;
            f.sync_all().map_err(StoreError::io("fsync", &tmp))?;
            let parent = dest.parent().expect("store paths have parents");
            ensure_dir(parent)?;
            fs::rename(&tmp, dest).map_err(StoreError::io("rename", dest))?;
            fsync_dir(parent)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory =>
        {
            Ok(None)
        }
        Err(e) => Err(StoreError::Io {
            op: "read",
            path: path.to_owned(),
            source: e,
        }),
    }
}

/// File names in a directory (empty if it does not exist), sorted.
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<String>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory =>
        {
            return Ok(Vec::new())
        }
        Err(e) => {
            return Err(StoreError::Io {
                op: "read_dir",
                path: dir.to_owned(),
                source: e,
            })
        }
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(StoreError::io("read_dir", dir))?;
        if let Some(n) = e.file_name().to_str() {
            out.push(n.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// Creates a directory and any missing parents, fsyncing each parent that gained an
/// entry so the new directory survives a crash.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        ensure_dir(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => {
            return Err(StoreError::Io {
                op: "mkdir",
                path: dir.to_owned(),
                source: e,
            })
        }
    }
    match dir.parent() {
        Some(parent) => fsync_dir(parent),
        None => Ok(()),
    }
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(StoreError::io("fsync dir", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tags::{Stamp, TagClock};

    fn stamp(ms: u64, r: &str) -> Stamp {
        Stamp {
            clock: TagClock {
                wall_ms: ms,
                logical: 0,
            },
            replica: r.to_owned(),
        }
    }

    #[test]
    fn links_tags_and_repositories() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let name = RepoName::parse("team/app").unwrap();
        let d = Digest::sha256(b"x");
        store.put_blob_bytes(&d, b"x").unwrap();
        assert_eq!(store.blob_size(&d), Some(1));
        let link = LinkState {
            media_type: None,
            size: 1,
            added: stamp(1, "a"),
            deleted: None,
        };
        assert!(store
            .merge_link(&name, LinkKind::Layer, &d, &link)
            .unwrap()
            .is_some());
        assert!(store
            .merge_link(&name, LinkKind::Layer, &d, &link)
            .unwrap()
            .is_none());
        assert!(store
            .live_link(&name, LinkKind::Layer, &d)
            .unwrap()
            .is_some());
        store
            .merge_tag(
                &name,
                "v1",
                TagVersion {
                    digest: Some(d.clone()),
                    stamp: stamp(2, "a"),
                },
            )
            .unwrap();
        // Listed only once the manifest it names is present.
        assert!(store.live_tags(&name).unwrap().is_empty());
        store
            .merge_link(&name, LinkKind::Manifest, &d, &link)
            .unwrap();
        assert_eq!(store.live_tags(&name).unwrap(), vec!["v1".to_owned()]);
        assert_eq!(store.repositories().unwrap(), vec![name.clone()]);
        assert_eq!(store.all_links(LinkKind::Layer).unwrap().len(), 1);
        assert!(fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .next()
            .is_none());
    }
}
