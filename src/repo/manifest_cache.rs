//! Parsed manifests kept by a repository handle, so that a handle checking out or walking many
//! snapshots (an evaluation loop, `HEAD~k`, the log) decompresses and parses each manifest once.
//!
//! A manifest is named by the hash of its bytes, so a kept one never goes stale; a reader still
//! looks its id up in the index first, so a snapshot removed since (gc) is not found through
//! the cache. Bounded by the manifests' JSON bytes, least recently used out first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::store::manifest::Manifest;
use crate::store::object_id::ObjectId;

/// JSON bytes of the manifests kept: a 1,000-tensor model's manifest is ~300 KB, so this holds
/// a run of ~100 snapshots of it.
const LIMIT_BYTES: usize = 32 << 20;

#[derive(Default)]
struct Kept {
    manifests: HashMap<ObjectId, (Arc<Manifest>, usize, u64)>,
    bytes: usize,
    clock: u64,
}

/// Manifests by id, shared by the readers of one handle (and its clones).
#[derive(Default)]
pub(crate) struct ManifestCache {
    kept: Mutex<Kept>,
}

impl std::fmt::Debug for ManifestCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept = self.kept.lock().expect("manifest cache lock");
        f.debug_struct("ManifestCache")
            .field("manifests", &kept.manifests.len())
            .field("bytes", &kept.bytes)
            .finish()
    }
}

impl ManifestCache {
    /// The manifest `id` if kept.
    pub fn get(&self, id: &ObjectId) -> Option<Arc<Manifest>> {
        let mut kept = self.kept.lock().expect("manifest cache lock");
        kept.clock += 1;
        let now = kept.clock;
        let (manifest, _, used) = kept.manifests.get_mut(id)?;
        *used = now;
        Some(manifest.clone())
    }

    /// Keeps `manifest` (`json_bytes` long), dropping the least recently used past the limit.
    pub fn insert(&self, id: ObjectId, manifest: Arc<Manifest>, json_bytes: usize) {
        if json_bytes > LIMIT_BYTES {
            return;
        }
        let mut kept = self.kept.lock().expect("manifest cache lock");
        kept.clock += 1;
        let now = kept.clock;
        if let Some((_, old, _)) = kept.manifests.insert(id, (manifest, json_bytes, now)) {
            kept.bytes -= old;
        }
        kept.bytes += json_bytes;
        while kept.bytes > LIMIT_BYTES {
            let oldest = kept
                .manifests
                .iter()
                .min_by_key(|(_, (_, _, used))| *used)
                .map(|(id, _)| *id)
                .expect("bytes over the limit means a manifest is kept");
            let (_, size, _) = kept.manifests.remove(&oldest).expect("just found");
            kept.bytes -= size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(message: &str) -> Arc<Manifest> {
        let mut m = Manifest::minimal();
        m.message = message.to_string();
        Arc::new(m)
    }

    #[test]
    fn keeps_the_recently_used_within_the_limit() {
        let cache = ManifestCache::default();
        let id = |k: u8| ObjectId([k; 32]);
        let third = LIMIT_BYTES / 3;
        cache.insert(id(1), manifest("one"), third);
        cache.insert(id(2), manifest("two"), third);
        cache.insert(id(3), manifest("three"), third);
        assert_eq!(cache.get(&id(1)).unwrap().message, "one");
        // Over the limit: 2 is the least recently used.
        cache.insert(id(4), manifest("four"), third);
        assert!(cache.get(&id(2)).is_none());
        for (k, m) in [(1, "one"), (3, "three"), (4, "four")] {
            assert_eq!(cache.get(&id(k)).unwrap().message, m);
        }
        // Too large to keep at all, and nothing else dropped for it.
        cache.insert(id(5), manifest("five"), LIMIT_BYTES + 1);
        assert!(cache.get(&id(5)).is_none());
        assert!(cache.get(&id(1)).is_some());
        // Inserting an id again replaces it without counting it twice.
        cache.insert(id(1), manifest("one"), third);
        assert_eq!(cache.kept.lock().unwrap().bytes, 3 * third);
    }
}
