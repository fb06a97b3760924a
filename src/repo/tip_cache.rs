//! The snapshot a [`Repo`](super::Repo) committed last, kept decoded, so the next commit on
//! that branch codes its deltas without decoding the parent's chain again (a trainer commits
//! every epoch from one process; decoding the chain was a quarter of a commit's time).
//!
//! Bounded in bytes: chunks past the bound are simply not kept and are decoded as before. The
//! bytes kept are the ones the commit coded against (the input of a lossless chunk, the
//! reconstruction of a bounded one), which is exactly what decoding the stored chunk gives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::store::object_id::ObjectId;

/// Decoded chunks of one snapshot, by tensor name and chunk index.
pub(super) type TipChunks = HashMap<(String, usize), Arc<[u8]>>;

/// The cache a repository handle carries.
pub(crate) struct TipCache {
    limit: usize,
    tip: Mutex<Option<(ObjectId, Arc<TipChunks>)>>,
}

impl std::fmt::Debug for TipCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TipCache")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl TipCache {
    /// A cache holding at most `limit` bytes of decoded chunks (0 disables it).
    pub fn new(limit: usize) -> TipCache {
        TipCache {
            limit,
            tip: Mutex::new(None),
        }
    }

    /// The decoded chunks of `snapshot`, if it is the one kept.
    pub fn chunks_of(&self, snapshot: &ObjectId) -> Option<Arc<TipChunks>> {
        let tip = self.tip.lock().unwrap_or_else(|e| e.into_inner());
        tip.as_ref()
            .filter(|(id, _)| id == snapshot)
            .map(|(_, c)| c.clone())
    }

    /// Starts collecting the chunks of a snapshot being committed.
    pub fn collector(&self) -> TipCollector {
        TipCollector {
            room: self.limit,
            chunks: HashMap::new(),
        }
    }

    /// Keeps what `collector` gathered as the decoded chunks of `snapshot`.
    pub fn keep(&self, snapshot: ObjectId, collector: TipCollector) {
        if self.limit == 0 {
            return;
        }
        let mut tip = self.tip.lock().unwrap_or_else(|e| e.into_inner());
        *tip = Some((snapshot, Arc::new(collector.chunks)));
    }
}

/// Decoded chunks gathered during one commit, up to the cache's bound.
pub(crate) struct TipCollector {
    room: usize,
    chunks: TipChunks,
}

impl TipCollector {
    /// Keeps a copy of chunk `i` of `tensor` if there is room.
    pub fn offer(&mut self, tensor: &str, i: usize, bytes: &[u8]) {
        // Checked before copying, so a chunk that does not fit costs nothing.
        if bytes.len() <= self.room {
            self.offer_shared(tensor, i, Arc::from(bytes));
        }
    }

    /// Keeps chunk `i` of `tensor` already held (by the previous tip) if there is room.
    pub fn offer_shared(&mut self, tensor: &str, i: usize, bytes: Arc<[u8]>) {
        if bytes.len() <= self.room {
            self.room -= bytes.len();
            self.chunks.insert((tensor.to_string(), i), bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_what_fits_and_only_for_its_snapshot() {
        let cache = TipCache::new(10);
        let mut c = cache.collector();
        c.offer("a", 0, &[1; 6]);
        c.offer("a", 1, &[2; 6]); // over the bound: not kept
        c.offer("b", 0, &[3; 4]);
        let id = ObjectId([7; 32]);
        cache.keep(id, c);
        let chunks = cache.chunks_of(&id).unwrap();
        assert_eq!(&*chunks[&("a".to_string(), 0)], &[1; 6]);
        assert!(!chunks.contains_key(&("a".to_string(), 1)));
        assert_eq!(&*chunks[&("b".to_string(), 0)], &[3; 4]);
        assert!(cache.chunks_of(&ObjectId([8; 32])).is_none());
    }

    #[test]
    fn a_zero_bound_keeps_nothing() {
        let cache = TipCache::new(0);
        let mut c = cache.collector();
        c.offer("a", 0, &[1; 6]);
        cache.keep(ObjectId([7; 32]), c);
        assert!(cache.chunks_of(&ObjectId([7; 32])).is_none());
    }
}
