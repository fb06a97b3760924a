//! Reading snapshots back: manifests, object locations and the chunk decoder that follows
//! delta references. Everything a read needs is gathered while the index is open, so decoding
//! runs with the index closed and other processes free to commit.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::codec::chunk::{self, ChunkCodec};
use crate::codec::lossy::{self, CpuQuant, QuantEngine};
use crate::error::{Error, Result};
use crate::store::index::{Index, Location};
use crate::store::manifest::{Manifest, ManifestSummary, TensorEntry, TensorRef};
use crate::store::object_bytes::ObjectBytes;
use crate::store::object_id::ObjectId;
use crate::store::pack::{ObjectKind, PackReader};

use super::checkout_cache::{self, KnownChunks};
use super::manifest_cache::ManifestCache;

/// Plain lattice deltas applied in one pass over a chunk: their decoded codes are held together
/// (4 bytes per element each), so the pass is bounded to keep memory at a few chunks per thread.
const LATTICE_RUN: usize = 8;

/// Reference links [`ObjectReader::read_ahead`] follows from a chunk: a chain is at most a
/// keyframe interval long (default 10), and a longer one is read on demand past this.
const AHEAD_DEPTH: usize = 16;

/// Objects a checkout from a remote downloaded and verified, kept in an unnamed temp file and
/// read back as the decoder needs them: held in memory, a long chain of a large tensor took
/// several times the tensor (128 MiB six snapshots deep: 626 MB, against 63 MB checked out
/// locally).
#[derive(Default)]
pub(crate) struct Spool {
    file: Option<std::fs::File>,
    /// Where each object lies in the file, and its length.
    at: HashMap<ObjectId, (u64, usize)>,
    end: u64,
}

impl Spool {
    /// A spool writing into `file` (empty, read and write).
    pub fn new(file: std::fs::File) -> Spool {
        Spool {
            file: Some(file),
            at: HashMap::new(),
            end: 0,
        }
    }

    /// Appends object `id`'s bytes (once; a second copy is not kept).
    pub fn append(&mut self, id: ObjectId, bytes: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        if self.at.contains_key(&id) {
            return Ok(());
        }
        let file = self.file.as_ref().expect("a spool made with a file");
        file.write_all_at(bytes, self.end)?;
        self.at.insert(id, (self.end, bytes.len()));
        self.end += bytes.len() as u64;
        Ok(())
    }

    fn holds(&self, id: &ObjectId) -> bool {
        self.at.contains_key(id)
    }

    /// The bytes of `id`, if it was appended.
    fn read(&self, id: &ObjectId) -> Option<Result<Vec<u8>>> {
        use std::os::unix::fs::FileExt;
        let &(offset, len) = self.at.get(id)?;
        let file = self.file.as_ref()?;
        let mut bytes = vec![0u8; len];
        Some(
            file.read_exact_at(&mut bytes, offset)
                .map(|()| bytes)
                .map_err(|e| Error::io("(a remote checkout's spool file)", e)),
        )
    }
}

/// Packs a reader keeps open at once. A walk over the history reads a pack per snapshot (one
/// per commit), and keeping each open ran out of file descriptors on a long history: `log` on
/// 207 snapshots failed under `ulimit -n 100` ("Too many open files"), and a soft limit of
/// 1,024 is common (macOS: 256).
const OPEN_PACKS: usize = 64;

/// The packs a reader has open, least recently used closed first past [`OPEN_PACKS`].
#[derive(Default)]
struct OpenPacks {
    by_name: HashMap<String, (Arc<PackReader>, u64)>,
    clock: u64,
}

/// Decodes tensors of already-loaded snapshots.
pub(crate) struct ObjectReader {
    packs_dir: PathBuf,
    locations: HashMap<ObjectId, Location>,
    manifests: HashMap<ObjectId, Arc<Manifest>>,
    /// Manifests parsed by earlier readers of the same handle.
    parsed: Option<Arc<ManifestCache>>,
    packs: Mutex<OpenPacks>,
    /// Objects handed in already read and verified (a checkout from a remote).
    spool: Spool,
    /// Runs the dequantizer of lossy chunks.
    engine: Arc<dyn QuantEngine>,
    /// Chunks a verified checkout through the same handle decoded (none by default).
    known: KnownChunks,
    /// Objects read ahead of the decoder ([`ObjectReader::read_ahead`]), taken on first use.
    ahead: Mutex<HashMap<ObjectId, ObjectBytes>>,
    /// Whether each object read is hashed against its id (the default); see
    /// [`ObjectReader::hash_tensors_only`].
    hash_objects: bool,
    /// Whether a pack's trailer may answer lookups (see [`ObjectReader::locating_by_trailers`]),
    /// and per pack the lookups the index answered there and its object count.
    by_trailers: bool,
    index_hits: HashMap<String, (u64, u64)>,
    /// Lookups the index answered (tests count them).
    #[cfg(test)]
    index_lookups: usize,
}

/// Trailer entries one index lookup is worth: a lookup in a large index pulls a page (~25 us on
/// 200 snapshots of 10,000 tensors, a 1 GB index), a trailer entry costs ~0.1 us to read and
/// keep. A pack's trailer is taken once the index has answered this many fewer lookups there
/// than the pack holds objects.
const TRAILER_ENTRIES_PER_LOOKUP: u64 = 256;

impl ObjectReader {
    /// A reader decoding lossy chunks on the CPU.
    pub fn new(packs_dir: PathBuf) -> Self {
        ObjectReader::with_engine(packs_dir, Arc::new(CpuQuant))
    }

    /// A reader decoding lossy chunks on `engine`.
    pub fn with_engine(packs_dir: PathBuf, engine: Arc<dyn QuantEngine>) -> Self {
        ObjectReader {
            packs_dir,
            locations: HashMap::new(),
            manifests: HashMap::new(),
            parsed: None,
            packs: Mutex::new(OpenPacks::default()),
            spool: Spool::default(),
            engine,
            known: KnownChunks::default(),
            ahead: Mutex::new(HashMap::new()),
            hash_objects: true,
            by_trailers: false,
            index_hits: HashMap::new(),
            #[cfg(test)]
            index_lookups: 0,
        }
    }

    /// The same reader taking the locations of a pack's other objects from its trailer once
    /// the index has placed enough lookups there ([`TRAILER_ENTRIES_PER_LOOKUP`]): a snapshot's
    /// chunks, and those of the chain it is coded against, sit in a few packs, so a checkout
    /// of 10,000 tensors looked up ~10,000 objects one by one in the index, most of its time on
    /// a long history. A trailer lists what its pack holds (it is checked against its hash, and
    /// every object read against its id), and the pack is one the index names while this
    /// reader holds it. Not for `fsck`, which checks that the index places every object.
    pub fn locating_by_trailers(mut self) -> Self {
        self.by_trailers = true;
        self
    }

    /// The same reader taking parsed manifests from `parsed` (and leaving the ones it parses).
    pub fn with_manifest_cache(mut self, parsed: Arc<ManifestCache>) -> Self {
        self.parsed = Some(parsed);
        self
    }

    /// The decoded chunks this reader looks up, for a reader that stops before decoding to
    /// hand back.
    pub fn into_known(self) -> KnownChunks {
        self.known
    }

    /// The same reader taking decoded chunks from `known` instead of decoding them again.
    pub fn with_known(mut self, known: KnownChunks) -> Self {
        self.known = known;
        self
    }

    /// Reads chunk objects without hashing each: for a checkout of whole tensors, which hashes
    /// every tensor it decodes (that covers its objects) and, where one fails, names the damaged
    /// object with [`ObjectReader::find_damage`]. Saves a blake3 pass over the stored bytes.
    pub fn hash_tensors_only(&mut self) {
        self.hash_objects = false;
    }

    /// Reads (and caches) a snapshot manifest.
    pub fn load_manifest(&mut self, index: &Index, id: &ObjectId) -> Result<Arc<Manifest>> {
        if let Some(m) = self.manifests.get(id) {
            return Ok(m.clone());
        }
        let m = self.read_manifest(index, id)?;
        self.manifests.insert(*id, m.clone());
        Ok(m)
    }

    /// Reads a snapshot manifest without keeping it in this reader (the handle's cache, which
    /// is bounded, may keep it): for walks over every snapshot. Kept, a history of 200
    /// snapshots of 10,000 tensors held 1.5 GiB of parsed manifests (`benches/many_tensors.sh`).
    pub fn read_manifest(&mut self, index: &Index, id: &ObjectId) -> Result<Arc<Manifest>> {
        if let Some(m) = self.manifests.get(id) {
            return Ok(m.clone());
        }
        let loc = self.locate(index, id)?;
        if loc.entry.kind != ObjectKind::Manifest {
            return Err(Error::UnknownRef(id.hex()));
        }
        let kept = self.parsed.as_ref().and_then(|p| p.get(id));
        let m = match kept {
            Some(m) => m,
            None => {
                let bytes = self.read_object(id)?;
                let (m, json_bytes) = Manifest::from_bytes_sized(&bytes, id)?;
                let m = Arc::new(m);
                if let Some(parsed) = &self.parsed {
                    parsed.insert(*id, m.clone(), json_bytes);
                }
                m
            }
        };
        Ok(m)
    }

    /// A snapshot's [`ManifestSummary`] (what `log` shows): from its manifest where this reader
    /// or the handle holds it parsed, else read without building its tensor entries.
    pub fn read_summary(&mut self, index: &Index, id: &ObjectId) -> Result<ManifestSummary> {
        let parsed = self.manifests.get(id).cloned();
        if let Some(m) = parsed.or_else(|| self.parsed.as_ref().and_then(|p| p.get(id))) {
            return Ok(ManifestSummary::of(&m));
        }
        let loc = self.locate(index, id)?;
        if loc.entry.kind != ObjectKind::Manifest {
            return Err(Error::UnknownRef(id.hex()));
        }
        ManifestSummary::from_bytes(&self.read_object(id)?, id)
    }

    /// Where an object is: from what this reader has located (a pack's trailer included, see
    /// [`ObjectReader::locating_by_trailers`]), else from the index.
    pub fn locate(&mut self, index: &Index, id: &ObjectId) -> Result<Location> {
        if let Some(l) = self.locations.get(id) {
            return Ok(l.clone());
        }
        let loc = index
            .locate(id)?
            .ok_or_else(|| Error::MissingObject { id: id.hex() })?;
        self.locations.insert(*id, loc.clone());
        #[cfg(test)]
        {
            self.index_lookups += 1;
        }
        if self.by_trailers {
            self.count_index_hit(&loc.pack);
        }
        Ok(loc)
    }

    /// Counts a lookup the index answered in `pack`, and takes the pack's trailer once that
    /// is cheaper than asking the index for the rest. A pack that cannot be read here is left
    /// to the read that needs it to name the problem.
    fn count_index_hit(&mut self, pack: &str) {
        if !self.index_hits.contains_key(pack) {
            let Ok(objects) = self.pack(pack).and_then(|p| p.object_count()) else {
                return;
            };
            self.index_hits.insert(pack.to_string(), (0, objects));
        }
        let (hits, objects) = self.index_hits.get_mut(pack).expect("counted above");
        // u64::MAX: the trailer was taken.
        if *hits == u64::MAX {
            return;
        }
        *hits += 1;
        if hits.saturating_mul(TRAILER_ENTRIES_PER_LOOKUP) < *objects {
            return;
        }
        *hits = u64::MAX;
        let Ok(entries) = self.pack(pack).and_then(|p| p.entries()) else {
            return;
        };
        for entry in entries {
            self.locations.entry(entry.id).or_insert_with(|| Location {
                pack: pack.to_string(),
                entry,
            });
        }
    }

    /// Loads every manifest and chunk location needed to decode `entries`, following delta
    /// references down to their keyframes, or to a reference whose chunks the checkout cache
    /// holds (the decoder starts from those; an evaluation loop checking out snapshot after
    /// snapshot through one handle looked up every chain's objects in the index each time).
    pub fn load_closure<'a>(
        &mut self,
        index: &Index,
        entries: impl IntoIterator<Item = &'a TensorEntry>,
    ) -> Result<()> {
        let mut todo: Vec<TensorEntry> = entries.into_iter().cloned().collect();
        let held = |known: &KnownChunks, e: &TensorEntry| {
            (0..e.chunks.len()).all(|i| checkout_cache::holds(known, e, i))
        };
        // Each use of a cached tensor's chunks counted, so taken chunks go at their last.
        for e in todo.iter().filter(|e| held(&self.known, e)) {
            checkout_cache::expect_use(&self.known, e);
        }
        while let Some(entry) = todo.pop() {
            for c in &entry.chunks {
                self.locate(index, &c.id)?;
            }
            if let Some(r) = &entry.reference {
                let m = self.load_manifest(index, &r.snapshot)?;
                let next = m.tensor(&r.tensor).ok_or_else(|| Error::TensorNotFound {
                    tensor: r.tensor.clone(),
                    snapshot: r.snapshot.hex(),
                })?;
                let cached = held(&self.known, next);
                if cached {
                    checkout_cache::expect_use(&self.known, next);
                }
                let located = next
                    .chunks
                    .iter()
                    .all(|c| self.locations.contains_key(&c.id));
                if !cached && (!located || next.reference.is_some()) {
                    todo.push(next.clone());
                }
            }
        }
        Ok(())
    }

    /// Hands in objects read elsewhere (from a remote), each verified by the caller against
    /// its id: reads of them come from the spool, without an index or a pack.
    pub fn set_spool(&mut self, spool: Spool) {
        self.spool = spool;
    }

    /// Hands in a parsed manifest (read from a remote and verified against its id).
    pub fn insert_manifest(&mut self, id: ObjectId, manifest: Arc<Manifest>) {
        self.manifests.insert(id, manifest);
    }

    /// A loaded manifest.
    pub fn manifest(&self, id: &ObjectId) -> Option<&Arc<Manifest>> {
        self.manifests.get(id)
    }

    /// Reads, in pack order, the objects that decoding chunk `i` of each `(entry, i)` will
    /// read: the chunk's own and those of its reference chain (up to [`AHEAD_DEPTH`] links,
    /// stopping where the checkout cache holds the chunk), so a thread can read them while
    /// others decode. An object that fails to read is left out: the decoder reads it again and
    /// reports the error with its context.
    pub fn read_ahead<'a>(
        &self,
        jobs: impl Iterator<Item = (&'a TensorEntry, usize)>,
    ) -> HashMap<ObjectId, ObjectBytes> {
        let mut ids = Vec::new();
        for (entry, i) in jobs {
            self.chain_ids(entry, i, AHEAD_DEPTH, &mut ids);
        }
        let mut places: Vec<(&Location, ObjectId)> = ids
            .into_iter()
            .filter(|id| !self.spool.holds(id))
            .filter_map(|id| Some((self.locations.get(&id)?, id)))
            .collect();
        places.sort_by(|a, b| (&a.0.pack, a.0.entry.offset).cmp(&(&b.0.pack, b.0.entry.offset)));
        places.dedup_by_key(|p| p.1);
        places
            .into_iter()
            .filter_map(|(_, id)| Some((id, self.read_from_pack(&id, self.hash_objects).ok()?)))
            .collect()
    }

    /// The objects chunk `i` of `entry` and its reference chain (up to `depth` links) are
    /// stored in, pushed to `ids`.
    fn chain_ids(&self, entry: &TensorEntry, i: usize, depth: usize, ids: &mut Vec<ObjectId>) {
        let mut e = entry;
        for _ in 0..=depth {
            let Some(c) = e.chunks.get(i) else { return };
            if checkout_cache::holds(&self.known, e, i) {
                return;
            }
            ids.push(c.id);
            let Some(next) = e
                .reference
                .as_ref()
                .and_then(|r| self.reference_entry(r).ok())
            else {
                return;
            };
            if next.len != e.len || next.chunk_bytes != e.chunk_bytes {
                return;
            }
            e = next;
        }
    }

    /// Makes `objects` (from [`ObjectReader::read_ahead`]) the ones reads take first; those
    /// handed in before and not used are dropped.
    pub fn hand_in_ahead(&self, objects: HashMap<ObjectId, ObjectBytes>) {
        *self.ahead.lock().expect("read-ahead lock") = objects;
    }

    /// The error naming the first object that decoding chunk `i` of `entry` reads (its own,
    /// then its reference chain's) and that is missing or does not hash to its id; `None` if
    /// every one is sound.
    pub fn find_damage(&self, entry: &TensorEntry, i: usize) -> Option<Error> {
        let mut ids = Vec::new();
        self.chain_ids(entry, i, usize::MAX, &mut ids);
        // Only objects located: past a cached chunk given up since, the chain was not.
        ids.iter()
            .filter(|id| self.locations.contains_key(id) || self.spool.holds(id))
            .find_map(|id| self.read_from_pack(id, true).err())
    }

    /// Reads an object whose location was loaded, hashed against its id unless
    /// [`ObjectReader::hash_tensors_only`] was called.
    pub fn read_object(&self, id: &ObjectId) -> Result<ObjectBytes> {
        if let Some(bytes) = self.ahead.lock().expect("read-ahead lock").remove(id) {
            return Ok(bytes);
        }
        self.read_from_pack(id, self.hash_objects)
    }

    /// Reads an object from its pack (handed-in ones from the spool), hashing it if `hash`.
    fn read_from_pack(&self, id: &ObjectId, hash: bool) -> Result<ObjectBytes> {
        if let Some(bytes) = self.spool.read(id) {
            return bytes.map(ObjectBytes::Owned);
        }
        let loc = self
            .locations
            .get(id)
            .ok_or_else(|| Error::MissingObject { id: id.hex() })?;
        let pack = self.pack(&loc.pack)?;
        if hash {
            pack.read(&loc.entry)
        } else {
            pack.read_unhashed(&loc.entry)
        }
    }

    /// The pack named `name`, opened once per reader.
    fn pack(&self, name: &str) -> Result<Arc<PackReader>> {
        let mut open = self.packs.lock().expect("pack cache lock");
        open.clock += 1;
        let now = open.clock;
        if let Some((p, used)) = open.by_name.get_mut(name) {
            *used = now;
            return Ok(p.clone());
        }
        let p = Arc::new(PackReader::open(&self.packs_dir, name)?);
        if open.by_name.len() >= OPEN_PACKS {
            // A read still holding the pack keeps its file open until it is done.
            let oldest = open.by_name.iter().min_by_key(|(_, (_, used))| *used);
            if let Some(name) = oldest.map(|(name, _)| name.clone()) {
                open.by_name.remove(&name);
            }
        }
        open.by_name.insert(name.to_string(), (p.clone(), now));
        Ok(p)
    }

    fn reference_entry(&self, r: &TensorRef) -> Result<&TensorEntry> {
        let m = self
            .manifests
            .get(&r.snapshot)
            .ok_or_else(|| Error::MissingObject {
                id: r.snapshot.hex(),
            })?;
        m.tensor(&r.tensor).ok_or_else(|| Error::TensorNotFound {
            tensor: r.tensor.clone(),
            snapshot: r.snapshot.hex(),
        })
    }

    /// Decodes chunk `i` of `entry`, decoding its reference chunk first where needed.
    pub fn decode_chunk(&self, entry: &TensorEntry, i: usize) -> Result<Vec<u8>> {
        self.decode_shared(entry, i).map(Chunk::into_vec)
    }

    /// [`ObjectReader::decode_chunk`], giving a chunk the checkout cache holds without copying it.
    fn decode_shared(&self, entry: &TensorEntry, i: usize) -> Result<Chunk> {
        if let Some(bytes) = checkout_cache::lookup(&self.known, entry, i) {
            return Ok(Chunk::Known(bytes));
        }
        let what = || format!("chunk {i} of tensor {:?}", entry.name);
        let cref = entry
            .chunks
            .get(i)
            .ok_or_else(|| Error::decode(what(), "no such chunk"))?;
        let obj = self.read_object(&cref.id)?;
        let parsed = chunk::read_chunk(&obj).map_err(|p| Error::codec(what(), p))?;
        self.decode_parsed(entry, i, parsed).map(Chunk::Decoded)
    }

    /// Decodes chunk `i` of `entry`, already read and parsed as `parsed`.
    fn decode_parsed(
        &self,
        entry: &TensorEntry,
        i: usize,
        parsed: chunk::ParsedChunk<'_>,
    ) -> Result<Vec<u8>> {
        let what = || format!("chunk {i} of tensor {:?}", entry.name);
        let expected = entry.chunk_range(i).len();
        if parsed.raw_len != expected {
            return Err(Error::decode(
                what(),
                format!(
                    "holds {} bytes, manifest expects {expected}",
                    parsed.raw_len
                ),
            ));
        }
        if lossy::is_lattice_delta(&parsed) {
            return self.decode_lattice_chain(entry, i, parsed);
        }
        let reference = if chunk::needs_reference(&parsed) {
            let r = entry
                .reference
                .as_ref()
                .ok_or_else(|| Error::decode(what(), "coded against a reference but has none"))?;
            let ref_entry = self.reference_entry(r)?;
            if ref_entry.len != entry.len || ref_entry.chunk_bytes != entry.chunk_bytes {
                return Err(Error::decode(what(), "reference tensor has another layout"));
            }
            Some(self.decode_shared(ref_entry, i)?)
        } else {
            None
        };
        match parsed.codec {
            ChunkCodec::Planes => chunk::decode_lossless(parsed, reference.as_deref())
                .map_err(|p| Error::codec(what(), p)),
            ChunkCodec::LogDelta => lossy::decode(
                self.engine.as_ref(),
                entry.dtype,
                parsed,
                reference.as_deref(),
            )
            .map_err(|p| Error::codec(what(), p)),
            ChunkCodec::FrameGroup => {
                let (dims, dtype) =
                    super::plan::layout_of(entry).map_err(|p| Error::decode(what(), p))?;
                let [group]: [Vec<u8>; 1] = parsed
                    .owned_sections()
                    .try_into()
                    .map_err(|_| Error::decode(what(), "a frame group holds one section"))?;
                crate::frames::decode_group(&group, dims, dtype)
                    .map_err(|p| Error::decode(what(), p))
            }
        }
    }

    /// Decodes chunk `i` of `entry`, a lattice delta, together with the lattice deltas it was
    /// coded after: the chain is walked back to the first chunk of another kind (its keyframe),
    /// that one decoded, and the run applied to it in passes of
    /// [`LATTICE_RUN`] deltas (`lossy::decode_lattice_run`), so a deep chain costs a few passes
    /// over the chunk instead of one per snapshot.
    fn decode_lattice_chain(
        &self,
        entry: &TensorEntry,
        i: usize,
        parsed: chunk::ParsedChunk<'_>,
    ) -> Result<Vec<u8>> {
        let what = |e: &TensorEntry| format!("chunk {i} of tensor {:?}", e.name);
        // Lattice parts are decoded into their own buffers anyway: owning the sections now
        // costs nothing and lets the run outlive each object's bytes.
        let mut run = vec![parsed.into_owned()];
        let mut current = entry;
        let base = loop {
            let r = current.reference.as_ref().ok_or_else(|| {
                Error::decode(what(current), "coded against a reference but has none")
            })?;
            let ref_entry = self.reference_entry(r)?;
            if ref_entry.len != current.len || ref_entry.chunk_bytes != current.chunk_bytes {
                return Err(Error::decode(
                    what(current),
                    "reference tensor has another layout",
                ));
            }
            if let Some(bytes) = checkout_cache::lookup(&self.known, ref_entry, i) {
                break owned(bytes);
            }
            let cref = ref_entry
                .chunks
                .get(i)
                .ok_or_else(|| Error::decode(what(ref_entry), "no such chunk"))?;
            let obj = self.read_object(&cref.id)?;
            let p = chunk::read_chunk(&obj).map_err(|e| Error::codec(what(ref_entry), e))?;
            if !lossy::is_lattice_delta(&p) {
                // The chain's keyframe (or a chunk of another kind), parsed once.
                break self.decode_parsed(ref_entry, i, p)?;
            }
            run.push(p.into_owned());
            current = ref_entry;
        };
        run.reverse();
        let mut out = base;
        let mut run = run.into_iter().peekable();
        while run.peek().is_some() {
            let batch: Vec<_> = run.by_ref().take(LATTICE_RUN).collect();
            out = lossy::decode_lattice_run(entry.dtype, out, batch)
                .map_err(|p| Error::codec(what(entry), p))?;
        }
        Ok(out)
    }
}

/// A decoded chunk: decoded now, or held by the checkout cache.
enum Chunk {
    Decoded(Vec<u8>),
    Known(Arc<Vec<u8>>),
}

impl Chunk {
    fn into_vec(self) -> Vec<u8> {
        match self {
            Chunk::Decoded(v) => v,
            Chunk::Known(b) => owned(b),
        }
    }
}

/// A cached chunk's bytes to own: moved where this was its last holder (a checkout that took
/// the cache gives each chunk up at its last use), else copied.
fn owned(bytes: Arc<Vec<u8>>) -> Vec<u8> {
    Arc::try_unwrap(bytes).unwrap_or_else(|shared| shared.to_vec())
}

impl std::ops::Deref for Chunk {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Chunk::Decoded(v) => v,
            Chunk::Known(b) => b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ObjectReader;
    use crate::{CommitOptions, Dtype, Repo, TensorInput};

    /// Eight snapshots of one U32 tensor, each a delta against the one before (no keyframe
    /// after the first).
    fn chain() -> (tempfile::TempDir, Repo) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::init(dir.path()).unwrap();
        let opts = CommitOptions {
            keyframe_every: Some(100),
            ..Default::default()
        };
        for k in 0..8u32 {
            let data: Vec<u8> = (0..64u32)
                .flat_map(|i| (i * 3 + k * (i % 5 + k)).to_le_bytes())
                .collect();
            let t = TensorInput {
                name: "w".into(),
                dtype: Dtype::U32,
                shape: vec![64],
                data: &data,
            };
            repo.commit_tensors(&[t], None, &opts).unwrap();
        }
        (dir, repo)
    }

    /// A checkout prepares the locations of its chunks' whole reference chain, unless the
    /// checkout cache holds the reference (the last checkout was the parent): then the chain's
    /// objects are not looked up, and it decodes to the same bytes.
    #[test]
    fn a_cached_reference_ends_the_chain_to_locate() {
        let (_dir, repo) = chain();
        let chunk_of = |rev: &str| {
            let p = repo.prepare_checkout(rev.into(), None).unwrap();
            p.selected[0].chunks[0].id
        };
        let (own, parents) = (chunk_of("HEAD"), chunk_of("HEAD~1"));
        let keyframe = chunk_of("HEAD~7");
        let fresh = repo.prepare_checkout("HEAD".into(), None).unwrap();
        for id in [own, parents, keyframe] {
            assert!(
                fresh.reader.locations.contains_key(&id),
                "the chain down to the keyframe"
            );
        }
        let head = repo.checkout("HEAD", None).unwrap();
        repo.checkout("HEAD~1", None).unwrap();
        let after_parent = repo.prepare_checkout("HEAD".into(), None).unwrap();
        let located = &after_parent.reader.locations;
        assert!(located.contains_key(&own));
        // The parent's manifest is read (its entry is the reference), and its pack's trailer
        // then places the parent's chunk too; nothing below it is looked up.
        assert!(!located.contains_key(&keyframe));
        assert_eq!(
            after_parent.reader.index_lookups, 2,
            "HEAD's and HEAD~1's manifests"
        );
        assert_eq!(
            fresh.reader.index_lookups, 8,
            "eight manifests, chunks by trailer"
        );
        assert_eq!(repo.checkout("HEAD", None).unwrap().tensors, head.tensors);
        // Without a cache the whole chain is located again.
        let uncached = repo.clone().with_checkout_cache(0);
        uncached.checkout("HEAD~1", None).unwrap();
        let p = uncached.prepare_checkout("HEAD".into(), None).unwrap();
        assert!(p.reader.locations.contains_key(&keyframe));
    }

    /// A checkout locates most chunks through their pack's trailer, after a few lookups in the
    /// index, and decodes the same bytes as a reader asking the index for each; a reader for
    /// `fsck` asks the index for every one.
    #[test]
    fn a_packs_trailer_answers_most_lookups() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::init(dir.path()).unwrap();
        let data: Vec<Vec<u8>> = (0..1000u32)
            .map(|t| (0..16u32).flat_map(|i| (i * 7 + t).to_le_bytes()).collect())
            .collect();
        let names: Vec<String> = (0..1000).map(|t| format!("t{t}")).collect();
        let inputs: Vec<TensorInput> = names
            .iter()
            .zip(&data)
            .map(|(name, data)| TensorInput {
                name: name.clone(),
                dtype: Dtype::U32,
                shape: vec![16],
                data,
            })
            .collect();
        repo.commit_tensors(&inputs, None, &CommitOptions::default())
            .unwrap();
        let p = repo.prepare_checkout("HEAD".into(), None).unwrap();
        let chunks: Vec<_> = p.selected.iter().flat_map(|t| t.chunks.iter()).collect();
        assert_eq!(chunks.len(), 1000);
        assert!(chunks
            .iter()
            .all(|c| p.reader.locations.contains_key(&c.id)));
        // 1,001 objects in the pack: its trailer is taken at the 4th lookup (1001 / 256).
        assert!(p.reader.index_lookups <= 5, "{}", p.reader.index_lookups);
        let checkout = repo.checkout("HEAD", None).unwrap();
        for (name, data) in names.iter().zip(&data) {
            assert_eq!(&checkout.tensor(name).unwrap().data, data, "{name}");
        }
        // Index only: every chunk looked up.
        let index = repo.index_read().unwrap();
        let mut by_index = ObjectReader::new(repo.packs_dir());
        let m = by_index.load_manifest(&index, &p.snapshot).unwrap();
        by_index.load_closure(&index, &m.tensors).unwrap();
        assert_eq!(by_index.index_lookups, 1001);
    }

    /// A walk over every reachable snapshot (log, stats, status, gc) hands each manifest on and
    /// keeps none in the reader: kept, they took memory in proportion to the whole history.
    #[test]
    fn a_walk_over_the_history_keeps_no_manifest() {
        let (_dir, repo) = chain();
        let index = repo.index_read().unwrap();
        let mut reader = repo.reader();
        let mut visited = Vec::new();
        let (order, missing) =
            crate::repo::history::walk_reachable(&index, &mut reader, false, |id, m| {
                visited.push((*id, m.tensors.len()));
                Ok(())
            })
            .unwrap();
        assert_eq!(order.len(), 8);
        assert!(missing.is_empty());
        assert_eq!(visited.iter().map(|v| v.0).collect::<Vec<_>>(), order);
        assert!(visited.iter().all(|v| v.1 == 1));
        assert!(
            reader.manifests.is_empty(),
            "{} kept",
            reader.manifests.len()
        );
        // Reading one to keep (a checkout's chain) still keeps it.
        reader.load_manifest(&index, &order[0]).unwrap();
        assert_eq!(reader.manifests.len(), 1);
    }
}
