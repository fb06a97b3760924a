//! The snapshot a [`Repo`](super::Repo) committed last, kept decoded, so the next commit on
//! that branch codes its deltas without decoding the parent's chain again (a trainer commits
//! every epoch from one process; decoding the chain was a quarter of a commit's time).
//!
//! Bounded in bytes, and kept whole or not at all: a snapshot larger than the bound is decoded
//! as before. Part of a tip saves decoding only the share it covers while holding the whole
//! bound (a 512 MiB checkpoint: 1/8 of it kept, its delta commit within noise of none kept,
//! and twice the peak memory; BENCHMARKS.md). The bytes kept are the ones the commit coded
//! against (the input of a lossless chunk, the reconstruction of a bounded one), which is
//! exactly what decoding the stored chunk gives.

use std::collections::{HashMap, HashSet};
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

    /// Takes the chunks out of the cache when they are `snapshot`'s, so a commit on top of it
    /// can free each one once used (a failed commit loses them: the next decodes the parent).
    pub fn take(&self, snapshot: &ObjectId) -> Option<TipChunks> {
        let mut tip = self.tip.lock().unwrap_or_else(|e| e.into_inner());
        if tip.as_ref().is_none_or(|(id, _)| id != snapshot) {
            return None;
        }
        let (_, chunks) = tip.take().expect("checked above");
        // Another handle's commit may still hold them: then share the chunks, not copy them.
        Some(Arc::try_unwrap(chunks).unwrap_or_else(|shared| (*shared).clone()))
    }

    /// Starts collecting the chunks of a snapshot being committed, `snapshot_bytes` in all:
    /// nothing when they do not all fit.
    pub fn collector(&self, snapshot_bytes: u64) -> TipCollector {
        let fits = snapshot_bytes <= self.limit as u64;
        TipCollector {
            room: if fits { self.limit } else { 0 },
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

/// A parent's decoded chunks taken out of the cache by the commit on top of it: each chunk is
/// dropped once its one user has it, so the old tip and the new one are not both held whole.
pub(super) struct TakenTip {
    chunks: Mutex<TipChunks>,
    /// Parent tensors more than one input uses: their chunks stay until the commit ends.
    shared: HashSet<String>,
}

impl TakenTip {
    /// `uses` names the parent tensor of each reuse or reference, once per input.
    pub fn new<'a>(chunks: TipChunks, uses: impl IntoIterator<Item = &'a str>) -> TakenTip {
        let mut seen = HashSet::new();
        let shared = uses
            .into_iter()
            .filter(|name| !seen.insert(*name))
            .map(str::to_string)
            .collect();
        TakenTip {
            chunks: Mutex::new(chunks),
            shared,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TipChunks> {
        self.chunks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True when it holds all `n` chunks of parent tensor `name`.
    pub fn holds(&self, name: &str, n: usize) -> bool {
        let chunks = self.lock();
        (0..n).all(|i| chunks.contains_key(&(name.to_string(), i)))
    }

    /// Chunk `i` of parent tensor `name`, handed over (kept when another input uses it too).
    pub fn take(&self, name: &str, i: usize) -> Option<Arc<[u8]>> {
        let mut chunks = self.lock();
        let key = (name.to_string(), i);
        if self.shared.contains(name) {
            chunks.get(&key).cloned()
        } else {
            chunks.remove(&key)
        }
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

    /// Keeps chunk `i` of `to` as the chunk `i` of `from` kept here, if it was (tied weights:
    /// one copy, which costs no room).
    pub fn share(&mut self, from: &str, to: &str, i: usize) {
        if let Some(bytes) = self.chunks.get(&(from.to_string(), i)).cloned() {
            self.chunks.insert((to.to_string(), i), bytes);
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
    fn keeps_a_snapshot_that_fits_and_only_for_its_snapshot() {
        let cache = TipCache::new(10);
        let mut c = cache.collector(10);
        c.offer("a", 0, &[1; 6]);
        c.offer("a", 1, &[2; 6]); // more than announced, over the bound: not kept
        c.offer("b", 0, &[3; 4]);
        let id = ObjectId([7; 32]);
        cache.keep(id, c);
        assert!(cache.take(&ObjectId([8; 32])).is_none());
        let chunks = cache.take(&id).unwrap();
        assert_eq!(&*chunks[&("a".to_string(), 0)], &[1; 6]);
        assert!(!chunks.contains_key(&("a".to_string(), 1)));
        assert_eq!(&*chunks[&("b".to_string(), 0)], &[3; 4]);
        // Taken: a second commit on top of it decodes the parent instead.
        assert!(cache.take(&id).is_none());
    }

    #[test]
    fn a_taken_tip_hands_each_chunk_over_once_unless_two_inputs_use_it() {
        let mut chunks = TipChunks::new();
        chunks.insert(("a".into(), 0), Arc::from(&[1u8][..]));
        chunks.insert(("b".into(), 0), Arc::from(&[2u8][..]));
        let taken = TakenTip::new(chunks, ["a", "b", "b"]);
        assert!(taken.holds("a", 1) && !taken.holds("a", 2));
        assert_eq!(taken.take("a", 0).as_deref(), Some(&[1u8][..]));
        assert_eq!(taken.take("a", 0), None);
        assert_eq!(taken.take("b", 0).as_deref(), Some(&[2u8][..]));
        assert_eq!(taken.take("b", 0).as_deref(), Some(&[2u8][..]));
    }

    #[test]
    fn a_snapshot_over_the_bound_is_not_kept_in_part() {
        let cache = TipCache::new(10);
        let mut c = cache.collector(11);
        c.offer("a", 0, &[1; 6]);
        c.offer_shared("b", 0, Arc::from(&[2u8; 5][..]));
        let id = ObjectId([7; 32]);
        cache.keep(id, c);
        assert!(cache.take(&id).is_some_and(|chunks| chunks.is_empty()));
    }

    #[test]
    fn a_zero_bound_keeps_nothing() {
        let cache = TipCache::new(0);
        let mut c = cache.collector(6);
        c.offer("a", 0, &[1; 6]);
        cache.keep(ObjectId([7; 32]), c);
        assert!(cache.take(&ObjectId([7; 32])).is_none());
    }
}
