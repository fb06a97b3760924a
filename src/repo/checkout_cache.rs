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

/// Verified decoded chunks, as readers look them up.
pub(crate) type KnownChunks = Arc<Chunks>;

fn key(entry: &TensorEntry, i: usize) -> ChunkKey {
    (entry.hash, entry.chunk_bytes, i)
}

/// The chunks of the last successful checkout, up to `limit` bytes.
pub(crate) struct CheckoutCache {
    limit: usize,
    known: Mutex<KnownChunks>,
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
        self.known.lock().expect("checkout cache lock").clone()
    }

    /// Collects the chunks of a checkout about to run.
    pub fn collector(&self) -> Collector {
        Collector {
            limit: self.limit,
            taken: Mutex::new((HashMap::new(), 0)),
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
    known.contains_key(&key(entry, i))
}

/// Chunk `i` of `entry`, if a verified checkout decoded it (shared, not copied: most are only
/// read, as the reference of the next snapshot's delta).
pub(crate) fn lookup(known: &KnownChunks, entry: &TensorEntry, i: usize) -> Option<Arc<Vec<u8>>> {
    known.get(&key(entry, i)).cloned()
}
