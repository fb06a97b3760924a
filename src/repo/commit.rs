//! Commit: tensors in, one new pack and a manifest out, then a compare-and-swap of the branch.
//!
//! The work runs in three phases so the index (one process at a time) is held only briefly:
//! 1. hash every tensor and, with the index open, look up the parent snapshot, the delta
//!    references and duplicates;
//! 2. with the index closed, code the chunks on all cores, a bounded window at a time, into a
//!    new pack made durable by an atomic rename;
//! 3. with the index open again, record the pack and move the branch (retrying on a race).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::Path;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use super::input::{Input, TensorInput};
use super::plan::{self, FrameLayout, Layout, TensorPlan};
use super::reader::ObjectReader;
use super::refs::{branch_key, check_new_ref_name, check_ref_name};
use super::tip_cache::{TakenTip, TipCollector};
use super::windows::{window_bytes, windows_for_threads, MAX_WINDOW_BYTES};
use super::Repo;
use crate::codec::chunk;
use crate::codec::lossy::{self, Basis, ChunkStats, QuantEngine, Rounding};
use crate::codec::{CodecChoice, CodecResult};
use crate::dtype::Dtype;
use crate::error::{Error, Result, SafetensorsProblem};
use crate::frames::{encode_group_reconstructed, FrameBound};
use crate::safetensors_io::{canonical_header, SafetensorsFile};
use crate::store::index::Index;
use crate::store::manifest::{
    Bound, CheckpointFile, ChunkRef, Encoding, Manifest, TensorEntry, TensorRef, MANIFEST_FORMAT,
    MANIFEST_FORMAT_FILES,
};
use crate::store::object_id::ObjectId;
use crate::store::pack::{ObjectKind, PackWriter};

/// Default chunk size: large enough for good compression, small enough for all cores to share
/// one tensor.
pub const DEFAULT_CHUNK_BYTES: usize = 1 << 20;
/// Bytes of a tensor hashed before its pages are released (large enough for blake3's rayon
/// split to use every core).
const HASH_SLICE_BYTES: usize = 8 << 20;

/// Options of a commit.
#[derive(Clone, Debug)]
pub struct CommitOptions {
    /// Commit message.
    pub message: String,
    /// Branch to commit on (default: the branch HEAD names).
    pub branch: Option<String>,
    /// User metadata (`--meta key=value`).
    pub meta: BTreeMap<String, String>,
    /// Entropy coders allowed.
    pub codec: CodecChoice,
    /// Keyframe interval (default: the repository's `keyframe_every`, else
    /// [`DEFAULT_KEYFRAME_EVERY`](crate::DEFAULT_KEYFRAME_EVERY)).
    pub keyframe_every: Option<u32>,
    /// Error bound (default: the branch's configured bound, else lossless).
    pub bound: Option<Bound>,
    /// Chunk size in bytes.
    pub chunk_bytes: usize,
    /// How lossy delta codes are rounded.
    pub rounding: Rounding,
    /// The inputs lie in memory that other code may write meanwhile (a Python trainer's
    /// tensors): they are hashed again before the snapshot lands, and one written during the
    /// commit fails it ([`Error::TensorChanged`]) instead of storing chunks that disagree with
    /// its hash, which no checkout could read. An automatic commit also checks them after each
    /// evaluator call.
    pub shared_inputs: bool,
}

impl Default for CommitOptions {
    fn default() -> Self {
        CommitOptions {
            message: String::new(),
            branch: None,
            meta: BTreeMap::new(),
            codec: CodecChoice::Auto,
            keyframe_every: None,
            bound: None,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            rounding: Rounding::default(),
            shared_inputs: false,
        }
    }
}

/// What a commit did.
#[derive(Clone, Debug, Serialize)]
pub struct CommitReport {
    /// The new snapshot.
    pub snapshot: ObjectId,
    /// Its parent, if any.
    pub parent: Option<ObjectId>,
    /// Branch moved.
    pub branch: String,
    /// The bound the snapshot was committed under: the one asked for, else the branch's
    /// configured bound, else lossless (a tensor that cannot take it is stored exactly).
    #[serde(serialize_with = "crate::bound::serialize_as_text")]
    pub bound: Bound,
    /// Number of tensors.
    pub tensors: usize,
    /// Tensor bytes in the snapshot.
    pub logical_bytes: u64,
    /// Bytes this snapshot added to the repository.
    pub stored_bytes: u64,
    /// Tensors stored as references to identical bytes already present.
    pub deduplicated: usize,
    /// Tensors coded against a reference.
    pub deltas: usize,
    /// Tensors coded alone.
    pub keyframes: usize,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Files of a committed checkpoint directory that the snapshot does not keep (neither a
    /// safetensors file nor a small JSON file), in name order; a subdirectory ends in `/`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
}

/// What a snapshot keeps of where its tensors came from, so that a checkout writes them back
/// as they were.
#[derive(Clone, Debug, Default)]
pub(crate) struct Origin {
    /// The safetensors `__metadata__`.
    pub metadata: Option<BTreeMap<String, String>>,
    /// The safetensors header as committed (empty for a checkpoint directory).
    pub header: String,
    /// The file or directory name committed.
    pub source: Option<String>,
    /// A checkpoint directory's files.
    pub files: Vec<CheckpointFile>,
}

/// Where a tensor stands in its chain of deltas.
#[derive(Clone, Copy, Debug)]
struct Chain {
    depth: u32,
    bytes: u64,
    keyframe_bytes: u64,
    /// The next delta anchors the chain on the lattice ([`Basis::Anchor`]).
    anchor: bool,
}

impl Chain {
    /// A chain continued under `bound` after `parent`'s entry (not yet counting the new delta).
    fn after(parent: &TensorEntry, bound: Bound) -> Chain {
        Chain {
            depth: parent.depth,
            bytes: parent.chain_bytes,
            keyframe_bytes: parent.keyframe_bytes,
            anchor: Basis::anchors_after(parent.bound, bound),
        }
    }

    /// A new chain whose keyframe stored `stored` bytes.
    fn start(stored: u64) -> Chain {
        Chain {
            depth: 1,
            bytes: stored,
            keyframe_bytes: stored,
            anchor: false,
        }
    }

    /// This chain with one more delta of `stored` bytes. A parent written before chains were
    /// budgeted has no byte counts: the chain keeps none, and only its depth limits it.
    fn extend(self, stored: u64) -> Chain {
        let known = self.keyframe_bytes > 0;
        Chain {
            depth: self.depth + 1,
            bytes: if known { self.bytes + stored } else { 0 },
            keyframe_bytes: self.keyframe_bytes,
            anchor: false,
        }
    }
}

/// How one tensor will be stored.
enum Plan {
    /// Identical bytes exist: reuse that entry's chunks.
    Reuse(TensorEntry),
    /// The same bytes and dtype as this commit's input `.0` (tied weights): that tensor's
    /// entry, under this name, coded once.
    Twin(usize),
    /// Code it, optionally against a reference, exactly or within a bound.
    Code {
        reference: Option<(TensorRef, Chain)>,
        bound: Bound,
    },
}

/// One commit's inputs and settings, as its phases share them.
struct Job<'j, 'a> {
    inputs: &'j [TensorInput<'a>],
    opts: &'j CommitOptions,
    layout: Layout,
    /// Bytes per chunk.
    chunk_size: usize,
    /// Called with a tensor's byte range once it has been read for the last time.
    release: &'j (dyn Fn(usize, Range<usize>) + Sync),
}

/// What phase 1 decided.
struct Planned {
    branch: String,
    keyframe_every: u32,
    /// The snapshot's bound (each tensor's own is in its plan).
    bound: Bound,
    parent: Option<ObjectId>,
    /// How each input is stored, in input order.
    plans: Vec<Plan>,
    /// Holds the manifests of the reference chains the deltas decode.
    reader: ObjectReader,
    /// The parent decoded, if this handle committed it and the snapshot builds on it, taken out
    /// of the cache so each chunk is freed once coded against.
    tip: Option<TakenTip>,
    /// The index's gc generation when planned (see [`still_indexed`]).
    gc_generation: u64,
    /// Per input, blake3 of each chunk's bytes: a lossless frame sequence's (else empty).
    sources: Vec<Vec<ObjectId>>,
    /// Per input, the chunks taken from the parent uncoded (frame groups it holds unchanged).
    held: Vec<Vec<Option<ChunkRef>>>,
}

/// What phase 2 wrote: the pack, and per tensor its chunks, the hash of its reconstruction
/// and its code statistics.
struct Written {
    pack: PackWriter,
    chunk_lists: Vec<Vec<ChunkRef>>,
    recon_hashers: Vec<blake3::Hasher>,
    tensor_stats: Vec<ChunkStats>,
    /// Bytes of chunk objects new to the pack.
    stored_bytes: u64,
}

impl Written {
    /// Adds a coded chunk to the pack and its tensor, offering what checkout will produce to
    /// the next tip.
    /// `earlier`: the repository already holds the object, so the pack does not. The chunks of
    /// its tensor before it that were `held` uncoded go first.
    fn add(
        &mut self,
        job: &Job,
        c: CodedChunk,
        earlier: bool,
        held: &[Vec<Option<ChunkRef>>],
        next_tip: &mut TipCollector,
    ) -> Result<()> {
        let CodedChunk { t, i, id, obj, .. } = &c;
        let (t, i, id) = (*t, *i, *id);
        let inputs = job.inputs;
        match &c.reconstruction {
            Some(r) => {
                let _t = crate::profile::time_bytes(crate::profile::Stage::ReconHash, r.len());
                self.recon_hashers[t].update(r);
                if job.layout.builds_on_parent() {
                    next_tip.offer(&inputs[t].name, i, r);
                }
            }
            None if job.layout.builds_on_parent() => {
                // The input pages were released once coded: release them again.
                let range = chunk_range(inputs[t].data.len(), job.chunk_size, i);
                next_tip.offer(&inputs[t].name, i, &inputs[t].data[range.clone()]);
                (job.release)(t, range);
            }
            None => {}
        }
        if let Some(s) = &c.stats {
            self.tensor_stats[t].add(s);
        }
        let obj = obj.as_slice();
        self.add_held(t, i, held);
        debug_assert_eq!(self.chunk_lists[t].len(), i);
        if !earlier {
            if !self.pack.contains(&id) {
                self.stored_bytes += obj.len() as u64;
            }
            self.pack.add(ObjectKind::Chunk, id, obj)?;
        }
        self.chunk_lists[t].push(ChunkRef {
            id,
            stored: obj.len() as u64,
            earlier,
        });
        Ok(())
    }

    /// Adds the chunks of tensor `t` held uncoded from where its list stands up to chunk `end`.
    fn add_held(&mut self, t: usize, end: usize, held: &[Vec<Option<ChunkRef>>]) {
        let list = &mut self.chunk_lists[t];
        while list.len() < end {
            match held[t].get(list.len()) {
                Some(Some(c)) => list.push(c.clone()),
                _ => break,
            }
        }
    }

    /// The manifest entries of the snapshot's tensors, in input order, counting reuses, deltas
    /// and keyframes into `report`; gives back the pack.
    fn into_entries(
        self,
        job: &Job,
        plans: Vec<Plan>,
        sources: Vec<Vec<ObjectId>>,
        hashes: &[ObjectId],
        report: &mut CommitReport,
    ) -> (PackWriter, Vec<TensorEntry>) {
        let Written {
            pack,
            chunk_lists,
            recon_hashers,
            tensor_stats,
            ..
        } = self;
        let (inputs, layout, chunk_size) = (job.inputs, job.layout, job.chunk_size);
        let reused = |mut e: TensorEntry, t: &TensorInput, report: &mut CommitReport| {
            report.deduplicated += 1;
            e.name = t.name.clone();
            e.dtype = t.dtype;
            e.shape = t.shape.clone();
            if matches!(layout, Layout::Frames(_)) {
                // Still a frame sequence (`is_frames` knows one by its encoding: the parent's
                // entry is one, see `Layout::may_reuse`), every group stored before.
                for c in &mut e.chunks {
                    c.earlier = true;
                }
            } else {
                e.encoding = Encoding::Dedup;
            }
            e
        };
        let mut entries: Vec<TensorEntry> = Vec::with_capacity(plans.len());
        for ((((plan, chunks), (t, hash)), (recon_hash, st)), chunk_sources) in plans
            .into_iter()
            .zip(chunk_lists)
            .zip(inputs.iter().zip(hashes))
            .zip(recon_hashers.iter().zip(&tensor_stats))
            .zip(sources)
        {
            let entry = match plan {
                Plan::Reuse(e) => reused(e, t, report),
                Plan::Twin(first) => reused(entries[first].clone(), t, report),
                Plan::Code { reference, bound } => {
                    let stored: u64 = chunks.iter().map(|c| c.stored).sum();
                    let chain = match &reference {
                        Some((_, c)) => {
                            report.deltas += 1;
                            c.extend(stored)
                        }
                        None => {
                            report.keyframes += 1;
                            Chain::start(stored)
                        }
                    };
                    let lossy = bound != Bound::Lossless && layout.builds_on_parent();
                    TensorEntry {
                        name: t.name.clone(),
                        dtype: t.dtype,
                        shape: t.shape.clone(),
                        len: t.data.len() as u64,
                        hash: if bound != Bound::Lossless {
                            ObjectId::from(recon_hash.finalize())
                        } else {
                            *hash
                        },
                        source_hash: *hash,
                        encoding: layout.encoding(bound, reference.is_some()),
                        bound,
                        chunk_bytes: chunk_size as u64,
                        chunks,
                        reference: reference.map(|(r, _)| r),
                        depth: chain.depth,
                        chain_bytes: chain.bytes,
                        keyframe_bytes: chain.keyframe_bytes,
                        stats: if lossy {
                            code_stats(st)
                        } else {
                            BTreeMap::new()
                        },
                        chunk_sources,
                    }
                }
            };
            entries.push(entry);
        }
        (pack, entries)
    }
}

/// Codes chunk `i` of input `t` as its plan says: against the reference's chunk (from the
/// decoded tip, else decoded now) or alone.
fn code_job_chunk(
    job: &Job,
    planned: &Planned,
    engine: &dyn QuantEngine,
    t: usize,
    i: usize,
) -> Result<CodedChunk> {
    let (opts, reader, tip) = (job.opts, &planned.reader, &planned.tip);
    let input = &job.inputs[t];
    let range = chunk_range(input.data.len(), job.chunk_size, i);
    let Plan::Code { reference, bound } = &planned.plans[t] else {
        unreachable!("only coded tensors have jobs")
    };
    let cached = reference
        .as_ref()
        .and_then(|(r, _)| tip.as_ref()?.take(&r.tensor, i));
    let decoded = match (reference, &cached) {
        (Some((r, _)), None) => {
            let _t = crate::profile::time(crate::profile::Stage::Reference);
            let m = reader.manifest(&r.snapshot).expect("closure loaded");
            let e = m.tensor(&r.tensor).expect("closure loaded");
            Some(reader.decode_chunk(e, i)?)
        }
        _ => None,
    };
    let anchor = reference.as_ref().is_some_and(|(_, c)| c.anchor);
    let basis = match cached.as_deref().or(decoded.as_deref()) {
        Some(r) => Basis::delta(r, anchor),
        None => Basis::Keyframe,
    };
    let data = &input.data[range.clone()];
    let what = || format!("chunk {i} of tensor {:?}", input.name);
    let coded = match &job.layout {
        Layout::Frames(f) => {
            code_frame_group(f, data, *bound, opts.codec).map_err(|p| Error::decode(what(), p))?
        }
        Layout::Tensors => code_chunk(
            engine,
            input,
            data,
            *bound,
            basis,
            opts.rounding,
            opts.codec,
        )
        .map_err(|p| Error::codec(what(), p))?,
    };
    (job.release)(t, range);
    Ok(coded.with_position(t, i))
}

/// The code statistics of a lossy tensor's entry, as fractions of its elements (none for an
/// empty tensor).
fn code_stats(st: &ChunkStats) -> BTreeMap<String, f64> {
    let mut stats = BTreeMap::new();
    if st.elements > 0 {
        let n = st.elements as f64;
        stats.insert("zero_codes".to_string(), st.zero_codes as f64 / n);
        stats.insert("exceptions".to_string(), st.exceptions as f64 / n);
        if st.fresh > 0 {
            stats.insert("fresh".to_string(), st.fresh as f64 / n);
        }
        stats.insert("code_entropy_bits".to_string(), st.entropy_bits / n);
        stats.insert(
            "code_bits_packed".to_string(),
            st.code_bytes as f64 * 8.0 / n,
        );
    }
    stats
}

impl Repo {
    /// Commits a safetensors file. The file is validated first; a bad file leaves the repository
    /// untouched and the error names the file and the problem.
    pub fn commit_file(
        &self,
        path: impl AsRef<Path>,
        opts: &CommitOptions,
    ) -> Result<CommitReport> {
        let path = path.as_ref();
        let file = SafetensorsFile::open(path)?;
        let header = file.header();
        let inputs = TensorInput::all_of(&file);
        let raw = String::from_utf8(header.raw.clone()).map_err(|e| Error::BadSafetensors {
            path: path.to_path_buf(),
            problem: Box::new(SafetensorsProblem::MalformedHeader(e.to_string())),
        })?;
        let source = path.file_name().map(|n| n.to_string_lossy().into_owned());
        // Pages are released once used so that a large file is never resident whole. A file
        // no larger than one coding window is held whole while that window is coded anyway:
        // released after hashing, its pages were only faulted in again by the coder.
        let whole: usize = inputs.iter().map(|t| t.data.len()).sum();
        let keep_resident = whole <= window_bytes();
        let release = |t: usize, r: Range<usize>| {
            if !keep_resident {
                file.release(&header.tensors[t], r)
            }
        };
        let origin = Origin {
            metadata: header.metadata.clone(),
            header: raw,
            source,
            files: Vec::new(),
        };
        self.commit_inner(&inputs, origin, opts, Layout::Tensors, &release, &|| {
            file.check_unchanged("stored")
        })
    }

    /// Commits tensors held in memory (no file needed). `metadata` becomes the safetensors
    /// `__metadata__` of a checkout.
    pub fn commit_tensors(
        &self,
        tensors: &[TensorInput],
        metadata: Option<BTreeMap<String, String>>,
        opts: &CommitOptions,
    ) -> Result<CommitReport> {
        validate_inputs(tensors)?;
        let specs: Vec<(String, Dtype, Vec<u64>)> = tensors
            .iter()
            .map(|t| (t.name.clone(), t.dtype, t.shape.clone()))
            .collect();
        let (raw, order) =
            canonical_header(metadata.as_ref(), &specs).map_err(|problem| Error::BadTensor {
                tensor: String::new(),
                problem: Box::new(problem),
            })?;
        // Store tensors in the order the header lays them out.
        let ordered: Vec<TensorInput> = order
            .iter()
            .map(|info| {
                tensors
                    .iter()
                    .find(|t| t.name == info.name)
                    .expect("header lists the given tensors")
                    .clone()
            })
            .collect();
        let origin = Origin {
            metadata,
            header: String::from_utf8(raw).expect("canonical header is UTF-8"),
            ..Origin::default()
        };
        self.commit_inner(&ordered, origin, opts, Layout::Tensors, &|_, _| {}, &|| {
            Ok(())
        })
    }

    pub(super) fn commit_inner(
        &self,
        inputs: &[TensorInput],
        origin: Origin,
        opts: &CommitOptions,
        layout: Layout,
        release: &(dyn Fn(usize, Range<usize>) + Sync),
        inputs_unchanged: &dyn Fn() -> Result<()>,
    ) -> Result<CommitReport> {
        let started = Instant::now();
        plan::check_chunk_bytes(opts.chunk_bytes)?;
        // A frame sequence is chunked by groups of frames, each coded on its own.
        let chunk_size = layout.chunk_size(opts.chunk_bytes);
        crate::fsutil::remove_stale_temps(&self.packs_dir());
        let job = Job {
            inputs,
            opts,
            layout,
            chunk_size,
            release,
        };

        // Phase 1: hashes, then the parent, references and duplicates from the index.
        let hashes: Vec<ObjectId> = inputs
            .par_iter()
            .enumerate()
            .map(|(i, t)| {
                let _t = crate::profile::time_bytes(crate::profile::Stage::InputHash, t.data.len());
                // A slice at a time, each released once hashed: whole tensors of a large
                // checkpoint stayed resident two at a time (256 MiB of a 512 MiB file).
                let mut h = blake3::Hasher::new();
                for start in (0..t.data.len()).step_by(HASH_SLICE_BYTES) {
                    // A large checkpoint takes seconds to hash: a caller may stop it here too.
                    self.check_interrupt()?;
                    let range = start..(start + HASH_SLICE_BYTES).min(t.data.len());
                    h.update_rayon(&t.data[range.clone()]);
                    release(i, range);
                }
                Ok(ObjectId::from(h.finalize()))
            })
            .collect::<Result<_>>()?;
        // Planned, coded and published again if a gc removed something it reuses meanwhile.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let attempt =
                self.plan_code_publish(&job, &hashes, origin.clone(), inputs_unchanged, started);
            match attempt {
                Err(Error::RemovedUnderCommit { object, .. }) if attempts >= COMMIT_ATTEMPTS => {
                    return Err(Error::RemovedUnderCommit { object, attempts })
                }
                Err(Error::PackRemovedUnderCommit { pack, .. }) if attempts >= COMMIT_ATTEMPTS => {
                    return Err(Error::PackRemovedUnderCommit { pack, attempts })
                }
                Err(Error::RemovedUnderCommit { .. } | Error::PackRemovedUnderCommit { .. }) => {
                    continue
                }
                done => return done,
            }
        }
    }

    /// Phases 1 (after hashing) to 3 of a commit.
    fn plan_code_publish(
        &self,
        job: &Job,
        hashes: &[ObjectId],
        origin: Origin,
        inputs_unchanged: &dyn Fn() -> Result<()>,
        started: Instant,
    ) -> Result<CommitReport> {
        let (inputs, opts, release) = (job.inputs, job.opts, job.release);
        self.check_interrupt()?;
        let planned = self.plan_commit(job, hashes)?;
        crate::fsutil::input_maps::truncate_after_hash_for_test(origin.source.as_deref());
        let mut next_tip = self
            .tip
            .collector(inputs.iter().map(|t| t.data.len() as u64).sum());

        // Phase 2: code chunks a window at a time into a new pack.
        let written = self.write_chunks(job, &planned, &mut next_tip)?;
        // Hashed in phase 1 and coded in phase 2 from the same bytes, or nothing lands (the
        // unfinished pack is removed when `written` drops).
        inputs_unchanged()?;
        let Planned {
            branch,
            keyframe_every,
            bound,
            parent,
            plans,
            tip,
            gc_generation,
            sources,
            ..
        } = planned;
        // Reused tensors decode to the input (exact) or to the parent's reconstruction, twins
        // to what their first decodes to.
        for (t, (plan, input)) in plans.iter().zip(inputs).enumerate() {
            match plan {
                Plan::Reuse(e) => {
                    for i in 0..e.chunks.len() {
                        if e.bound == Bound::Lossless {
                            next_tip.offer(&input.name, i, &input.data[e.chunk_range(i)]);
                            release(t, e.chunk_range(i));
                        } else if let Some(bytes) = tip.as_ref().and_then(|c| c.take(&e.name, i)) {
                            next_tip.offer_shared(&input.name, i, bytes);
                        }
                    }
                }
                Plan::Twin(first) => {
                    for i in 0..chunk_count(input.data.len(), job.chunk_size) {
                        next_tip.share(&inputs[*first].name, &input.name, i);
                        release(t, chunk_range(input.data.len(), job.chunk_size, i));
                    }
                }
                Plan::Code { .. } => {}
            }
        }
        drop(tip);
        // Read once more: what the next tip took from the inputs must be what was hashed too.
        if opts.shared_inputs {
            if let Some(t) = first_changed(inputs, hashes) {
                return Err(Error::TensorChanged {
                    tensor: inputs[t].name.clone(),
                });
            }
        }

        let mut report = CommitReport {
            snapshot: ObjectId([0; 32]),
            parent,
            branch: branch.clone(),
            bound,
            tensors: inputs.len(),
            logical_bytes: inputs.iter().map(|t| t.data.len() as u64).sum(),
            stored_bytes: written.stored_bytes,
            deduplicated: 0,
            deltas: 0,
            keyframes: 0,
            seconds: 0.0,
            left_out: Vec::new(),
        };
        let (pack, entries) = written.into_entries(job, plans, sources, hashes, &mut report);
        let manifest = Manifest {
            // Format 1 where it suffices, so those manifests keep the bytes older builds read.
            format: if origin.files.is_empty() {
                MANIFEST_FORMAT
            } else {
                MANIFEST_FORMAT_FILES
            },
            parents: parent.into_iter().collect(),
            message: opts.message.clone(),
            time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            branch,
            source: origin.source,
            metadata: origin.metadata,
            meta: opts.meta.clone(),
            header: origin.header,
            keyframe_every,
            bound,
            tensors: entries,
            files: origin.files,
            by_name: Default::default(),
        };

        // Phase 3: publish (the last moment a caller can stop it).
        self.check_interrupt()?;
        self.publish_commit(pack, manifest, report, next_tip, gc_generation, started)
    }

    /// Phase 1 of a commit, with the index open: the branch, the settings in force, the
    /// parent, how each tensor is stored (reused, or coded against a reference or alone), and
    /// the reference chains the deltas need located.
    fn plan_commit(&self, job: &Job, hashes: &[ObjectId]) -> Result<Planned> {
        let (opts, layout) = (job.opts, job.layout);
        let index = self.index_read()?;
        let branch = match &opts.branch {
            Some(b) => {
                check_ref_name(b)?;
                b.clone()
            }
            None => index.head_branch()?,
        };
        let keyframe_every =
            plan::keyframe_every(opts.keyframe_every, || index.config_get("keyframe_every"))?;
        let bound = match opts.bound {
            Some(b) => b,
            None => match index.config_get(&format!("bound.{branch}"))? {
                Some(s) => s.parse()?,
                None => Bound::Lossless,
            },
        };
        let parent = index.get_ref(&branch_key(&branch))?;
        if parent.is_none() {
            // This commit creates the branch.
            check_new_ref_name(&index, &branch, "branch")?;
        }
        let mut reader = self.reader();
        let parent_manifest = match &parent {
            Some(p) => Some(reader.load_manifest(&index, p)?),
            None => None,
        };
        let mut plans = Vec::with_capacity(job.inputs.len());
        let (mut sources, mut held) = (Vec::new(), Vec::new());
        let mut closure = Vec::new();
        let mut firsts: HashMap<(ObjectId, Dtype, u64), usize> = HashMap::new();
        for (i, (t, hash)) in job.inputs.iter().zip(hashes).enumerate() {
            let first = *firsts
                .entry((*hash, t.dtype, t.data.len() as u64))
                .or_insert(i);
            let tensor_bound = layout.tensor_bound(t, bound);
            let lossless = tensor_bound == Bound::Lossless;
            // A lossless frame sequence's group hashes, and the groups the parent holds.
            let (mut these_sources, mut these_held) = (Vec::new(), Vec::new());
            let parent_plan = TensorPlan::new(
                parent_manifest.as_deref(),
                t,
                lossless,
                keyframe_every,
                || *hash,
            );
            let unchanged = parent_plan
                .unchanged(tensor_bound)
                .filter(|p| layout.may_reuse(p));
            let duplicate = if unchanged.is_none() && lossless {
                find_duplicate(&index, &mut reader, hash, t.data.len() as u64)?
            } else {
                None
            };
            let plan = if let Some(p) = unchanged {
                Plan::Reuse(p.clone())
            } else if first < i {
                Plan::Twin(first)
            } else if !layout.builds_on_parent() {
                // Groups of frames are self-contained: no reference to the parent, but the
                // groups it holds unchanged are taken as they are (lossless).
                if lossless {
                    these_sources = group_sources(t, job.chunk_size);
                    let parent_entry = parent_manifest.as_deref().and_then(|m| m.tensor(&t.name));
                    these_held = held_groups(parent_entry, t, job.chunk_size, &these_sources);
                }
                Plan::Code {
                    reference: None,
                    bound: tensor_bound,
                }
            } else if let Some(e) = duplicate {
                Plan::Reuse(e)
            } else {
                // Delta against the parent's tensor unless the chain would pass the keyframe
                // interval (then this tensor starts a new chain).
                let reference = parent_plan.reference().map(|p| {
                    closure.push(p.clone());
                    let r = TensorRef {
                        snapshot: parent.expect("a parent entry implies a parent"),
                        tensor: p.name.clone(),
                    };
                    (r, Chain::after(p, tensor_bound))
                });
                Plan::Code {
                    reference,
                    bound: tensor_bound,
                }
            };
            plans.push(plan);
            sources.push(these_sources);
            held.push(these_held);
        }
        // The parent decoded, if this handle committed it; frames never code against it. Only
        // references it does not hold need their chains located.
        let tip = parent
            .filter(|_| layout.builds_on_parent())
            .and_then(|p| self.tip.take(&p))
            .map(|chunks| {
                let uses = plans.iter().filter_map(|p| match p {
                    Plan::Reuse(e) => Some(e.name.as_str()),
                    Plan::Code {
                        reference: Some((r, _)),
                        ..
                    } => Some(r.tensor.as_str()),
                    Plan::Code { .. } | Plan::Twin(_) => None,
                });
                TakenTip::new(chunks, uses)
            });
        let in_tip = |e: &TensorEntry| {
            tip.as_ref()
                .is_some_and(|c| c.holds(&e.name, e.chunks.len()))
        };
        reader.load_closure(&index, closure.iter().filter(|e| !in_tip(e)))?;
        Ok(Planned {
            branch,
            keyframe_every,
            bound,
            parent,
            plans,
            reader,
            tip,
            gc_generation: index.gc_generation()?,
            sources,
            held,
        })
    }

    /// Phase 2 of a commit, with the index closed: codes every chunk of the coded tensors, a
    /// window at a time on all cores, into a new pack, offering what checkout will produce to
    /// the next tip.
    fn write_chunks(
        &self,
        job: &Job,
        planned: &Planned,
        next_tip: &mut TipCollector,
    ) -> Result<Written> {
        let (inputs, chunk_size) = (job.inputs, job.chunk_size);
        let lossy_bytes: u64 = planned
            .plans
            .iter()
            .zip(inputs)
            .filter(|(p, _)| matches!(p, Plan::Code { bound, .. } if *bound != Bound::Lossless))
            .map(|(_, t)| t.data.len() as u64)
            .sum();
        let engine = self.encode_engine(match job.layout {
            Layout::Tensors => lossy_bytes,
            Layout::Frames(_) => 0,
        });
        let mut written = Written {
            pack: PackWriter::create(&self.packs_dir())?,
            chunk_lists: vec![Vec::new(); inputs.len()],
            recon_hashers: vec![blake3::Hasher::new(); inputs.len()],
            tensor_stats: vec![ChunkStats::default(); inputs.len()],
            stored_bytes: 0,
        };
        let jobs: Vec<(usize, usize)> = planned
            .plans
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p, Plan::Code { .. }))
            .flat_map(|(t, _)| {
                let n = chunk_count(inputs[t].data.len(), chunk_size);
                (0..n).map(move |i| (t, i))
            })
            .filter(|&(t, i)| !matches!(planned.held[t].get(i), Some(Some(_))))
            .collect();
        let job_bytes: Vec<usize> = jobs
            .iter()
            .map(|&(t, i)| chunk_range(inputs[t].data.len(), chunk_size, i).len())
            .collect();
        let total_bytes: u64 = job_bytes.iter().map(|&b| b as u64).sum();
        let mut done_bytes = 0u64;
        self.report("commit", 0, total_bytes);
        for range in windows_for_threads(&job_bytes, window_bytes(), MAX_WINDOW_BYTES) {
            self.check_interrupt()?;
            done_bytes += job_bytes[range.clone()]
                .iter()
                .map(|&b| b as u64)
                .sum::<u64>();
            let window = &jobs[range];
            let coded: Vec<CodedChunk> = window
                .par_iter()
                .map(|&(t, i)| code_job_chunk(job, planned, engine.as_ref(), t, i))
                .collect::<Result<_>>()?;
            let earlier = self.held_already(job, planned, &written.pack, &coded)?;
            for (c, earlier) in coded.into_iter().zip(earlier) {
                written.add(job, c, earlier, &planned.held, next_tip)?;
            }
            self.report("commit", done_bytes, total_bytes);
        }
        for (t, input) in inputs.iter().enumerate() {
            let n = chunk_count(input.data.len(), chunk_size);
            written.add_held(t, n, &planned.held);
        }
        Ok(written)
    }

    /// Which of `coded` the repository holds already, in an earlier pack, so this one need not
    /// hold them again: a growing frame sequence's first groups, a keyframe chunk committed
    /// before. Only chunks coded alone are looked up (a delta's bytes depend on its reference
    /// and almost never repeat), with the index opened for the window and closed again, so
    /// other commits can publish meanwhile. A gc that removes one before this commit publishes
    /// is caught there ([`still_indexed`]).
    fn held_already(
        &self,
        job: &Job,
        planned: &Planned,
        pack: &PackWriter,
        coded: &[CodedChunk],
    ) -> Result<Vec<bool>> {
        let alone = |c: &CodedChunk| {
            !job.layout.builds_on_parent()
                || matches!(
                    planned.plans[c.t],
                    Plan::Code {
                        reference: None,
                        ..
                    }
                )
        };
        let asked: Vec<bool> = coded
            .iter()
            .map(|c| alone(c) && !pack.contains(&c.id))
            .collect();
        if !asked.contains(&true) {
            return Ok(asked);
        }
        let index = self.index_read()?;
        coded
            .iter()
            .zip(asked)
            .map(|(c, asked)| Ok(asked && index.locate(&c.id)?.is_some()))
            .collect()
    }

    /// Phase 3 of a commit: writes the manifest into the pack, records the pack and moves the
    /// branch. Retries with the new branch tip as parent if another commit won.
    fn publish_commit(
        &self,
        mut pack: PackWriter,
        mut manifest: Manifest,
        mut report: CommitReport,
        next_tip: TipCollector,
        gc_generation: u64,
        started: Instant,
    ) -> Result<CommitReport> {
        let key = branch_key(&manifest.branch);
        let mut expected_parent = report.parent;
        loop {
            let (bytes, json_bytes) = manifest.to_bytes_sized();
            let id = ObjectId::of(&bytes);
            pack.add(ObjectKind::Manifest, id, &bytes)?;
            let (pack_name, pack_entries) = pack.finish()?;
            let mut undo = Undo::default();
            let published = self.publish(
                &pack_name,
                &pack_entries,
                &key,
                expected_parent,
                id,
                &manifest,
                gc_generation,
                &mut undo,
            );
            match published {
                Ok(None) => {
                    self.tip.keep(id, next_tip);
                    // The next commit reads it as its parent, and a checkout of it often follows:
                    // neither need read it back from the pack and parse it again.
                    self.manifests
                        .insert(id, std::sync::Arc::new(manifest), json_bytes);
                    report.snapshot = id;
                    report.parent = expected_parent;
                    report.seconds = started.elapsed().as_secs_f64();
                    return Ok(report);
                }
                Ok(Some(current)) => {
                    // Another commit moved the branch: keep our coded tensors (their references
                    // stay valid) and put the snapshot on top of the new tip.
                    manifest.parents = current.into_iter().collect();
                    expected_parent = current;
                    pack = PackWriter::create(&self.packs_dir())?;
                }
                Err(e) => {
                    self.undo_publish(&undo, &pack_name, &pack_entries, &key, expected_parent, id);
                    return Err(e);
                }
            }
        }
    }

    /// Records a finished pack and moves `key` from `expected` to the snapshot `id`. `Ok(None)`:
    /// published; `Ok(Some(current))`: another commit moved the branch to `current` first.
    /// Whatever it changed is noted in `undo`, so a failure can be taken back.
    #[allow(clippy::too_many_arguments)]
    fn publish(
        &self,
        pack_name: &str,
        pack_entries: &[crate::store::pack::PackEntry],
        key: &str,
        expected: Option<ObjectId>,
        id: ObjectId,
        manifest: &Manifest,
        gc_generation: u64,
        undo: &mut Undo,
    ) -> Result<Option<Option<ObjectId>>> {
        let index = self.index()?;
        if !self.packs_dir().join(format!("{pack_name}.pack")).exists() {
            return Err(Error::PackRemovedUnderCommit {
                pack: pack_name.to_string(),
                attempts: 1,
            });
        }
        if index.gc_generation()? != gc_generation {
            let new: HashSet<ObjectId> = pack_entries.iter().map(|e| e.id).collect();
            if let Some(object) = still_indexed(&index, &mut self.reader(), manifest, &new)? {
                return Err(Error::RemovedUnderCommit {
                    object: object.hex(),
                    attempts: 1,
                });
            }
        }
        undo.objects = index.add_pack(pack_name, pack_entries)?;
        if let Err(current) = index.cas_ref(key, expected, Some(id))? {
            // The snapshot goes on top of `current`, under another id: this manifest is no
            // one's, and fsck would list it as a snapshot no ref reaches (its bytes stay in the
            // pack, unindexed, beside the chunks the retry uses).
            if undo.objects.contains(&id) {
                index.forget_objects(&[id])?;
            }
            index.flush()?;
            return Ok(Some(current));
        }
        undo.ref_moved = true;
        for t in manifest
            .tensors
            .iter()
            .filter(|t| t.bound == Bound::Lossless && t.encoding != Encoding::Dedup)
        {
            if index.add_tensor(&t.hash, &id, &t.name)? {
                undo.tensors.push(t.hash);
            }
        }
        index.flush()?;
        Ok(None)
    }

    /// Takes back what a failed [`Repo::publish`] changed (best effort: the failure may be a full
    /// disk): the ref, the index records and the pack file, so the repository is as it was.
    fn undo_publish(
        &self,
        undo: &Undo,
        pack_name: &str,
        pack_entries: &[crate::store::pack::PackEntry],
        key: &str,
        old: Option<ObjectId>,
        new: ObjectId,
    ) {
        let pack_path = self.packs_dir().join(format!("{pack_name}.pack"));
        let Ok(index) = self.index() else {
            return;
        };
        if undo.ref_moved {
            let _ = index.cas_ref(key, Some(new), old);
        }
        let _ = index.forget_tensors(&undo.tensors);
        let _ = index.forget_objects(&undo.objects);
        // The pack goes unless the index still places an object in it (an identical pack
        // written earlier by another commit).
        let still_used = pack_entries
            .iter()
            .any(|e| matches!(index.locate(&e.id), Ok(Some(loc)) if loc.pack == pack_name));
        if index.flush().is_ok() && !still_used {
            let _ = std::fs::remove_file(&pack_path);
        }
    }
}

/// How many times a commit is planned and coded while a gc keeps removing what it reuses.
const COMMIT_ATTEMPTS: usize = 3;

/// The first object `manifest` needs that the index no longer holds (`None`: all there), the
/// objects of the new pack `new` aside: every chunk of every tensor, and of every entry its
/// delta chain reaches, and each chain's manifest. A gc that ran between a commit's planning
/// and its publishing may have removed a duplicate's objects or, when the branch moved, the
/// old parent's.
fn still_indexed(
    index: &Index,
    reader: &mut ObjectReader,
    manifest: &Manifest,
    new: &HashSet<ObjectId>,
) -> Result<Option<ObjectId>> {
    let gone =
        |id: &ObjectId| -> Result<bool> { Ok(!new.contains(id) && index.locate(id)?.is_none()) };
    let mut seen: HashSet<(ObjectId, String)> = HashSet::new();
    let mut todo: Vec<TensorEntry> = manifest.tensors.clone();
    while let Some(entry) = todo.pop() {
        for c in &entry.chunks {
            if gone(&c.id)? {
                return Ok(Some(c.id));
            }
        }
        let Some(r) = entry.reference else { continue };
        if !seen.insert((r.snapshot, r.tensor.clone())) {
            continue;
        }
        if gone(&r.snapshot)? {
            return Ok(Some(r.snapshot));
        }
        let m = reader.load_manifest(index, &r.snapshot)?;
        match m.tensor(&r.tensor) {
            Some(e) => todo.push(e.clone()),
            None => return Ok(Some(r.snapshot)),
        }
    }
    Ok(None)
}

/// What a publish attempt changed, for [`Repo::undo_publish`].
#[derive(Default)]
struct Undo {
    objects: Vec<ObjectId>,
    tensors: Vec<ObjectId>,
    ref_moved: bool,
}

impl Repo {
    /// Commits `input` as a new snapshot: a checkpoint's tensors, or a frame sequence in groups
    /// of `group` frames (`None`: the default, see [`Repo::commit_frames`]; unused for a
    /// checkpoint).
    ///
    /// ```
    /// use snapstore::{CommitOptions, FrameDtype, FrameSeq, Input, InputKind, Repo};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let repo = Repo::init(dir.path().join("repo"))?;
    /// // Eight 4x4 frames saved as a .npy, the way a simulation might write them.
    /// let data: Vec<u8> = (0..128).map(|i| (i * 3) as u8).collect();
    /// let seq = FrameSeq::from_raw(FrameDtype::U8, &[8, 4, 4], data)?;
    /// let npy = dir.path().join("frames.npy");
    /// snapstore::write_npy(&seq, &npy, 0..seq.t)?;
    ///
    /// let input = Input::detect(&npy, InputKind::Auto)?;
    /// let report = repo.commit_input(&input, Some(4), &CommitOptions::default())?;
    /// let back = repo.checkout_frames(report.snapshot, None)?;
    /// assert_eq!(back.data, seq.data);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit_input(
        &self,
        input: &Input,
        group: Option<usize>,
        opts: &CommitOptions,
    ) -> Result<CommitReport> {
        if let (Some(_), Input::Tensors(path) | Input::Directory(path)) = (group, input) {
            return Err(Error::invalid(
                "group",
                format!(
                    "{}: frames per group apply to a frame sequence, and this is a checkpoint \
                     (its chains are set by keyframe_every)",
                    path.display()
                ),
            ));
        }
        match input {
            Input::Tensors(path) => self.commit_file(path, opts),
            Input::Directory(dir) => self.commit_dir(dir, opts),
            Input::Frames(seq) => self.commit_frames(seq, group, opts),
            Input::FramesFile(path) => self.commit_frames_file(path, group, opts),
        }
    }
}

/// One coded chunk on its way into the pack.
pub(crate) struct CodedChunk {
    t: usize,
    i: usize,
    id: ObjectId,
    /// The chunk object.
    pub(crate) obj: Vec<u8>,
    /// What checkout will produce, when it differs from the input (lossy).
    pub(crate) reconstruction: Option<Vec<u8>>,
    stats: Option<ChunkStats>,
}

impl CodedChunk {
    fn with_position(mut self, t: usize, i: usize) -> Self {
        self.t = t;
        self.i = i;
        self
    }
}

/// Under a relative bound a chunk with more exceptions than this fraction is also coded exactly,
/// and the smaller kept (e.g. BF16 under a bound finer than its precision).
pub(crate) const EXCEPTION_FALLBACK: f64 = 0.2;

/// Whether a bounded chunk is also coded exactly, the smaller kept: many exceptions, or a
/// relative bound within four units of the element type's precision, where a step of the grid
/// is a few representable values apart and quantizing saves little over exact coding (BF16,
/// 8 significant bits: rel:0.005 stored 5.10x lossy against 5.61x lossless on cnn-digits/bf16).
pub(crate) fn exact_may_win(dtype: Dtype, bound: Bound, exceptions: u64, elements: u64) -> bool {
    let significant_bits = match dtype {
        Dtype::BF16 => 8,
        Dtype::F16 => 11,
        Dtype::F32 => 24,
        _ => 53,
    };
    let fine = matches!(bound, Bound::Rel(e) if e < 4.0 * 2f64.powi(-significant_bits));
    fine || exceptions as f64 > EXCEPTION_FALLBACK * elements as f64
}

/// Codes one chunk exactly or within `bound` (the error-bound search codes its candidates with
/// this too, so a candidate is stored exactly as its commit would be).
pub(crate) fn code_chunk(
    engine: &dyn QuantEngine,
    input: &TensorInput,
    data: &[u8],
    bound: Bound,
    basis: Basis<'_>,
    rounding: Rounding,
    codec: CodecChoice,
) -> CodecResult<CodedChunk> {
    let reference = basis.parent();
    let exact = || {
        chunk::encode_lossless(
            data,
            input.dtype.unit_bytes(),
            input.dtype.is_float(),
            reference,
            codec,
        )
    };
    let done = |obj: Vec<u8>, reconstruction, stats| CodedChunk {
        t: 0,
        i: 0,
        id: ObjectId::of(&obj),
        obj,
        reconstruction,
        stats,
    };
    if bound == Bound::Lossless {
        return Ok(done(exact(), None, None));
    }
    let (obj, recon, stats) =
        lossy::encode(engine, input.dtype, bound, data, basis, rounding, codec)?;
    if exact_may_win(input.dtype, bound, stats.exceptions, stats.elements) {
        let plain = exact();
        if plain.len() < obj.len() {
            return Ok(done(plain, Some(data.to_vec()), Some(stats)));
        }
    }
    Ok(done(obj, Some(recon), Some(stats)))
}

/// Codes one group of frames. Where the frame coder stores more than the frames' bytes (noise,
/// a tiny sequence), the group is stored exactly as byte planes instead: a plain lossless chunk,
/// which every build decodes whatever the entry's encoding, and which is also within any bound.
fn code_frame_group(
    f: &FrameLayout,
    data: &[u8],
    bound: Bound,
    codec: CodecChoice,
) -> std::result::Result<CodedChunk, String> {
    let fb = match bound {
        Bound::Lossless => FrameBound::Lossless,
        Bound::Abs(e) => FrameBound::Abs(e),
        Bound::Rel(e) => FrameBound::Rel(e),
    };
    // The encoder's reconstruction is what checkout decodes (one closed loop, shared with
    // the decoder; the codec's tests check that they agree), and checkout verifies its hash.
    let (group, recon) = encode_group_reconstructed(f.dims, f.dtype, data, fb, codec)?;
    let section = chunk::Section {
        entropy: crate::codec::entropy::Entropy::Stored,
        raw_len: group.len(),
        stored: group,
    };
    let coded = chunk::write_chunk(
        chunk::ChunkCodec::FrameGroup,
        f.dtype.size(),
        data.len(),
        0,
        &[section],
    );
    let float = f.dtype == crate::frames::FrameDtype::F32;
    let exact = (coded.len() > data.len())
        .then(|| chunk::encode_lossless(data, f.dtype.size(), float, None, codec))
        .filter(|exact| exact.len() < coded.len());
    let lossy = bound != Bound::Lossless;
    let (obj, reconstruction) = match exact {
        Some(exact) => (exact, lossy.then(|| data.to_vec())),
        None => (coded, lossy.then_some(recon)),
    };
    Ok(CodedChunk {
        t: 0,
        i: 0,
        id: ObjectId::of(&obj),
        obj,
        reconstruction,
        stats: None,
    })
}

/// Checks tensors handed in from memory: valid unique names, and byte lengths that match their
/// shapes and dtypes. A file's tensors were checked by the header parser already.
pub(crate) fn validate_inputs(tensors: &[TensorInput]) -> Result<()> {
    let mut names = HashSet::new();
    for t in tensors {
        let bad = |problem| Error::BadTensor {
            tensor: t.name.clone(),
            problem: Box::new(problem),
        };
        crate::safetensors_io::check_name(&t.name).map_err(bad)?;
        if !names.insert(t.name.as_str()) {
            return Err(Error::invalid(
                "tensors",
                format!("tensor name {:?} appears twice", t.name),
            ));
        }
        let expected = t
            .shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .and_then(|n| t.dtype.byte_len(n));
        if expected != Some(t.data.len() as u64) {
            return Err(bad(SafetensorsProblem::LengthMismatch {
                tensor: t.name.clone(),
                shape: t.shape.clone(),
                dtype: t.dtype.to_string(),
                expected: expected
                    .map_or_else(|| "an impossible number of".into(), |n| n.to_string()),
                actual: t.data.len() as u64,
            }));
        }
    }
    Ok(())
}

/// Byte range of chunk `i` of a tensor of `len` bytes.
pub(crate) fn chunk_range(len: usize, chunk_bytes: usize, i: usize) -> Range<usize> {
    let start = i * chunk_bytes;
    start..(start + chunk_bytes).min(len)
}

/// Chunks of a tensor of `len` bytes (an empty tensor still has one, empty, chunk).
pub(crate) fn chunk_count(len: usize, chunk_bytes: usize) -> usize {
    len.div_ceil(chunk_bytes).max(1)
}

/// blake3 of a tensor's bytes, on every core.
pub(crate) fn input_hash(t: &TensorInput) -> ObjectId {
    let mut h = blake3::Hasher::new();
    h.update_rayon(t.data);
    ObjectId::from(h.finalize())
}

/// The first of `inputs` whose bytes no longer hash to its entry of `hashes`.
pub(crate) fn first_changed(inputs: &[TensorInput], hashes: &[ObjectId]) -> Option<usize> {
    inputs
        .par_iter()
        .zip(hashes)
        .position_first(|(t, h)| input_hash(t) != *h)
}

/// blake3 of each chunk's bytes of `t`, cut at `chunk_size`.
fn group_sources(t: &TensorInput, chunk_size: usize) -> Vec<ObjectId> {
    let len = t.data.len();
    (0..chunk_count(len, chunk_size))
        .into_par_iter()
        .map(|i| ObjectId::of(&t.data[chunk_range(len, chunk_size, i)]))
        .collect()
}

/// The chunks of the parent's frame sequence `parent` that `t` holds unchanged (by their
/// `sources`), as they are: only from a lossless sequence of the same frame size and group.
fn held_groups(
    parent: Option<&TensorEntry>,
    t: &TensorInput,
    chunk_size: usize,
    sources: &[ObjectId],
) -> Vec<Option<ChunkRef>> {
    let same_layout = |p: &&TensorEntry| {
        matches!(p.encoding, Encoding::Frames | Encoding::Dedup)
            && p.bound == Bound::Lossless
            && p.dtype == t.dtype
            && p.shape.get(1..) == t.shape.get(1..)
            && p.chunk_bytes == chunk_size as u64
            && p.chunk_sources.len() == p.chunks.len()
    };
    let Some(p) = parent.filter(same_layout) else {
        return Vec::new();
    };
    sources
        .iter()
        .zip(&p.chunk_sources)
        .zip(&p.chunks)
        .map(|((mine, theirs), c)| {
            (mine == theirs).then(|| ChunkRef {
                earlier: true,
                ..c.clone()
            })
        })
        .collect()
}

/// A stored tensor with exactly these bytes, found through the dedup index.
fn find_duplicate(
    index: &Index,
    reader: &mut ObjectReader,
    hash: &ObjectId,
    len: u64,
) -> Result<Option<TensorEntry>> {
    let Some((snapshot, name)) = index.find_tensor(hash)? else {
        return Ok(None);
    };
    // The index is a hint: a snapshot removed by gc, or an entry that no longer matches, is skipped.
    let Ok(m) = reader.load_manifest(index, &snapshot) else {
        return Ok(None);
    };
    let found = m
        .tensor(&name)
        .filter(|e| e.hash == *hash && e.len == len && e.bound == Bound::Lossless)
        .cloned();
    if let Some(e) = &found {
        // A reused entry must still be decodable: all its objects must be indexed.
        if reader.load_closure(index, std::iter::once(e)).is_err() {
            return Ok(None);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::ObjectId;
    use crate::{CommitOptions, Dtype, Repo, TensorInput};

    #[test]
    fn a_commit_keeps_its_manifest_for_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::init(dir.path().join("repo")).unwrap();
        let data: Vec<u8> = (0..4096u32)
            .flat_map(|v| (v as f32).to_le_bytes())
            .collect();
        let tensor = TensorInput {
            name: "w".into(),
            dtype: Dtype::F32,
            shape: vec![4096],
            data: &data,
        };
        let id = repo
            .commit_tensors(&[tensor], None, &CommitOptions::default())
            .unwrap()
            .snapshot;
        let kept = repo
            .manifests
            .get(&id)
            .expect("the new snapshot's manifest is kept");
        // What is kept is what was stored: the same bytes as a fresh handle reads back.
        let (_, stored) = Repo::open(repo.path()).unwrap().show(id).unwrap();
        assert_eq!(kept.to_bytes(), stored.to_bytes());
        assert_eq!(ObjectId::of(&kept.to_bytes()), id);
    }
}
