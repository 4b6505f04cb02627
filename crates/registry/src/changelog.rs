//! The durable change log: every local metadata change (a link added or tombstoned, a
//! tag version) is appended and fsynced here *before* it is applied to the store's
//! files, so the log is the write-ahead record of truth: on start the whole log is
//! replayed (merges are idempotent) and a crash between append and apply loses nothing.
//! Replication ships records from this log to each peer, tracking a cursor per peer.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead as _, BufReader, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::digest::Digest;
use crate::error::StoreError;
use crate::store::LinkKind;
use crate::tags::{LinkState, TagVersion};

/// One metadata change, carrying the full state to merge (so applying it twice, or
/// out of order, gives the same result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum Change {
    Link {
        repo: String,
        kind: LinkKind,
        digest: Digest,
        state: LinkState,
    },
    Tag {
        repo: String,
        tag: String,
        version: TagVersion,
    },
}

/// A logged change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) seq: u64,
    /// Unix milliseconds when it was logged (for lag).
    pub(crate) at_ms: u64,
    pub(crate) change: Change,
}

/// The log: an append-only JSON-lines file plus its records in memory. Records up to
/// every peer's cursor can be compacted away; sequence numbers never restart.
#[derive(Debug)]
pub(crate) struct ChangeLog {
    path: PathBuf,
    // std locks: held only inside blocking code or for a clone of an Arc.
    file: Mutex<LogFile>,
    records: RwLock<InMemory>,
    head: watch::Sender<u64>,
}

#[derive(Debug)]
struct LogFile {
    file: File,
    /// Length of the file's complete records: a failed append is cut back to it.
    len: u64,
}

#[derive(Debug, Default)]
struct InMemory {
    /// Sequence number just before `records[0]`.
    base: u64,
    records: Vec<Arc<Record>>,
}

fn open_append(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(StoreError::io("open", path))
}

impl ChangeLog {
    /// Opens the log, dropping a torn last line left by a crash mid-append.
    pub(crate) fn open(dir: &Path) -> Result<ChangeLog, StoreError> {
        let path = dir.join("log");
        let mut file = open_append(&path)?;
        let mut mem = InMemory::default();
        let mut good_len = 0u64;
        {
            let mut reader = BufReader::new(&mut file);
            let mut line = String::new();
            loop {
                line.clear();
                let n = reader
                    .read_line(&mut line)
                    .map_err(StoreError::io("read", &path))?;
                if n == 0 || !line.ends_with('\n') {
                    break;
                }
                match serde_json::from_str::<Record>(&line) {
                    Ok(r) if mem.records.is_empty() && r.seq > 0 => {
                        mem.base = r.seq - 1;
                        mem.records.push(Arc::new(r));
                    }
                    Ok(r) if r.seq == mem.base + mem.records.len() as u64 + 1 => {
                        mem.records.push(Arc::new(r))
                    }
                    _ => break,
                }
                good_len += n as u64;
            }
        }
        let len = file
            .metadata()
            .map_err(StoreError::io("stat", &path))?
            .len();
        if len != good_len {
            tracing::warn!(path = %path.display(), good_len, len, "dropping a torn tail of the change log");
            file.set_len(good_len)
                .map_err(StoreError::io("truncate", &path))?;
            file.sync_all().map_err(StoreError::io("fsync", &path))?;
        }
        file.seek(std::io::SeekFrom::End(0))
            .map_err(StoreError::io("seek", &path))?;
        let head = mem.base + mem.records.len() as u64;
        Ok(ChangeLog {
            path,
            file: Mutex::new(LogFile {
                file,
                len: good_len,
            }),
            records: RwLock::new(mem),
            head: watch::Sender::new(head),
        })
    }

    /// Appends changes durably (blocking); returns the records. A failed write is cut
    /// back, so a later append never lands behind a torn line.
    pub(crate) fn append(&self, changes: Vec<Change>) -> Result<Vec<Arc<Record>>, StoreError> {
        let mut log = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let at_ms = crate::now_ms();
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for (seq, change) in (self.head() + 1..).zip(changes) {
            let r = Record { seq, at_ms, change };
            serde_json::to_writer(&mut buf, &r).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
            buf.push(b'\n');
            out.push(Arc::new(r));
        }
        let written = log.file.write_all(&buf).and_then(|()| log.file.sync_data());
        if let Err(e) = written {
            let _ = log.file.set_len(log.len);
            return Err(StoreError::Io {
                op: "append",
                path: self.path.clone(),
                source: e,
            });
        }
        log.len += buf.len() as u64;
        let head = {
            let mut mem = self.records.write().unwrap_or_else(|p| p.into_inner());
            mem.records.extend(out.iter().cloned());
            mem.base + mem.records.len() as u64
        };
        self.head.send_replace(head);
        Ok(out)
    }

    pub(crate) fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// The first sequence number still held (records before it were compacted).
    pub(crate) fn base(&self) -> u64 {
        self.records.read().unwrap_or_else(|p| p.into_inner()).base
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// Records with `seq > after`, at most `max`.
    pub(crate) fn after(&self, after: u64, max: usize) -> Vec<Arc<Record>> {
        let mem = self.records.read().unwrap_or_else(|p| p.into_inner());
        let skip = after.saturating_sub(mem.base) as usize;
        mem.records.iter().skip(skip).take(max).cloned().collect()
    }

    /// The record with this sequence number.
    pub(crate) fn get(&self, seq: u64) -> Option<Arc<Record>> {
        let mem = self.records.read().unwrap_or_else(|p| p.into_inner());
        seq.checked_sub(mem.base + 1)
            .and_then(|i| mem.records.get(i as usize).cloned())
    }

    /// Every record (start-up replay).
    pub(crate) fn all(&self) -> Vec<Arc<Record>> {
        self.after(0, usize::MAX)
    }

    /// Drops records with `seq <= upto` (all peers acknowledged them and they are
    /// applied) by rewriting the file: temp file, fsync, rename, fsync dir (blocking).
    pub(crate) fn compact(&self, upto: u64) -> Result<usize, StoreError> {
        let mut log = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let keep = self.after(upto, usize::MAX);
        let dropped = {
            let mem = self.records.read().unwrap_or_else(|p| p.into_inner());
            upto.saturating_sub(mem.base).min(mem.records.len() as u64) as usize
        };
        if dropped == 0 {
            return Ok(0);
        }
        let mut buf = Vec::new();
        for r in &keep {
            serde_json::to_writer(&mut buf, r.as_ref()).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
            buf.push(b'\n');
        }
        let tmp = self.path.with_extension("compacting");
        let mut f = File::create(&tmp).map_err(StoreError::io("create", &tmp))?;
        f.write_all(&buf).map_err(StoreError::io("write", &tmp))?;
        f.sync_all().map_err(StoreError::io("fsync", &tmp))?;
        fs::rename(&tmp, &self.path).map_err(StoreError::io("rename", &self.path))?;
        if let Some(dir) = self.path.parent() {
            crate::store::fsync_dir(dir)?;
        }
        log.file = open_append(&self.path)?;
        log.len = buf.len() as u64;
        let mut mem = self.records.write().unwrap_or_else(|p| p.into_inner());
        mem.records.drain(..dropped);
        mem.base += dropped as u64;
        Ok(dropped)
    }
}

/// A peer's cursor: the last sequence number it acknowledged.
pub(crate) fn read_cursor(dir: &Path, peer: &str) -> u64 {
    fs::read_to_string(dir.join("cursors").join(peer))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tags::{Stamp, TagClock};

    fn change(n: u64) -> Change {
        Change::Tag {
            repo: "a".into(),
            tag: format!("t{n}"),
            version: TagVersion {
                digest: None,
                stamp: Stamp {
                    clock: TagClock {
                        wall_ms: n,
                        logical: 0,
                    },
                    replica: "r".into(),
                },
            },
        }
    }

    #[test]
    fn survives_reopen_and_drops_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = ChangeLog::open(dir.path()).unwrap();
            log.append(vec![change(1), change(2)]).unwrap();
            log.append(vec![change(3)]).unwrap();
        }
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("log"))
            .unwrap();
        f.write_all(b"{\"seq\":4,\"at_ms\":1,\"chan").unwrap();
        drop(f);
        let log = ChangeLog::open(dir.path()).unwrap();
        assert_eq!(log.head(), 3);
        assert_eq!(log.after(1, 10).len(), 2);
        assert_eq!(log.get(3).unwrap().change, change(3));
        log.append(vec![change(4)]).unwrap();
        drop(log);
        assert_eq!(ChangeLog::open(dir.path()).unwrap().head(), 4);
    }

    #[test]
    fn compaction_keeps_sequence_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let log = ChangeLog::open(dir.path()).unwrap();
        log.append((1..=5).map(change).collect()).unwrap();
        assert_eq!(log.compact(3).unwrap(), 3);
        assert_eq!(log.compact(3).unwrap(), 0);
        assert_eq!((log.base(), log.head()), (3, 5));
        assert_eq!(log.after(0, 10).len(), 2);
        assert_eq!(log.get(4).unwrap().change, change(4));
        assert!(log.get(3).is_none());
        log.append(vec![change(6)]).unwrap();
        drop(log);
        let log = ChangeLog::open(dir.path()).unwrap();
        assert_eq!((log.base(), log.head()), (3, 6));
        assert_eq!(log.after(4, 10)[0].seq, 5);
    }
}
