//! Ordering of concurrent writes across replicas: [`TagClock`] (a hybrid logical clock),
//! [`Stamp`] = (clock, replica id), and the merge rules that make replicas converge:
//! a tag is a last-writer-wins register that keeps its whole history, and a link (a blob
//! or manifest in a repository) is present unless a later tombstone says otherwise.
//! Wall time alone never decides an order.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// A hybrid logical clock reading: physical milliseconds plus a logical counter that
/// orders events within the same millisecond or behind a peer whose clock runs ahead.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct TagClock {
    /// Milliseconds since the Unix epoch (the largest ever seen, not necessarily now).
    pub wall_ms: u64,
    /// Counter within `wall_ms`.
    pub logical: u32,
}

/// The replica's clock source: every local write takes `tick()`, every received
/// stamp is `observe()`d, so a write that follows another anywhere is ordered after it.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    // A std Mutex: the critical section is a few integer operations, never across .await.
    last: Mutex<TagClock>,
}

impl Clock {
    pub(crate) fn tick(&self) -> TagClock {
        self.tick_at(now_ms())
    }

    fn tick_at(&self, physical: u64) -> TagClock {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        *last = if physical > last.wall_ms {
            TagClock {
                wall_ms: physical,
                logical: 0,
            }
        } else {
            TagClock {
                wall_ms: last.wall_ms,
                logical: last.logical.saturating_add(1),
            }
        };
        *last
    }

    /// The latest reading handed out or observed.
    pub(crate) fn last(&self) -> TagClock {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves the clock past a remote reading.
    pub(crate) fn observe(&self, remote: TagClock) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if remote > *last {
            *last = remote;
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Total order of writes: clock first, then replica id to break ties.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// When (logically).
    pub clock: TagClock,
    /// Where.
    pub replica: String,
}

/// One write of a tag: a digest, or `None` for a delete (a tombstone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TagVersion {
    /// What the tag pointed to; `None` is a tombstone.
    pub(crate) digest: Option<Digest>,
    /// The write's order.
    pub(crate) stamp: Stamp,
}

/// Every version a tag has had, ordered by stamp; the last one is current.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TagHistory {
    /// Versions, oldest first.
    pub(crate) versions: Vec<TagVersion>,
}

impl TagHistory {
    /// The winning version (the largest stamp).
    pub(crate) fn current(&self) -> Option<&TagVersion> {
        self.versions.last()
    }

    /// The digest the tag resolves to, unless deleted.
    pub(crate) fn current_digest(&self) -> Option<&Digest> {
        self.current().and_then(|v| v.digest.as_ref())
    }

    /// Adds a version (set union); returns whether the history changed.
    pub(crate) fn merge(&mut self, v: TagVersion) -> bool {
        match self.versions.binary_search_by(|x| x.stamp.cmp(&v.stamp)) {
            Ok(_) => false,
            Err(i) => {
                self.versions.insert(i, v);
                true
            }
        }
    }
}

/// A blob or manifest linked into a repository: present while no tombstone is newer
/// than the latest add. Merging takes the max of each stamp, so it commutes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LinkState {
    /// Media type (manifests: as pushed; blobs: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) media_type: Option<String>,
    /// Size in bytes.
    pub(crate) size: u64,
    /// The latest add.
    pub(crate) added: Stamp,
    /// The latest delete, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) deleted: Option<Stamp>,
}

impl LinkState {
    /// Whether the link is present.
    pub(crate) fn live(&self) -> bool {
        self.deleted.as_ref().is_none_or(|d| *d < self.added)
    }

    /// Merges another replica's view; returns whether `self` changed.
    pub(crate) fn merge(&mut self, other: &LinkState) -> bool {
        let before = self.clone();
        if other.added > self.added {
            self.added = other.added.clone();
            if other.media_type.is_some() {
                self.media_type = other.media_type.clone();
            }
            self.size = other.size;
        }
        if other.deleted > self.deleted {
            self.deleted = other.deleted.clone();
        }
        if self.media_type.is_none() {
            self.media_type = other.media_type.clone();
        }
        *self != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(wall_ms: u64, logical: u32, replica: &str) -> Stamp {
        Stamp {
            clock: TagClock { wall_ms, logical },
            replica: replica.to_owned(),
        }
    }

    #[test]
    fn clock_is_monotonic_even_when_wall_time_goes_back() {
        let c = Clock::default();
        let a = c.tick_at(1000);
        let b = c.tick_at(900);
        let d = c.tick_at(1000);
        assert!(a < b && b < d, "{a:?} {b:?} {d:?}");
        c.observe(TagClock {
            wall_ms: 5000,
            logical: 7,
        });
        assert_eq!(
            c.tick_at(1000),
            TagClock {
                wall_ms: 5000,
                logical: 8
            }
        );
    }

    #[test]
    fn stamp_order_is_clock_then_replica() {
        assert!(stamp(1, 0, "z") < stamp(1, 1, "a"));
        assert!(stamp(1, 1, "a") < stamp(1, 1, "b"));
        assert!(stamp(1, 9, "z") < stamp(2, 0, "a"));
    }

    #[test]
    fn tag_merge_commutes_and_keeps_losers() {
        let d1 = Digest::sha256(b"one");
        let d2 = Digest::sha256(b"two");
        let v1 = TagVersion {
            digest: Some(d1.clone()),
            stamp: stamp(10, 0, "a"),
        };
        let v2 = TagVersion {
            digest: Some(d2.clone()),
            stamp: stamp(10, 0, "b"),
        };
        let mut x = TagHistory::default();
        assert!(x.merge(v1.clone()));
        assert!(x.merge(v2.clone()));
        assert!(!x.merge(v2.clone()));
        let mut y = TagHistory::default();
        y.merge(v2);
        y.merge(v1);
        assert_eq!(x, y);
        assert_eq!(x.current_digest(), Some(&d2));
        assert_eq!(x.versions.len(), 2);
    }

    #[test]
    fn link_tombstone_wins_only_when_newer() {
        let mut l = LinkState {
            media_type: None,
            size: 3,
            added: stamp(5, 0, "a"),
            deleted: None,
        };
        let del = LinkState {
            deleted: Some(stamp(6, 0, "b")),
            ..l.clone()
        };
        assert!(l.merge(&del));
        assert!(!l.live());
        let readd = LinkState {
            added: stamp(7, 0, "a"),
            ..l.clone()
        };
        let mut m = readd.clone();
        assert!(!m.merge(&l));
        assert!(l.merge(&readd));
        assert!(l.live() && m.live());
        assert_eq!(l, m);
    }
}
