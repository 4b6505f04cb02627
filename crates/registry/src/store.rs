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
//! an upload's own data file) after its bytes are fsynced, and the directory is fsynced
//! after the rename unless the change log vouches for the name ([`Durability`]), so
//! after kill -9 a path holds either nothing or complete, durable bytes.
//! Everything here is blocking `std::fs`; async callers go through [`Store::blocking`].
//!
//! Cost: each fsync that finds something dirty is a journal commit (ext4, xfs), and
//! commits, not bytes, dominate a small push. So a write makes all its metadata changes
//! first (new directories), then fsyncs its file, whose commit carries those changes
//! too; the directory fsyncs that follow find nothing left to commit. The order of the
//! fsyncs changes nothing about what is durable when the write is acknowledged.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{de::DeserializeOwned, Serialize};

use crate::digest::{Algorithm, Digest};
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
    /// Directories created whose entry in their parent is not yet fsynced. Entered
    /// before `mkdir` and left after the parent's fsync, so a concurrent write that
    /// finds such a directory already there fsyncs the parent too instead of trusting
    /// an entry a crash could still lose.
    unsynced_dirs: Mutex<HashSet<PathBuf>>,
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

/// What a file write makes durable before it returns. Either way the file's bytes are
/// fsynced before the rename, so a visible file is never torn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// The bytes, the name (directory fsync) and any new directories: for writes that
    /// nothing else records (blobs, changes received from peers, cursors).
    Synced,
    /// The bytes only: for the files of a change already durable in the local change
    /// log, which is replayed on start and so recreates a name a crash lost. Saves the
    /// directory fsyncs of every link and tag write; [`Store::sync_logged`] makes the
    /// names durable before compaction drops the records.
    Logged,
}

impl Store {
    pub(crate) fn open(root: &Path) -> Result<Store, StoreError> {
        let store = Store::attach(root);
        for d in ["blobs", "repos", "uploads", "replication", "tmp"] {
            store.ensure_dir(&root.join(d))?;
        }
        // Leftovers of writes cut short by a crash: never renamed, so never visible.
        let tmp = root.join("tmp");
        for entry in fs::read_dir(&tmp).map_err(StoreError::io("read_dir", &tmp))? {
            let p = entry.map_err(StoreError::io("read_dir", &tmp))?.path();
            let _ = fs::remove_file(&p);
        }
        // Every sha256 prefix directory exists from the start, so a push never waits
        // for a new directory's fsync.
        let prefixes = root.join("blobs").join(Algorithm::Sha256.as_str());
        let mut new_dirs = Vec::new();
        for prefix in 0..=255u8 {
            new_dirs.extend(store.create_dirs(&prefixes.join(format!("{prefix:02x}")))?);
        }
        store.sync_dirs(&new_dirs)?;
        Ok(store)
    }

    /// The store without start-up work (no directory creation, no temp cleanup): for
    /// `gc`, which may run next to a live server whose temp files are in use.
    pub(crate) fn attach(root: &Path) -> Store {
        Store {
            root: root.to_owned(),
            stripes: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            unsynced_dirs: Mutex::new(HashSet::new()),
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
        self.write_atomic(&dest, bytes, Durability::Synced)
    }

    /// Moves a fully written file (an upload's data, a fetched blob) into place as
    /// blob `d`: fsyncs it, renames it, fsyncs the directory. Written but not yet
    /// synced is fine: the sync here is the one that makes it durable.
    pub(crate) fn commit_blob_file(&self, src: &Path, d: &Digest) -> Result<(), StoreError> {
        let dest = self.blob_path(d);
        let parent = dest.parent().expect("blob path has a parent");
        let new_dirs = self.create_dirs(parent)?;
        // Data only: the rename and the directory fsync below make the name durable,
        // and fdatasync still writes the size and block map the data needs.
        File::open(src)
            .and_then(|f| f.sync_data())
            .map_err(StoreError::io("fsync", src))?;
        self.sync_dirs(&new_dirs)?;
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
        durability: Durability,
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
        self.write_json(&path, &merged, durability)?;
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
        durability: Durability,
    ) -> Result<bool, StoreError> {
        let path = self.tag_path(name, tag);
        let _guard = self.stripe(&path);
        let mut history = read_json::<TagHistory>(&path)?.unwrap_or_default();
        if !history.merge(v) {
            return Ok(false);
        }
        self.write_json(&path, &history, durability)?;
        Ok(true)
    }

    /// Makes the names of the files these logged changes wrote durable: fsyncs every
    /// directory from each file's up to the store root (each once). Called before the
    /// change log drops the records (compaction), which until then stand in for them.
    pub(crate) fn sync_logged<'a>(
        &self,
        changes: impl IntoIterator<Item = &'a crate::changelog::Change>,
    ) -> Result<(), StoreError> {
        use crate::changelog::Change;
        let mut dirs: HashSet<PathBuf> = HashSet::new();
        for change in changes {
            let file = match change {
                Change::Link {
                    repo, kind, digest, ..
                } => RepoName::parse(repo).map(|r| self.link_path(&r, *kind, digest)),
                Change::Tag { repo, tag, .. } => RepoName::parse(repo)
                    .filter(|_| crate::names::valid_tag(tag))
                    .map(|r| self.tag_path(&r, tag)),
            };
            let Some(file) = file else { continue };
            for dir in file.ancestors().skip(1) {
                if !dirs.insert(dir.to_owned()) || dir == self.root {
                    break;
                }
            }
        }
        let mut dirs: Vec<PathBuf> = dirs.into_iter().collect();
        // Deepest first: a directory's own name is made durable by its parent's fsync.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for dir in &dirs {
            match fsync_dir(dir) {
                Ok(()) => {}
                // Never created (the change merged into nothing new); nothing to keep.
                Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let mut pending = self.lock_unsynced_dirs();
        for dir in &dirs {
            pending.remove(dir);
        }
        Ok(())
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
        // Synced even for a logged manifest: replay re-indexes the log's manifests, but
        // compaction drops records, and the index must outlive them.
        self.write_json(&path, descriptor, Durability::Synced)
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
        durability: Durability,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        self.write_atomic(path, &bytes, durability)
    }

    /// Temp file, write, fsync, rename into place, then (`Synced`) fsync the
    /// directory. Missing directories are created before the file's fsync, so its
    /// journal commit carries them.
    pub(crate) fn write_atomic(
        &self,
        dest: &Path,
        bytes: &[u8],
        durability: Durability,
    ) -> Result<(), StoreError> {
        let tmp = self.tmp_path();
        let result = (|| {
            let mut f = File::create(&tmp).map_err(StoreError::io("create", &tmp))?;
            f.write_all(bytes).map_err(StoreError::io("write", &tmp))?;
            let parent = dest.parent().expect("store paths have parents");
            let new_dirs = self.create_dirs(parent)?;
            f.sync_all().map_err(StoreError::io("fsync", &tmp))?;
            fs::rename(&tmp, dest).map_err(StoreError::io("rename", dest))?;
            match durability {
                Durability::Synced => {
                    self.sync_dirs(&new_dirs)?;
                    fsync_dir(parent)
                }
                Durability::Logged => Ok(()),
            }
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Creates a directory and any missing parents, durably.
    pub(crate) fn ensure_dir(&self, dir: &Path) -> Result<(), StoreError> {
        let new_dirs = self.create_dirs(dir)?;
        self.sync_dirs(&new_dirs)
    }

    /// Creates `dir` and its missing ancestors without syncing anything. Returns the
    /// directories whose entries are not yet durable (made here, or by a concurrent
    /// call that has not synced them yet); pass them to [`Store::sync_dirs`] before
    /// acknowledging anything written below `dir`.
    pub(crate) fn create_dirs(&self, dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
        let mut missing = Vec::new();
        for d in dir.ancestors() {
            if d.as_os_str().is_empty() || d.is_dir() {
                break;
            }
            missing.push(d.to_owned());
        }
        let mut unsynced: Vec<PathBuf> = {
            let mut pending = self.lock_unsynced_dirs();
            pending.extend(missing.iter().cloned());
            dir.ancestors()
                .filter(|d| pending.contains(*d))
                .map(Path::to_owned)
                .collect()
        };
        for d in missing.iter().rev() {
            match fs::create_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(StoreError::Io {
                        op: "mkdir",
                        path: d.clone(),
                        source: e,
                    })
                }
            }
        }
        unsynced.sort();
        unsynced.dedup();
        Ok(unsynced)
    }

    /// Makes the entries of directories from [`Store::create_dirs`] durable: fsyncs
    /// each one's parent.
    pub(crate) fn sync_dirs(&self, dirs: &[PathBuf]) -> Result<(), StoreError> {
        let mut parents: Vec<&Path> = dirs.iter().filter_map(|d| d.parent()).collect();
        parents.sort();
        parents.dedup();
        for parent in parents {
            fsync_dir(parent)?;
        }
        let mut pending = self.lock_unsynced_dirs();
        for d in dirs {
            pending.remove(d);
        }
        Ok(())
    }

    fn lock_unsynced_dirs(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        self.unsynced_dirs.lock().unwrap_or_else(|p| p.into_inner())
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
            .merge_link(&name, LinkKind::Layer, &d, &link, Durability::Synced)
            .unwrap()
            .is_some());
        assert!(store
            .merge_link(&name, LinkKind::Layer, &d, &link, Durability::Synced)
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
                Durability::Synced,
            )
            .unwrap();
        // Listed only once the manifest it names is present.
        assert!(store.live_tags(&name).unwrap().is_empty());
        store
            .merge_link(&name, LinkKind::Manifest, &d, &link, Durability::Logged)
            .unwrap();
        assert_eq!(store.live_tags(&name).unwrap(), vec!["v1".to_owned()]);
        assert_eq!(store.repositories().unwrap(), vec![name.clone()]);
        assert_eq!(store.all_links(LinkKind::Layer).unwrap().len(), 1);
        assert!(fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn logged_writes_leave_their_directories_to_sync_logged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let name = RepoName::parse("team/app").unwrap();
        let d = Digest::sha256(b"x");
        let link = LinkState {
            media_type: None,
            size: 1,
            added: stamp(1, "a"),
            deleted: None,
        };
        store
            .merge_link(
                &name,
                LinkKind::Layer,
                &d,
                &link.clone(),
                Durability::Logged,
            )
            .unwrap();
        // Created but not yet durable: repos/team, repos/team/app, _layers, _layers/sha256.
        assert_eq!(store.lock_unsynced_dirs().len(), 4);
        let logged = |repo: &str| crate::changelog::Change::Link {
            repo: repo.to_owned(),
            kind: LinkKind::Layer,
            digest: d.clone(),
            state: link.clone(),
        };
        // A change whose file was never written (merged into nothing new) is skipped.
        store
            .sync_logged([&logged(name.as_str()), &logged("other")])
            .unwrap();
        assert!(store.lock_unsynced_dirs().is_empty());
    }

    #[test]
    fn a_directory_created_but_not_synced_is_synced_by_the_next_writer_too() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = dir.path().join("repos").join("a");
        // Another writer made `a` and has not fsynced `repos` yet.
        let first = store.create_dirs(&a).unwrap();
        assert_eq!(first, vec![a.clone()]);
        // This writer finds `a` there but must not trust its entry.
        let second = store.create_dirs(&a.join("b")).unwrap();
        assert_eq!(second, vec![a.clone(), a.join("b")]);
        store.sync_dirs(&second).unwrap();
        assert!(store.lock_unsynced_dirs().is_empty());
        assert!(store.create_dirs(&a.join("b")).unwrap().is_empty());
        // Every blob prefix exists from the start.
        assert!(dir.path().join("blobs/sha256/00").is_dir());
        assert!(dir.path().join("blobs/sha256/ff").is_dir());
    }
}
