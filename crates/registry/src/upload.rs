//! Blob upload sessions (`/v2/<name>/blobs/uploads/<id>`): data is appended to
//! `uploads/<id>/data` while it is hashed, so the digest is known the moment the last
//! byte lands; finishing fsyncs the file and renames it into the blob store. A session
//! survives a restart: its file is re-hashed the first time it is touched again.
//!
//! A session is not acknowledged data (a 202, not a 201), so nothing is fsynced before
//! the commit: its files survive a process crash (they are in the page cache) but not
//! necessarily a power loss, after which the client starts the upload again. The meta
//! file still appears by rename, so a crash never leaves a torn one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use http_body_util::BodyExt as _;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;

use crate::digest::{Algorithm, Digest, DigestHasher};
use crate::error::{OciCode, OciError, StoreError};
use crate::names::{new_upload_id, valid_upload_id, RepoName};
use crate::store::{read_json, Store};

/// The open sessions of this process.
#[derive(Debug)]
pub(crate) struct Uploads {
    store: Arc<Store>,
    // A std Mutex guards only the map; each session has its own async lock, held while
    // a request streams into it so two PATCHes to one session cannot interleave.
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Session>>>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SessionMeta {
    repo: String,
}

/// One session: its data file, the hash so far and the size so far.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) repo: RepoName,
    data: PathBuf,
    // Buffered so a stream of small frames becomes few large writes; flushed at the
    // end of every request, so the file matches `size` between requests.
    file: tokio::io::BufWriter<tokio::fs::File>,
    hasher: DigestHasher,
    pub(crate) size: u64,
    finished: bool,
    touched: tokio::time::Instant,
}

impl Uploads {
    pub(crate) fn new(store: Arc<Store>) -> Uploads {
        Uploads {
            store,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.store.root().join("uploads").join(id)
    }

    /// Starts a session for `repo`.
    pub(crate) async fn create(
        &self,
        repo: &RepoName,
    ) -> Result<Arc<tokio::sync::Mutex<Session>>, OciError> {
        let id = new_upload_id();
        let dir = self.dir(&id);
        let meta = SessionMeta {
            repo: repo.as_str().to_owned(),
        };
        let data = dir.join("data");
        let (d2, data2) = (dir.clone(), data.clone());
        let file = self
            .store
            .blocking(move |s| {
                std::fs::create_dir(&d2).map_err(StoreError::io("mkdir", &d2))?;
                let meta = serde_json::to_vec(&meta).expect("a struct of strings serializes");
                let tmp = s.tmp_path();
                std::fs::write(&tmp, meta).map_err(StoreError::io("write", &tmp))?;
                std::fs::rename(&tmp, d2.join("meta"))
                    .map_err(StoreError::io("rename", d2.join("meta")))?;
                std::fs::OpenOptions::new()
                    .append(true)
                    .create_new(true)
                    .open(&data2)
                    .map_err(StoreError::io("create", &data2))
            })
            .await?;
        let file = buffered(tokio::fs::File::from_std(file));
        let session = Arc::new(tokio::sync::Mutex::new(Session {
            id: id.clone(),
            repo: repo.clone(),
            data,
            file,
            hasher: DigestHasher::new(Algorithm::Sha256),
            size: 0,
            finished: false,
            touched: tokio::time::Instant::now(),
        }));
        self.lock_map().insert(id, Arc::clone(&session));
        Ok(session)
    }

    /// Finds a session of `repo` (in memory, or on disk after a restart).
    pub(crate) async fn get(
        &self,
        repo: &RepoName,
        id: &str,
    ) -> Result<Arc<tokio::sync::Mutex<Session>>, OciError> {
        let unknown = || OciError::new(OciCode::BlobUploadUnknown);
        if !valid_upload_id(id) {
            return Err(unknown());
        }
        let cached = self.lock_map().get(id).cloned();
        if let Some(s) = cached {
            if s.lock().await.repo != *repo {
                return Err(unknown());
            }
            return Ok(s);
        }
        let dir = self.dir(id);
        let meta: Option<SessionMeta> = {
            let p = dir.join("meta");
            self.store.blocking(move |_| read_json(&p)).await?
        };
        let meta = meta.ok_or_else(unknown)?;
        if meta.repo != repo.as_str() {
            return Err(unknown());
        }
        let data = dir.join("data");
        let d2 = data.clone();
        let (hasher, size) = self
            .store
            .blocking(move |_| rehash(&d2, Algorithm::Sha256))
            .await?
            .ok_or_else(unknown)?;
        let file = open_append(&data).await?;
        let session = Arc::new(tokio::sync::Mutex::new(Session {
            id: id.to_owned(),
            repo: repo.clone(),
            data,
            file,
            hasher,
            size,
            finished: false,
            touched: tokio::time::Instant::now(),
        }));
        let mut map = self.lock_map();
        Ok(Arc::clone(map.entry(id.to_owned()).or_insert(session)))
    }

    /// Verifies the digest and moves the data into the blob store; the session ends.
    pub(crate) async fn finish(
        &self,
        session: &mut Session,
        expected: &Digest,
    ) -> Result<u64, OciError> {
        if session.finished {
            return Err(OciError::new(OciCode::BlobUploadUnknown));
        }
        // Written, not yet synced: `commit_blob_file` syncs it.
        session.file.flush().await.map_err(OciError::internal)?;
        let actual = if expected.algorithm() == Algorithm::Sha256 {
            session.hasher.clone().finish()
        } else {
            let p = session.data.clone();
            let algo = expected.algorithm();
            self.store
                .blocking(move |_| rehash(&p, algo))
                .await?
                .ok_or_else(|| OciError::new(OciCode::BlobUploadUnknown))?
                .0
                .finish()
        };
        if actual != *expected {
            return Err(OciError::new(OciCode::DigestInvalid)
                .detail(format!("content has digest {actual}, not {expected}")));
        }
        let data = session.data.clone();
        let d = expected.clone();
        let dir = self.dir(&session.id);
        self.store
            .blocking(move |s| {
                if s.blob_size(&d).is_some() {
                    // Same bytes are already durable: the upload's copy is redundant.
                    let _ = std::fs::remove_file(&data);
                } else {
                    s.commit_blob_file(&data, &d)?;
                }
                let _ = std::fs::remove_dir_all(&dir);
                Ok(())
            })
            .await?;
        session.finished = true;
        self.lock_map().remove(&session.id);
        Ok(session.size)
    }

    /// Abandons a session and deletes its data.
    pub(crate) async fn cancel(&self, session: &mut Session) -> Result<(), OciError> {
        session.finished = true;
        self.lock_map().remove(&session.id);
        let dir = self.dir(&session.id);
        self.store
            .blocking(move |_| {
                let _ = std::fs::remove_dir_all(&dir);
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// Forgets sessions idle for `idle`, closing their files; their data stays on
    /// disk, so a client may still resume (the session is reloaded), and `gc` removes
    /// it after the grace period. Returns how many were dropped.
    pub(crate) fn sweep(&self, idle: std::time::Duration) -> usize {
        let mut map = self.lock_map();
        let before = map.len();
        // A session locked right now is in use: keep it.
        map.retain(|_, s| s.try_lock().map_or(true, |s| s.touched.elapsed() < idle));
        before - map.len()
    }

    fn lock_map(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<Session>>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Session {
    /// Streams a request body onto the end of the session, hashing as it goes. A body
    /// cut short leaves the session at the last fully written frame.
    pub(crate) async fn append(&mut self, body: Body) -> Result<u64, OciError> {
        if self.finished {
            return Err(OciError::new(OciCode::BlobUploadUnknown));
        }
        self.touched = tokio::time::Instant::now();
        let mut body = body;
        let mut written = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    // Keep what arrived (it is hashed already) so the client can resume.
                    if let Err(e) = self.file.flush().await {
                        return Err(self.broken(e));
                    }
                    return Err(OciError::new(OciCode::BlobUploadInvalid)
                        .detail(format!("reading the request body: {e}")));
                }
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if let Err(e) = self.file.write_all(&data).await {
                return Err(self.broken(e));
            }
            self.hasher.update(&data);
            self.size += data.len() as u64;
            written += data.len() as u64;
        }
        if let Err(e) = self.file.flush().await {
            return Err(self.broken(e));
        }
        self.touched = tokio::time::Instant::now();
        Ok(written)
    }

    /// After a failed write the file and the hash may disagree: the session ends
    /// (its data is left for gc).
    fn broken(&mut self, err: std::io::Error) -> OciError {
        self.finished = true;
        OciError::internal(format!("writing upload {}: {err}", self.id))
    }

    /// The `Range` header value for the bytes received so far.
    pub(crate) fn range(&self) -> String {
        format!("0-{}", self.size.saturating_sub(1))
    }
}

async fn open_append(
    path: &std::path::Path,
) -> Result<tokio::io::BufWriter<tokio::fs::File>, OciError> {
    let file = tokio::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .await
        .map_err(|e| OciError::internal(format!("open {}: {e}", path.display())))?;
    Ok(buffered(file))
}

fn buffered(file: tokio::fs::File) -> tokio::io::BufWriter<tokio::fs::File> {
    tokio::io::BufWriter::with_capacity(1 << 20, file)
}

/// Hashes an existing data file (after a restart, or for a non-sha256 digest).
fn rehash(
    path: &std::path::Path,
    algorithm: Algorithm,
) -> Result<Option<(DigestHasher, u64)>, StoreError> {
    use std::io::Read as _;
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(StoreError::Io {
                op: "open",
                path: path.to_owned(),
                source: e,
            })
        }
    };
    let mut h = DigestHasher::new(algorithm);
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(StoreError::io("read", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok(Some((h, size)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_sessions_are_closed_but_resumable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let uploads = Uploads::new(store);
        let repo = RepoName::parse("a").unwrap();
        let id = uploads.create(&repo).await.unwrap().lock().await.id.clone();
        assert_eq!(uploads.sweep(std::time::Duration::from_secs(60)), 0);
        tokio::time::advance(std::time::Duration::from_secs(61)).await;
        assert_eq!(uploads.sweep(std::time::Duration::from_secs(60)), 1);
        let again = uploads.get(&repo, &id).await.unwrap();
        assert_eq!(again.lock().await.size, 0);
    }
}
