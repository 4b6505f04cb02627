//! Garbage collection: removes blobs that no live link and no live manifest references
//! and whose file is older than the grace period, plus abandoned uploads and temp
//! files older than it. The grace period protects in-flight pushes: a blob uploaded
//! but not yet referenced by its manifest is young, so it stays.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::digest::Digest;
use crate::error::{RegistryError, StoreError};
use crate::store::{list_dir, LinkKind, Store};

/// What a collection removed (or, for [`gc_plan`], would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Blobs looked at.
    pub blobs_scanned: u64,
    /// Blobs kept because something live references them.
    pub blobs_referenced: u64,
    /// Unreferenced blobs kept because they are younger than the grace period.
    pub blobs_in_grace: u64,
    /// Blobs removed.
    pub blobs_removed: u64,
    /// Bytes freed by removed blobs.
    pub bytes_freed: u64,
    /// Upload sessions (and temp files) removed.
    pub uploads_removed: u64,
}

/// Collects garbage in a storage directory. Safe while a server runs on it, as long
/// as the grace period exceeds the longest push.
pub fn gc(storage: &Path, grace: Duration) -> Result<GcReport, RegistryError> {
    collect(storage, grace, false)
}

/// Reports what [`gc`] would remove, removing nothing (`--dry-run`).
pub fn gc_plan(storage: &Path, grace: Duration) -> Result<GcReport, RegistryError> {
    collect(storage, grace, true)
}

fn collect(storage: &Path, grace: Duration, dry_run: bool) -> Result<GcReport, RegistryError> {
    if !storage.is_dir() {
        return Err(RegistryError::Io {
            what: "opening storage",
            path: storage.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
        });
    }
    let store = Store::attach(storage);
    let cutoff = SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let old = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .map(|t| t < cutoff)
            .unwrap_or(false)
    };

    let mut live: HashSet<Digest> = HashSet::new();
    for (_, d, state) in store.all_links(LinkKind::Layer)? {
        if state.live() {
            live.insert(d);
        }
    }
    for (_, d, state) in store.all_links(LinkKind::Manifest)? {
        if !state.live() {
            continue;
        }
        // A live manifest keeps what it references even if a link was deleted.
        if let Ok(bytes) = std::fs::read(store.blob_path(&d)) {
            if let Ok(parsed) = crate::manifest::parse(&bytes, state.media_type.as_deref()) {
                live.extend(parsed.blobs);
                live.extend(parsed.manifests);
            }
        }
        live.insert(d);
    }

    let mut report = GcReport::default();
    let blobs = storage.join("blobs");
    for algo in list_dir(&blobs)? {
        for prefix in list_dir(&blobs.join(&algo))? {
            for hex in list_dir(&blobs.join(&algo).join(&prefix))? {
                let path = blobs.join(&algo).join(&prefix).join(&hex);
                report.blobs_scanned += 1;
                let referenced = format!("{algo}:{hex}")
                    .parse::<Digest>()
                    .is_ok_and(|d| live.contains(&d));
                if referenced {
                    report.blobs_referenced += 1;
                } else if !old(&path) {
                    report.blobs_in_grace += 1;
                } else {
                    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    if !dry_run {
                        std::fs::remove_file(&path).map_err(StoreError::io("remove", &path))?;
                    }
                    report.blobs_removed += 1;
                    report.bytes_freed += size;
                }
            }
        }
    }
    let uploads = storage.join("uploads");
    for id in list_dir(&uploads)? {
        let dir = uploads.join(&id);
        let data = dir.join("data");
        let stale = if data.exists() { old(&data) } else { old(&dir) };
        if stale {
            if !dry_run {
                std::fs::remove_dir_all(&dir).map_err(StoreError::io("remove", &dir))?;
            }
            report.uploads_removed += 1;
        }
    }
    let tmp = storage.join("tmp");
    for name in list_dir(&tmp)? {
        let path = tmp.join(name);
        if old(&path) {
            if !dry_run {
                let _ = std::fs::remove_file(&path);
            }
            report.uploads_removed += 1;
        }
    }
    Ok(report)
}
