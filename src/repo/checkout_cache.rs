//! The last in-memory checkout made through a repository handle, kept decoded and verified, so that the
//! next checkout applies its deltas to those chunks instead of decoding their whole chain again.
//!
//! Checking out every snapshot of a run in order (an evaluation loop, `stage_profile`) decoded
//! each snapshot's chain from its keyframe: rANS decoded 3.6x the bytes checked out on
//! cnn-digits (BENCHMARKS.md). A chunk is known by the hash of its tensor's reconstruction and
//! its place, not by its object id: equal coded objects (an unchanged tensor's all-zero delta)
//! decode to different bytes against different references. Only chunks of tensors whose hash
//! checked out are kept, bounded in bytes; a new checkout replaces the set when it succeeds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::store::manifest::TensorEntry;
use crate::store::object_id::ObjectId;

/// A decoded chunk's identity: its tensor's reconstruction hash, chunk size and index.
type ChunkKey = (ObjectId, u64, usize);

/// Decoded chunks by identity (a `Vec` behind the `Arc`: a chunk decoded into one is kept as
/// it is, not copied).
type Chunks = HashMap<ChunkKey, Arc<Vec<u8>>>;

/// A tensor's identity among decoded chunks: its reconstruction hash and chunk size.
type TensorKey = (ObjectId, u64);

/// Verified decoded chunks, as a reader looks them up: shared with the cache (a file checkout,
/// a diff, a commit's references, which leave it whole), or taken out of it by an in-memory
/// checkout, which collects the next set: that one gives each chunk up once the last of its
/// users it expects has it, so the set being replaced shrinks as the next one grows (holding
/// both whole made an evaluation loop's peak three copies of the model, with the tensors it
/// returns; BENCHMARKS.md "Caches sized to the machine").
pub(crate) enum KnownChunks {
    Shared(Arc<Chunks>),
    Taken(Mutex<Taken>),
}

impl Default for KnownChunks {
    fn default() -> Self {
        KnownChunks::Shared(Arc::default())
    }
}

/// Chunks taken out of the cache, and how many users each tensor's chunks still expect.
pub(crate) struct Taken {
    chunks: Chunks,
    /// Users expected per chunk of a tensor ([`expect_use`]); a tensor not counted keeps its
    /// chunks until the reader is dropped.
    users: HashMap<TensorKey, usize>,
    /// Users still to come per chunk, once the chunk was first looked up.
    left: HashMap<ChunkKey, usize>,
}

fn key(entry: &TensorEntry, i: usize) -> ChunkKey {
    (entry.hash, entry.chunk_bytes, i)
}

fn tensor_key(entry: &TensorEntry) -> TensorKey {
    (entry.hash, entry.chunk_bytes)
}

/// The chunks of the last successful checkout, up to `limit` bytes.
pub(crate) struct CheckoutCache {
    limit: usize,
    known: Mutex<Arc<Chunks>>,
}

impl std::fmt::Debug for CheckoutCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckoutCache")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl CheckoutCache {
    pub fn new(limit: usize) -> CheckoutCache {
        CheckoutCache {
            limit,
            known: Mutex::new(Arc::default()),
        }
    }

    /// What the last checkout left, for a reader to look chunks up in.
    pub fn known(&self) -> KnownChunks {
        KnownChunks::Shared(self.known.lock().expect("checkout cache lock").clone())
    }

    /// What the last checkout left, taken out of the cache for an in-memory checkout to use up
    /// (it puts its own chunks in with [`CheckoutCache::replace`]; one that fails leaves the
    /// cache empty). Shared with a reader still running, the chunks are shared, not copied.
    pub fn take(&self) -> KnownChunks {
        let shared = std::mem::take(&mut *self.known.lock().expect("checkout cache lock"));
        let chunks = Arc::try_unwrap(shared).unwrap_or_else(|shared| (*shared).clone());
        KnownChunks::Taken(Mutex::new(Taken {
            chunks,
            users: HashMap::new(),
            left: HashMap::new(),
        }))
    }

    /// Collects the chunks of a checkout about to run.
    pub fn collector(&self) -> Collector {
        Collector {
            limit: self.limit,
            taken: Mutex::new((HashMap::new(), 0)),
        }
    }

    /// Puts back chunks [`CheckoutCache::take`] gave a checkout that stopped before it
    /// decoded anything, unless another checkout has filled the cache since.
    pub fn give_back(&self, known: KnownChunks) {
        let KnownChunks::Taken(taken) = known else {
            return;
        };
        let chunks = taken.into_inner().expect("taken chunks lock").chunks;
        let mut cached = self.known.lock().expect("checkout cache lock");
        if cached.is_empty() {
            *cached = Arc::new(chunks);
        }
    }

    /// Keeps what a successful checkout collected, in place of the last one's.
    pub fn replace(&self, collected: Collector) {
        if self.limit == 0 {
            return;
        }
        let (chunks, _) = collected.taken.into_inner().expect("collector lock");
        *self.known.lock().expect("checkout cache lock") = Arc::new(chunks);
    }
}

/// Decoded chunks of one checkout, offered as they are handed on; the chunks of a tensor whose
/// hash then fails are dropped again.
pub(crate) struct Collector {
    limit: usize,
    /// The chunks, and their bytes in all.
    taken: Mutex<(Chunks, usize)>,
}

impl Collector {
    /// Keeps a copy of chunk `i` of `entry` if there is room (the checkout hands the chunk
    /// itself on).
    pub fn offer(&self, entry: &TensorEntry, i: usize, bytes: &[u8]) {
        if self.has_room(bytes.len()) {
            self.keep(entry, i, bytes.to_vec());
        }
    }

    /// Keeps chunk `i` of `entry` itself if there is room (the checkout copied it out).
    pub fn keep(&self, entry: &TensorEntry, i: usize, bytes: Vec<u8>) {
        let mut taken = self.taken.lock().expect("collector lock");
        if taken.1 + bytes.len() > self.limit {
            return;
        }
        taken.1 += bytes.len();
        taken.0.insert(key(entry, i), Arc::new(bytes));
    }

    /// Whether `len` more bytes fit (checked again when they are kept: another thread may fill
    /// the room first).
    fn has_room(&self, len: usize) -> bool {
        self.taken.lock().expect("collector lock").1 + len <= self.limit
    }

    /// Drops every chunk kept of `entry` (its reconstruction did not match its hash).
    pub fn discard(&self, entry: &TensorEntry) {
        let mut taken = self.taken.lock().expect("collector lock");
        let (chunks, bytes) = &mut *taken;
        chunks.retain(|k, v| {
            let gone = k.0 == entry.hash && k.1 == entry.chunk_bytes;
            if gone {
                *bytes -= v.len();
            }
            !gone
        });
    }
}

/// Whether a verified checkout decoded chunk `i` of `entry`.
pub(crate) fn holds(known: &KnownChunks, entry: &TensorEntry, i: usize) -> bool {
    match known {
        KnownChunks::Shared(chunks) => chunks.contains_key(&key(entry, i)),
        KnownChunks::Taken(taken) => taken
            .lock()
            .expect("taken chunks lock")
            .chunks
            .contains_key(&key(entry, i)),
    }
}

/// Tells taken chunks that each chunk of `entry` has one more user to come (the reader
/// counts them while it plans: a chunk given up too early would be decoded from objects it
/// did not locate). Nothing for shared chunks.
pub(crate) fn expect_use(known: &KnownChunks, entry: &TensorEntry) {
    if let KnownChunks::Taken(taken) = known {
        let mut taken = taken.lock().expect("taken chunks lock");
        *taken.users.entry(tensor_key(entry)).or_default() += 1;
    }
}

/// Chunk `i` of `entry`, if a verified checkout decoded it (shared, not copied: most are only
/// read, as the reference of the next snapshot's delta). Taken chunks are given up at their
/// last expected user.
pub(crate) fn lookup(known: &KnownChunks, entry: &TensorEntry, i: usize) -> Option<Arc<Vec<u8>>> {
    let k = key(entry, i);
    match known {
        KnownChunks::Shared(chunks) => chunks.get(&k).cloned(),
        KnownChunks::Taken(taken) => {
            let mut taken = taken.lock().expect("taken chunks lock");
            let Taken {
                chunks,
                users,
                left,
            } = &mut *taken;
            let Some(&expected) = users.get(&tensor_key(entry)) else {
                return chunks.get(&k).cloned();
            };
            let bytes = chunks.get(&k).cloned()?;
            let left = left.entry(k).or_insert(expected);
            *left = left.saturating_sub(1);
            if *left == 0 {
                chunks.remove(&k);
            }
            Some(bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(hash: u8) -> TensorEntry {
        TensorEntry {
            hash: ObjectId([hash; 32]),
            source_hash: ObjectId([hash; 32]),
            chunk_bytes: 4,
            ..TensorEntry::minimal(&format!("t{hash}"), 8)
        }
    }

    #[test]
    fn taken_chunks_are_given_up_at_their_last_expected_user() {
        let cache = CheckoutCache::new(1 << 20);
        let collector = cache.collector();
        let (a, b) = (entry(1), entry(2));
        for i in 0..2 {
            collector.keep(&a, i, vec![i as u8; 4]);
            collector.keep(&b, i, vec![9; 4]);
        }
        cache.replace(collector);
        let known = cache.take();
        assert!(holds(&known, &a, 0) && !holds(&cache.known(), &a, 0));
        expect_use(&known, &a);
        expect_use(&known, &a);
        // Two users of each of a's chunks: the second takes it out.
        assert_eq!(lookup(&known, &a, 1).as_deref(), Some(&vec![1; 4]));
        assert!(holds(&known, &a, 1));
        assert_eq!(lookup(&known, &a, 1).as_deref(), Some(&vec![1; 4]));
        assert!(!holds(&known, &a, 1) && holds(&known, &a, 0));
        assert_eq!(lookup(&known, &a, 1), None);
        // b was not counted: looked up as often as asked, kept until the reader goes.
        for _ in 0..3 {
            assert_eq!(lookup(&known, &b, 0).as_deref(), Some(&vec![9; 4]));
        }
        assert!(holds(&known, &b, 0));
    }
}
