//! The snapshot manifest: everything needed to rebuild a checkpoint from objects. Stored as a
//! JSON object; the snapshot id is the blake3 of those bytes.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::object_id::ObjectId;
pub use crate::bound::Bound;
use crate::dtype::Dtype;
use crate::error::{Error, Result};

/// Largest manifest JSON accepted when reading (a decompression-bomb guard).
const MAX_MANIFEST_BYTES: usize = 1 << 30;

/// A manifest's JSON from its Zstd frame, sized by the frame's content size (every manifest
/// this crate writes records it) instead of allocating [`MAX_MANIFEST_BYTES`] per manifest,
/// which cost a map, page faults and an unmap for each one read. A frame without a size, or
/// claiming more than the limit, is decompressed against the limit as before.
fn decompress_json(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let capacity = match zstd::zstd_safe::get_frame_content_size(bytes) {
        Ok(Some(size)) if size <= MAX_MANIFEST_BYTES as u64 => size as usize,
        _ => MAX_MANIFEST_BYTES,
    };
    zstd::bulk::decompress(bytes, capacity)
}

/// Manifest format version of a snapshot of one file or of tensors: what every manifest had
/// before a checkpoint directory could be one snapshot, so theirs keep their bytes and ids.
pub const MANIFEST_FORMAT: u32 = 1;

/// Manifest format version of a checkpoint directory ([`Manifest::files`]), the newest this
/// build reads: a build that knows only format 1 refuses it instead of checking out its first
/// file's tensors under no header.
pub const MANIFEST_FORMAT_FILES: u32 = 2;

/// A JSON file of a checkpoint directory larger than this is not kept: it is held in every
/// manifest, which `log` and a checkout read whole. An HF checkpoint's `config.json`,
/// `generation_config.json` and shard index are a few KiB.
pub const MAX_TEXT_FILE_BYTES: u64 = 1 << 20;

/// A shard index (`*.index.json`) is kept up to this size: a checkout without it cannot be
/// loaded, and a mixture of experts' runs to megabytes (28,800 tensors: 2.6 MB).
pub const MAX_INDEX_BYTES: u64 = 64 << 20;

/// One file of a checkpoint directory, as a checkout writes it back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum CheckpointFile {
    /// A safetensors file (a shard): its header as committed, and how many of the manifest's
    /// tensors, the next ones in order after the previous shards', it holds.
    Safetensors {
        /// File name in the directory.
        name: String,
        /// The safetensors header exactly as committed.
        header: String,
        /// Tensors it holds.
        tensors: u32,
    },
    /// A small JSON file (`config.json`, the shard index), kept as its text.
    Text {
        /// File name in the directory.
        name: String,
        /// Its contents.
        text: String,
    },
}

impl CheckpointFile {
    /// Whether `other` holds what this does (a shard's tensor count aside: its tensors are
    /// compared on their own).
    pub fn same_content(&self, other: &CheckpointFile) -> bool {
        match (self, other) {
            (
                CheckpointFile::Safetensors { header: a, .. },
                CheckpointFile::Safetensors { header: b, .. },
            ) => a == b,
            (CheckpointFile::Text { text: a, .. }, CheckpointFile::Text { text: b, .. }) => a == b,
            _ => false,
        }
    }

    /// The file's name in its directory.
    pub fn name(&self) -> &str {
        match self {
            CheckpointFile::Safetensors { name, .. } | CheckpointFile::Text { name, .. } => name,
        }
    }
}

/// How a tensor's chunks are coded, summarised for `show`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// Exact, byte planes, no reference.
    Planes,
    /// Exact, byte planes of the element-wise difference to the reference.
    ExactDelta,
    /// Error-bounded log-quantized codes against the reference.
    LogDelta,
    /// Same bytes as a tensor stored earlier: its chunks are reused.
    Dedup,
    /// A frame sequence `[T,H,W(,C)]`, one chunk per group of frames (temporal + spatial
    /// prediction inside the group).
    Frames,
}

/// A tensor of another snapshot, used as a delta reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TensorRef {
    /// Snapshot id.
    pub snapshot: ObjectId,
    /// Tensor name in that snapshot.
    pub tensor: String,
}

/// One stored chunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// Object id of the coded chunk.
    pub id: ObjectId,
    /// Its stored size in bytes.
    pub stored: u64,
    /// The repository held this object before the snapshot was committed (a group of frames
    /// or a keyframe chunk an earlier snapshot stored): the snapshot added none of its bytes.
    /// Absent from manifests where it is false, so theirs keep their bytes and ids.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub earlier: bool,
}

/// Bytes a chain's deltas may take, in keyframes of that chain: a checkout reads at most
/// `1 + CHAIN_BUDGET` keyframes' worth of bytes, and where chains end at this budget keyframes
/// take about `1 / (1 + CHAIN_BUDGET)` of the stored bytes. It was 8 until keyframes took the
/// centred code streams, which made them 9-14% smaller at rel 0.005-0.01: 9 of them read about
/// what 8 did, where 8 cut digits-mlp's chains early enough to store 4% more at rel 0.01
/// (BENCHMARKS.md, "Entropy routes and centred code streams").
pub const CHAIN_BUDGET: u64 = 9;

/// Decodes a lossless chain may take, whatever the keyframe interval allows. A lossless delta
/// saves only the bytes a snapshot shares with its parent (sign, exponent, high mantissa), so a
/// longer chain buys little and costs every checkout a full decode per level: on cnn-digits,
/// chains of 32 stored 1.6% fewer bytes than chains of 8 and took 34% more instructions to
/// check out (BENCHMARKS.md, "Checkout cost after the decoder work").
pub const LOSSLESS_CHAIN_DECODES: u32 = 8;

/// One tensor of a snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorEntry {
    /// Name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<u64>,
    /// Byte length.
    pub len: u64,
    /// blake3 of the bytes checkout produces.
    pub hash: ObjectId,
    /// blake3 of the bytes committed (equal to `hash` when lossless).
    pub source_hash: ObjectId,
    /// How it is coded.
    pub encoding: Encoding,
    /// Error bound.
    pub bound: Bound,
    /// Bytes per chunk (the last may be shorter).
    pub chunk_bytes: u64,
    /// Chunks in order.
    pub chunks: Vec<ChunkRef>,
    /// Delta reference, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<TensorRef>,
    /// Decodes a checkout of this tensor needs (1 for a keyframe).
    pub depth: u32,
    /// Stored bytes of this tensor's chain: its keyframe and every delta up to this entry
    /// (0 in manifests written before chains were budgeted).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub chain_bytes: u64,
    /// Stored bytes of the chain's keyframe (0: unknown, as above).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub keyframe_bytes: u64,
    /// Codec statistics (fraction of zero codes, exceptions), where the codec records them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stats: BTreeMap<String, f64>,
    /// blake3 of each chunk's input bytes, kept for a lossless frame sequence only: a later
    /// commit of the sequence grown takes the groups whose frames are unchanged as they are,
    /// without coding them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunk_sources: Vec<ObjectId>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl TensorEntry {
    /// Whether the next snapshot of this tensor (`len` bytes, coded `lossless` or not) may be
    /// coded against this entry: its chain is shorter than `keyframe_every` decodes (and than
    /// [`LOSSLESS_CHAIN_DECODES`] for a lossless one), and its deltas hold fewer bytes than
    /// `CHAIN_BUDGET` keyframes, so a checkout reads at most that many keyframes' worth.
    /// Early in a run, when deltas are nearly as large as a keyframe, this starts chains often
    /// (a keyframe then costs little more than the delta it replaces); late in a run, when deltas
    /// are small, chains grow to the decode cap.
    pub fn continues_chain(&self, len: u64, keyframe_every: u32, lossless: bool) -> bool {
        let deltas = self.chain_bytes.saturating_sub(self.keyframe_bytes);
        let cap = if lossless {
            keyframe_every.min(LOSSLESS_CHAIN_DECODES)
        } else {
            keyframe_every
        };
        self.len == len
            && self.depth < cap
            && (self.keyframe_bytes == 0 || deltas < CHAIN_BUDGET * self.keyframe_bytes)
    }

    /// Stored bytes of this entry's own chunks (zero for a dedup; a chunk an earlier snapshot
    /// stored counts nothing).
    pub fn stored_bytes(&self) -> u64 {
        if self.encoding == Encoding::Dedup {
            0
        } else {
            self.chunks
                .iter()
                .filter(|c| !c.earlier)
                .map(|c| c.stored)
                .sum()
        }
    }

    /// Byte range of chunk `i`.
    pub fn chunk_range(&self, i: usize) -> std::ops::Range<usize> {
        let start = i as u64 * self.chunk_bytes;
        let end = (start + self.chunk_bytes).min(self.len);
        start as usize..end as usize
    }
}

/// A snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version.
    pub format: u32,
    /// Parent snapshots (empty for the first on a branch).
    pub parents: Vec<ObjectId>,
    /// Commit message.
    pub message: String,
    /// Seconds since the Unix epoch.
    pub time: u64,
    /// Branch it was committed on.
    pub branch: String,
    /// Where the tensors came from (file name), if a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The safetensors `__metadata__`, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// User metrics and tags (`--meta key=value`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    /// The safetensors header exactly as committed, so checkout reproduces the file.
    pub header: String,
    /// Keyframe interval in force.
    pub keyframe_every: u32,
    /// Bound asked for.
    pub bound: Bound,
    /// Tensors in file order (for a checkpoint directory, each shard's in turn).
    pub tensors: Vec<TensorEntry>,
    /// The files of a checkpoint directory committed as one snapshot, in name order; empty for
    /// a snapshot of one file (whose header is [`Manifest::header`]) or of tensors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<CheckpointFile>,
    /// [`Manifest::tensor`]'s lookup table, built on first use.
    #[serde(skip)]
    pub(crate) by_name: NameIndex,
}

/// Tensor indices sorted by name, so that looking a tensor up by name is a binary search: a
/// linear one, called per tensor by a commit's plan, a checkout's chains and fsck, made them
/// quadratic (fsck of 20,000 tensors: 30 s). Not part of the manifest: skipped by serde, equal to
/// any other, and not copied by a clone (whose tensors may then change).
#[derive(Default)]
pub struct NameIndex(OnceLock<Vec<u32>>);

impl Clone for NameIndex {
    fn clone(&self) -> Self {
        NameIndex::default()
    }
}

impl PartialEq for NameIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for NameIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NameIndex")
    }
}

/// Manifests of at most this many tensors are searched in order (no table to build).
const LINEAR_LOOKUP_MAX: usize = 16;

/// Manifests of at most this many JSON bytes are compressed at Zstd level 9, larger ones at 3.
/// Measured on the shared corpora (`stage_profile`): digits-mlp's 4-5 KB manifests are 2.6-3%
/// smaller at 9 than at 3, in ~60 us; cnn-digits' 60-72 KB ones are 0.7-1.4% *larger* at 9
/// (8,951 against 8,890 bytes), and took 480-700 us against 120-180.
const SMALL_JSON: usize = 16 << 10;

impl Manifest {
    /// Serializes to the stored bytes: Zstd-compressed JSON (tensor names and headers repeat a
    /// lot; a small-tensor model's manifests were 8% of a lossy trajectory before compression).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_bytes_sized().0
    }

    /// [`Manifest::to_bytes`], also giving the length of its JSON (what a cache weighs it by).
    pub fn to_bytes_sized(&self) -> (Vec<u8>, usize) {
        let json = serde_json::to_vec(self).expect("manifest serializes");
        let level = if json.len() <= SMALL_JSON { 9 } else { 3 };
        let bytes = zstd::bulk::compress(&json, level).expect("in-memory zstd cannot fail");
        (bytes, json.len())
    }

    /// Parses stored bytes.
    pub fn from_bytes(bytes: &[u8], id: &ObjectId) -> Result<Self> {
        Ok(Manifest::from_bytes_sized(bytes, id)?.0)
    }

    /// [`Manifest::from_bytes`], also giving the length of its JSON (what a cache weighs it by).
    pub fn from_bytes_sized(bytes: &[u8], id: &ObjectId) -> Result<(Self, usize)> {
        let json = decompress_json(bytes)
            .map_err(|e| Error::decode(format!("manifest {id}"), e.to_string()))?;
        let m: Manifest = serde_json::from_slice(&json)
            .map_err(|e| Error::decode(format!("manifest {id}"), e.to_string()))?;
        check_format(m.format, id)?;
        m.check_files()
            .map_err(|problem| Error::decode(format!("manifest {id}"), problem))?;
        Ok((m, json.len()))
    }

    /// Whether the files list is one a checkout can write: plain, distinct file names (a
    /// manifest fetched from a remote must not name `../x`), shards holding every tensor.
    fn check_files(&self) -> std::result::Result<(), String> {
        let mut names = std::collections::HashSet::new();
        let mut held = 0u64;
        for f in &self.files {
            let name = f.name();
            if !is_plain_file_name(name) {
                return Err(format!("file name {name:?} is not a plain file name"));
            }
            if !names.insert(name) {
                return Err(format!("file {name:?} is listed twice"));
            }
            if let CheckpointFile::Safetensors { tensors, .. } = f {
                held += u64::from(*tensors);
            }
        }
        if !self.files.is_empty() && held != self.tensors.len() as u64 {
            return Err(format!(
                "its files hold {held} tensors, and it lists {}",
                self.tensors.len()
            ));
        }
        Ok(())
    }

    /// The shards of a checkpoint directory, each with the range of [`Manifest::tensors`] it
    /// holds, in order.
    pub fn shards(&self) -> Vec<(&str, &str, std::ops::Range<usize>)> {
        let mut start = 0;
        self.files
            .iter()
            .filter_map(|f| match f {
                CheckpointFile::Safetensors {
                    name,
                    header,
                    tensors,
                } => {
                    let range = start..start + *tensors as usize;
                    start = range.end;
                    Some((name.as_str(), header.as_str(), range))
                }
                CheckpointFile::Text { .. } => None,
            })
            .collect()
    }

    /// Whether this snapshot is a checkpoint directory (checked out into a directory).
    pub fn is_directory(&self) -> bool {
        !self.files.is_empty()
    }

    /// The entry for a tensor.
    pub fn tensor(&self, name: &str) -> Option<&TensorEntry> {
        if self.tensors.len() <= LINEAR_LOOKUP_MAX {
            return self.tensors.iter().find(|t| t.name == name);
        }
        let sorted = self.by_name.0.get_or_init(|| {
            let mut order: Vec<u32> = (0..self.tensors.len() as u32).collect();
            order.sort_by(|&a, &b| {
                self.tensors[a as usize]
                    .name
                    .cmp(&self.tensors[b as usize].name)
            });
            order
        });
        // The first of equal names, as the search in order finds (the sort is stable).
        let at = sorted.partition_point(|&i| self.tensors[i as usize].name.as_str() < name);
        let t = &self.tensors[*sorted.get(at)? as usize];
        (t.name == name).then_some(t)
    }

    /// Total tensor bytes.
    pub fn logical_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.len).sum()
    }

    /// Bytes this snapshot stored: its own chunk objects, each distinct chunk once (a chunk two
    /// tensors share is stored once; a deduplicated tensor, or a chunk an earlier snapshot
    /// stored, stores none). The one definition of "stored" that `commit`, `log`, `show` and
    /// `stats` report; the manifest itself, pack framing and the index count only in `stats`'
    /// bytes on disk.
    pub fn stored_bytes(&self) -> u64 {
        stored_bytes_of(self.tensors.iter().map(|t| (t.encoding, &t.chunks[..])))
    }
}

/// What `log` shows of a snapshot, read from its manifest without building the tensor entries:
/// names, hashes, references, statistics and the header are skipped, not allocated. On 100
/// snapshots of 10,000 tensors (`benches/many_tensors.sh`) a full parse took most of `log`.
#[derive(Clone, Debug, Deserialize)]
pub struct ManifestSummary {
    /// Manifest format version.
    pub format: u32,
    /// Parent snapshots.
    pub parents: Vec<ObjectId>,
    /// Commit message.
    pub message: String,
    /// Seconds since the Unix epoch.
    pub time: u64,
    /// Branch it was committed on.
    pub branch: String,
    /// User metrics and tags.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// Bound asked for.
    pub bound: Bound,
    tensors: Vec<TensorSummary>,
}

/// The part of a [`TensorEntry`] a [`ManifestSummary`] reads.
#[derive(Clone, Debug, Deserialize)]
struct TensorSummary {
    len: u64,
    encoding: Encoding,
    chunks: Vec<ChunkRef>,
}

impl ManifestSummary {
    /// Reads the summary of a stored manifest (the bytes [`Manifest::to_bytes`] wrote).
    pub fn from_bytes(bytes: &[u8], id: &ObjectId) -> Result<Self> {
        let json = decompress_json(bytes)
            .map_err(|e| Error::decode(format!("manifest {id}"), e.to_string()))?;
        let m: ManifestSummary = serde_json::from_slice(&json)
            .map_err(|e| Error::decode(format!("manifest {id}"), e.to_string()))?;
        check_format(m.format, id)?;
        Ok(m)
    }

    /// The summary of a manifest already parsed.
    pub fn of(m: &Manifest) -> Self {
        ManifestSummary {
            format: m.format,
            parents: m.parents.clone(),
            message: m.message.clone(),
            time: m.time,
            branch: m.branch.clone(),
            meta: m.meta.clone(),
            bound: m.bound,
            tensors: m
                .tensors
                .iter()
                .map(|t| TensorSummary {
                    len: t.len,
                    encoding: t.encoding,
                    chunks: t.chunks.clone(),
                })
                .collect(),
        }
    }

    /// Number of tensors.
    pub fn tensor_count(&self) -> usize {
        self.tensors.len()
    }

    /// [`Manifest::logical_bytes`].
    pub fn logical_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.len).sum()
    }

    /// [`Manifest::stored_bytes`].
    pub fn stored_bytes(&self) -> u64 {
        stored_bytes_of(self.tensors.iter().map(|t| (t.encoding, &t.chunks[..])))
    }
}

/// Bytes a snapshot of these tensors (each its encoding and chunks) stored: see
/// [`Manifest::stored_bytes`].
fn stored_bytes_of<'a>(tensors: impl Iterator<Item = (Encoding, &'a [ChunkRef])>) -> u64 {
    let mut seen = std::collections::HashSet::new();
    tensors
        .filter(|(encoding, _)| *encoding != Encoding::Dedup)
        .flat_map(|(_, chunks)| chunks)
        .filter(|c| !c.earlier && seen.insert(c.id))
        .map(|c| c.stored)
        .sum()
}

/// Refuses a manifest of a format newer than this build reads.
fn check_format(format: u32, id: &ObjectId) -> Result<()> {
    if format > MANIFEST_FORMAT_FILES {
        return Err(Error::decode(
            format!("manifest {id}"),
            format!("format {format} is newer than this snapstore ({MANIFEST_FORMAT_FILES})"),
        ));
    }
    Ok(())
}

/// A name a file may have in a checkpoint directory: not empty, `.` or `..`, no `/` or NUL.
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

#[cfg(test)]
impl Manifest {
    /// A manifest of no tensors, for tests.
    pub(crate) fn minimal() -> Manifest {
        serde_json::from_value(serde_json::json!({
            "format": 1, "parents": [], "message": "", "time": 0, "branch": "main",
            "header": "{}", "keyframe_every": 10, "tensors": [],
            "bound": serde_json::to_value(Bound::Lossless).expect("serializes"),
        }))
        .expect("a minimal manifest")
    }
}

#[cfg(test)]
impl TensorEntry {
    /// A lossless U8 tensor `name` of `len` bytes in one chunk, none stored, for tests.
    pub(crate) fn minimal(name: &str, len: u64) -> TensorEntry {
        TensorEntry {
            name: name.to_string(),
            dtype: Dtype::U8,
            shape: vec![len],
            len,
            hash: ObjectId::of(name.as_bytes()),
            source_hash: ObjectId::of(name.as_bytes()),
            encoding: Encoding::Planes,
            bound: Bound::Lossless,
            chunk_bytes: len,
            chunks: Vec::new(),
            reference: None,
            depth: 1,
            chain_bytes: 0,
            keyframe_bytes: 0,
            stats: BTreeMap::new(),
            chunk_sources: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest whose JSON is about `header_bytes` long (the header is most of it).
    fn manifest(header_bytes: usize) -> Manifest {
        let mut m = Manifest::minimal();
        m.header = (0..)
            .map(|t| format!("\"layer{t}.weight\":{{\"dtype\":\"F32\",\"shape\":[{t},3]}},"))
            .scan(0, |len, s| {
                *len += s.len();
                (*len <= header_bytes).then_some(s)
            })
            .collect();
        m
    }

    /// Looking a tensor up by name finds what a search in order finds, for manifests either
    /// side of the linear threshold, duplicate and missing names included.
    #[test]
    fn tensor_lookup_equals_a_search_in_order() {
        let entry = TensorEntry::minimal;
        for n in [0, 1, 5, LINEAR_LOOKUP_MAX, LINEAR_LOOKUP_MAX + 1, 300] {
            let mut m = Manifest::minimal();
            // Names out of order, every seventh a duplicate of an earlier one.
            m.tensors = (0..n)
                .map(|i| match i % 7 {
                    6 => entry(&format!("t{}", (i * 13) % (i + 1) / 2), i as u64),
                    _ => entry(&format!("t{}", (i * 37) % 1009), i as u64),
                })
                .collect();
            let mut names: Vec<String> = m.tensors.iter().map(|t| t.name.clone()).collect();
            names.extend(["absent".to_string(), String::new(), "t".to_string()]);
            for name in &names {
                let linear = m.tensors.iter().find(|t| t.name == *name);
                assert_eq!(m.tensor(name), linear, "{n} tensors, {name:?}");
            }
        }
    }

    /// A manifest whose files a checkout could not write as listed is refused when read: a
    /// name leaving the directory, a name twice, shards holding other than its tensors; so is a
    /// format newer than this build's.
    #[test]
    fn a_files_list_a_checkout_cannot_write_is_refused() {
        let shard = |name: &str, tensors| CheckpointFile::Safetensors {
            name: name.into(),
            header: "{}".into(),
            tensors,
        };
        let text = |name: &str| CheckpointFile::Text {
            name: name.into(),
            text: "{}".into(),
        };
        let read = |files: Vec<CheckpointFile>, format| {
            let mut m = Manifest::minimal();
            m.format = format;
            m.tensors = vec![TensorEntry::minimal("a", 4), TensorEntry::minimal("b", 4)];
            m.files = files;
            let bytes = m.to_bytes();
            Manifest::from_bytes(&bytes, &ObjectId::of(&bytes)).map_err(|e| e.to_string())
        };
        let good = vec![
            shard("m-1.safetensors", 1),
            shard("m-2.safetensors", 1),
            text("c.json"),
        ];
        let back = read(good.clone(), MANIFEST_FORMAT_FILES).unwrap();
        assert_eq!(back.files, good);
        let shards: Vec<_> = back.shards().into_iter().map(|(n, _, r)| (n, r)).collect();
        assert_eq!(
            shards,
            [("m-1.safetensors", 0..1), ("m-2.safetensors", 1..2)]
        );
        for (files, expected) in [
            (vec![shard("../m.safetensors", 2)], "not a plain file name"),
            (
                vec![shard("m.safetensors", 2), text("..")],
                "not a plain file name",
            ),
            (vec![shard("", 2)], "not a plain file name"),
            (
                vec![shard("m.safetensors", 2), text("m.safetensors")],
                "listed twice",
            ),
            (
                vec![shard("m.safetensors", 3)],
                "its files hold 3 tensors, and it lists 2",
            ),
            (vec![text("c.json")], "its files hold 0 tensors"),
        ] {
            let err = read(files, MANIFEST_FORMAT_FILES).unwrap_err();
            assert!(err.contains(expected), "{expected:?} not in {err}");
        }
        let err = read(good, MANIFEST_FORMAT_FILES + 1).unwrap_err();
        assert!(err.contains("is newer than this snapstore (2)"), "{err}");
    }

    /// Either side of the level threshold, the stored bytes read back to the same manifest.
    #[test]
    fn small_and_large_manifests_round_trip() {
        let mut sides = [false; 2];
        for size in [100, SMALL_JSON / 2, SMALL_JSON * 2, 200_000] {
            let m = manifest(size);
            let (bytes, json) = m.to_bytes_sized();
            assert_eq!(json, serde_json::to_vec(&m).unwrap().len());
            sides[usize::from(json > SMALL_JSON)] = true;
            let id = ObjectId::of(&bytes);
            let (back, back_json) = Manifest::from_bytes_sized(&bytes, &id).unwrap();
            assert_eq!((back.to_bytes(), back_json), (bytes, json), "{size}");
        }
        assert_eq!(sides, [true, true]);
    }

    /// A summary read from the stored bytes says what the whole manifest says: its history
    /// fields, tensor count, logical and stored bytes (a shared chunk, an earlier one and a
    /// deduplicated tensor counted as [`Manifest::stored_bytes`] counts them); a newer format
    /// is refused by both.
    #[test]
    fn a_summary_reads_what_the_manifest_says() {
        let mut m = manifest(2000);
        m.parents = vec![ObjectId::of(b"parent")];
        m.message = "epoch 3".into();
        m.time = 1_700_000_000;
        m.meta.insert("loss".into(), "0.25".into());
        m.bound = Bound::Rel(0.01);
        let chunk = |seed: &[u8], stored, earlier| ChunkRef {
            id: ObjectId::of(seed),
            stored,
            earlier,
        };
        let mut shared = TensorEntry::minimal("a", 100);
        shared.chunks = vec![chunk(b"x", 40, false), chunk(b"y", 7, false)];
        let mut twin = TensorEntry::minimal("b", 100);
        twin.chunks = vec![chunk(b"x", 40, false)];
        let mut earlier = TensorEntry::minimal("c", 30);
        earlier.chunks = vec![chunk(b"z", 11, true), chunk(b"w", 5, false)];
        let mut dedup = TensorEntry::minimal("d", 64);
        dedup.encoding = Encoding::Dedup;
        dedup.chunks = vec![chunk(b"v", 9, false)];
        m.tensors = vec![shared, twin, earlier, dedup];
        let bytes = m.to_bytes();
        let id = ObjectId::of(&bytes);
        let s = ManifestSummary::from_bytes(&bytes, &id).unwrap();
        assert_eq!(m.stored_bytes(), 40 + 7 + 5);
        for s in [s, ManifestSummary::of(&m)] {
            assert_eq!(
                (s.tensor_count(), s.logical_bytes(), s.stored_bytes()),
                (4, 294, 52)
            );
            assert_eq!(
                (&s.parents, &s.message, s.time),
                (&m.parents, &m.message, m.time)
            );
            assert_eq!((&s.branch, &s.meta, s.bound), (&m.branch, &m.meta, m.bound));
        }
        m.format = MANIFEST_FORMAT_FILES + 1;
        let bytes = m.to_bytes();
        let id = ObjectId::of(&bytes);
        let refused = ManifestSummary::from_bytes(&bytes, &id).unwrap_err();
        assert!(refused.to_string().contains("newer"), "{refused}");
        assert!(Manifest::from_bytes(&bytes, &id).is_err());
    }
}
