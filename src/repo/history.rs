//! History and inspection: log, show, diff and stats.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use super::checkout::decode_tensors;
use super::checkpoint_dir::OnDisk;
use super::reader::ObjectReader;
use super::refs::{resolve, resolve_rev, Rev};
use super::Repo;
use crate::bound::Bound;
use crate::dtype::Dtype;
use crate::error::Result;
use crate::store::index::Index;
use crate::store::manifest::{CheckpointFile, Encoding, Manifest};
use crate::store::object_id::ObjectId;

/// One line of `log`.
#[derive(Clone, Debug, Serialize)]
pub struct LogEntry {
    /// Snapshot id.
    pub id: ObjectId,
    /// Parents.
    pub parents: Vec<ObjectId>,
    /// Message.
    pub message: String,
    /// Seconds since the epoch.
    pub time: u64,
    /// Branch committed on.
    pub branch: String,
    /// User metadata.
    pub meta: BTreeMap<String, String>,
    /// Bound asked for (the same `{kind, eps}` shape as in a manifest).
    pub bound: crate::Bound,
    /// Number of tensors.
    pub tensors: usize,
    /// Tensor bytes.
    pub logical_bytes: u64,
    /// Bytes this snapshot stored ([`Manifest::stored_bytes`]).
    pub stored_bytes: u64,
    /// Refs that point at it: `heads/NAME` and `tags/NAME`.
    pub refs: Vec<String>,
}

/// How one tensor differs between two sides of a diff.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TensorDiff {
    /// Tensor name.
    pub name: String,
    /// `same`, `changed`, `added`, `removed`, or `layout` (dtype or shape changed).
    pub status: &'static str,
    /// Elements compared; for a tensor on one side only, or whose layout changed, its elements
    /// (the second side's where both have it).
    pub elements: u64,
    /// Largest |b - a|; none where the values were not compared (added, removed, layout).
    pub max_abs: Option<f64>,
    /// Largest |b - a| / |a| over elements with a != 0; none where not compared.
    pub max_rel: Option<f64>,
    /// Fraction of elements whose bits differ (1 where the values were not compared).
    pub changed_fraction: f64,
}

/// Alias kept for the CLI's table rows.
pub type DiffRow = TensorDiff;

/// Repository totals.
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    /// Snapshots reachable from refs.
    pub snapshots: usize,
    /// Branches.
    pub branches: usize,
    /// Tags.
    pub tags: usize,
    /// Sum of tensor bytes over reachable snapshots.
    pub logical_bytes: u64,
    /// Sum of the reachable snapshots' stored bytes ([`Manifest::stored_bytes`]: their own
    /// chunk objects), the same figure `commit` and `log` report per snapshot.
    pub stored_bytes: u64,
    /// logical / stored (0 when nothing is stored).
    pub ratio: f64,
    /// Bytes of the pack files (chunks, manifests, framing, and objects `gc` has not removed
    /// yet).
    pub pack_bytes: u64,
    /// Bytes of everything else in the repository directory: the index, `refs.log`, `FORMAT`.
    pub index_bytes: u64,
    /// Bytes of the whole repository directory: `pack_bytes + index_bytes`.
    pub disk_bytes: u64,
    /// logical / disk (0 for an empty repository).
    pub disk_ratio: f64,
    /// Tensor bytes that cost nothing because identical bytes were already stored (whole
    /// tensors, and chunks an earlier snapshot stored).
    pub dedup_bytes: u64,
    /// Pack files.
    pub packs: usize,
}

/// Tensor bytes of `entry` that cost its snapshot nothing: all of a deduplicated tensor, and
/// the chunks an earlier snapshot stored.
fn reused_bytes(entry: &crate::store::manifest::TensorEntry) -> u64 {
    if entry.encoding == Encoding::Dedup {
        return entry.len;
    }
    let ranges = entry.chunks.iter().enumerate().filter(|(_, c)| c.earlier);
    ranges.map(|(i, _)| entry.chunk_range(i).len() as u64).sum()
}

/// Bytes of the files under `dir` (what `du --apparent-size` counts); unreadable entries count 0.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// Where a file stands against the repository (`snapstore status FILE`).
#[derive(Clone, Debug, Serialize)]
pub struct FileStatus {
    /// The file.
    pub path: std::path::PathBuf,
    /// HEAD's snapshot (none before the first commit).
    pub head: Option<ObjectId>,
    /// A snapshot that holds exactly this file's tensors (names and bytes as committed),
    /// preferring one that stores them all losslessly, then HEAD, if any.
    pub snapshot: Option<ObjectId>,
    /// The bounds under which `snapshot` stores any of them lossily (empty: it checks out
    /// byte-identical).
    pub snapshot_lossy: Vec<Bound>,
    /// Each tensor of the file, in file order.
    pub tensors: Vec<TensorStatus>,
    /// Tensors HEAD has and the file lacks.
    pub removed: Vec<String>,
    /// For a checkpoint directory: the files it would keep (a shard's header, a JSON file)
    /// that differ from HEAD's, or that only one of them has, in name order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files_differ: Vec<String>,
}

/// The names of the files `ours` and `theirs` do not hold alike.
fn files_differing(ours: &[CheckpointFile], theirs: &[CheckpointFile]) -> Vec<String> {
    let find = |list: &[CheckpointFile], name: &str| list.iter().position(|f| f.name() == name);
    let mut names: Vec<String> = ours
        .iter()
        .chain(theirs)
        .map(|f| f.name())
        .filter(|&name| match (find(ours, name), find(theirs, name)) {
            (Some(a), Some(b)) => !ours[a].same_content(&theirs[b]),
            _ => true,
        })
        .map(str::to_string)
        .collect();
    names.sort_by(|a, b| crate::frames::natural_cmp(a, b));
    names.dedup();
    names
}

/// One tensor of [`FileStatus`].
#[derive(Clone, Debug, Serialize)]
pub struct TensorStatus {
    /// Tensor name.
    pub name: String,
    /// Against HEAD: `same` (the bytes HEAD committed), `changed`, or `added`.
    pub status: &'static str,
    /// A snapshot holding these exact bytes, and the tensor's name there (a lossless copy
    /// first, then HEAD, then the newest).
    pub stored_in: Option<(ObjectId, String)>,
    /// The bound `stored_in` keeps them under (`lossless`: a checkout gives these bytes).
    pub stored_bound: Option<Bound>,
}

/// The snapshots reachable from refs, and (when `skip_missing`, for an index rebuild) those
/// whose manifest is missing or unreadable, instead of failing at the first: their ancestors
/// are then reachable only through other refs.
pub(crate) fn reachable_snapshots_found(
    index: &Index,
    reader: &mut ObjectReader,
    skip_missing: bool,
) -> Result<(Vec<ObjectId>, Vec<ObjectId>)> {
    walk_reachable(index, reader, skip_missing, |_, _| Ok(()))
}

/// [`reachable_snapshots_found`], handing `visit` each snapshot's manifest as the walk reads
/// it. The walk keeps none of them: a history of many large manifests is read in the memory of
/// one (a command that kept them all held 1.5 GiB on 200 snapshots of 10,000 tensors).
pub(crate) fn walk_reachable(
    index: &Index,
    reader: &mut ObjectReader,
    skip_missing: bool,
    mut visit: impl FnMut(&ObjectId, &Manifest) -> Result<()>,
) -> Result<(Vec<ObjectId>, Vec<ObjectId>)> {
    let mut missing = Vec::new();
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    let mut todo: Vec<ObjectId> = index
        .list_refs("heads/")?
        .into_iter()
        .chain(index.list_refs("tags/")?)
        // What a fetch brought in stays until the remote's tracking ref moves on.
        .chain(index.list_refs("remotes/")?)
        .map(|(_, id)| id)
        .collect();
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        let m = match reader.read_manifest(index, &id) {
            Ok(m) => m,
            Err(_) if skip_missing => {
                missing.push(id);
                continue;
            }
            Err(e) => return Err(e),
        };
        visit(&id, &m)?;
        order.push(id);
        todo.extend(m.parents.iter().copied());
    }
    Ok((order, missing))
}

impl Repo {
    /// The first-parent history from `spec` (default HEAD), newest first.
    pub fn log(&self, spec: Option<&str>, limit: Option<usize>) -> Result<Vec<LogEntry>> {
        let index = self.index_read()?;
        let mut reader = self.reader();
        let mut next = match resolve(&index, &mut reader, spec.unwrap_or("HEAD")) {
            Ok(id) => Some(id),
            Err(crate::Error::EmptyBranch(_)) if spec.is_none() => None,
            Err(e) => return Err(e),
        };
        let mut refs: Vec<(String, ObjectId)> = index
            .list_refs("heads/")?
            .into_iter()
            .map(|(n, id)| (format!("heads/{n}"), id))
            .collect();
        refs.extend(
            index
                .list_refs("tags/")?
                .into_iter()
                .map(|(n, id)| (format!("tags/{n}"), id)),
        );
        let mut out = Vec::new();
        while let Some(id) = next {
            if limit.is_some_and(|l| out.len() >= l) {
                break;
            }
            let m = reader.read_summary(&index, &id)?;
            out.push(LogEntry {
                id,
                parents: m.parents.clone(),
                message: m.message.clone(),
                time: m.time,
                branch: m.branch.clone(),
                meta: m.meta.clone(),
                bound: m.bound,
                tensors: m.tensor_count(),
                logical_bytes: m.logical_bytes(),
                stored_bytes: m.stored_bytes(),
                refs: refs
                    .iter()
                    .filter(|(_, r)| *r == id)
                    .map(|(n, _)| n.clone())
                    .collect(),
            });
            next = m.parents.first().copied();
        }
        Ok(out)
    }

    /// Compares a safetensors file, or a checkpoint directory's shards, with the repository:
    /// whether its tensors (or all of them) are already stored and in which snapshot, and how
    /// each differs from HEAD's. Reads every reachable manifest; decodes nothing. Fails, naming
    /// the file, when it is not a valid safetensors file (or the directory, when it is no
    /// checkpoint [`Repo::commit_dir`] would take).
    pub fn status(&self, path: impl AsRef<Path>) -> Result<FileStatus> {
        let path = path.as_ref();
        let on_disk = OnDisk::open(path)?;
        let hashes: Vec<(String, ObjectId)> = on_disk
            .files()
            .iter()
            .flat_map(|file| {
                file.header()
                    .tensors
                    .iter()
                    .map(|t| (t.name.clone(), ObjectId::of(file.tensor_bytes(t))))
            })
            .collect();
        let listed = on_disk.listed()?;
        on_disk.check_unchanged("compared")?;
        let index = self.index_read()?;
        let mut reader = self.reader();
        let head = match resolve(&index, &mut reader, "HEAD") {
            Ok(id) => Some(id),
            Err(crate::Error::EmptyBranch(_)) => None,
            Err(e) => return Err(e),
        };
        let head_m = head
            .map(|id| reader.load_manifest(&index, &id))
            .transpose()?;
        let wanted: HashSet<ObjectId> = hashes.iter().map(|(_, h)| *h).collect();
        // Copies are preferred HEAD first, then newest first (then in walk and file order);
        // of those, the first exact one (it checks out byte-identical), else the first.
        let mut stored: HashMap<ObjectId, Preferred<(ObjectId, String, Bound)>> = HashMap::new();
        let mut snapshot: Preferred<(ObjectId, Vec<Bound>)> = Preferred::default();
        let mut walked = 0usize;
        walk_reachable(&index, &mut reader, false, |id, m| {
            walked += 1;
            let order = (Some(*id) != head, std::cmp::Reverse(m.time), walked);
            for (i, t) in m.tensors.iter().enumerate() {
                if wanted.contains(&t.source_hash) {
                    stored.entry(t.source_hash).or_default().offer(
                        (order, i),
                        t.bound == Bound::Lossless,
                        (*id, t.name.clone(), t.bound),
                    );
                }
            }
            // A directory's snapshot also holds its files as they are (headers, JSON texts).
            let same = m.tensors.len() == hashes.len()
                && m.files == listed
                && hashes
                    .iter()
                    .all(|(n, h)| m.tensor(n).is_some_and(|t| t.source_hash == *h));
            if same {
                let mut lossy: Vec<Bound> = Vec::new();
                for t in &m.tensors {
                    if t.bound != Bound::Lossless && !lossy.contains(&t.bound) {
                        lossy.push(t.bound);
                    }
                }
                snapshot.offer((order, 0), lossy.is_empty(), (*id, lossy));
            }
            Ok(())
        })?;
        let stored: HashMap<ObjectId, (ObjectId, String, Bound)> = stored
            .into_iter()
            .filter_map(|(h, p)| Some((h, p.chosen()?)))
            .collect();
        let (snapshot, snapshot_lossy) = snapshot
            .chosen()
            .map_or((None, Vec::new()), |(id, l)| (Some(id), l));
        let tensors = hashes
            .iter()
            .map(|(name, h)| TensorStatus {
                name: name.clone(),
                status: match head_m.as_ref().and_then(|m| m.tensor(name)) {
                    Some(t) if t.source_hash == *h => "same",
                    Some(_) => "changed",
                    None => "added",
                },
                stored_in: stored.get(h).map(|(id, n, _)| (*id, n.clone())),
                stored_bound: stored.get(h).map(|c| c.2),
            })
            .collect();
        let files_differ = match (&on_disk, &head_m) {
            (OnDisk::Dir(_), Some(m)) => files_differing(&listed, &m.files),
            _ => Vec::new(),
        };
        let names: HashSet<&str> = hashes.iter().map(|(n, _)| n.as_str()).collect();
        let removed = head_m
            .map(|m| {
                m.tensors
                    .iter()
                    .filter(|t| !names.contains(t.name.as_str()))
                    .map(|t| t.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        Ok(FileStatus {
            path: path.to_path_buf(),
            head,
            snapshot,
            snapshot_lossy,
            tensors,
            removed,
            files_differ,
        })
    }

    /// A snapshot's manifest. Hand the pair to a checkout (see [`Rev`]) to read the same
    /// snapshot without resolving it or reading its manifest again.
    pub fn show<'a>(&self, rev: impl Into<Rev<'a>>) -> Result<(ObjectId, Arc<Manifest>)> {
        let index = self.index_read()?;
        let mut reader = self.reader();
        let id = resolve_rev(&index, &mut reader, rev.into())?;
        let m = reader.load_manifest(&index, &id)?;
        Ok((id, m))
    }

    /// Compares two snapshots tensor by tensor (`b` against `a`).
    pub fn diff<'a, 'b>(
        &self,
        a: impl Into<Rev<'a>>,
        b: impl Into<Rev<'b>>,
    ) -> Result<Vec<TensorDiff>> {
        let left = self.checkout(a, None)?;
        let right = self.checkout(b, None)?;
        let right_tensors: Vec<(&str, Dtype, &[u64], &[u8])> = right
            .tensors
            .iter()
            .map(|t| (t.name.as_str(), t.dtype, &t.shape[..], &t.data[..]))
            .collect();
        Ok(diff_tensors(
            left.tensors
                .iter()
                .map(|t| (t.name.as_str(), t.dtype, &t.shape[..], &t.data[..]))
                .collect(),
            right_tensors,
        ))
    }

    /// Compares a snapshot against a safetensors file or a checkpoint directory: relative
    /// errors are taken against the file's values, so this checks a lossy snapshot's bound
    /// against its original.
    pub fn diff_file<'a>(
        &self,
        rev: impl Into<Rev<'a>>,
        file: impl AsRef<Path>,
    ) -> Result<Vec<TensorDiff>> {
        let on_disk = OnDisk::open(file.as_ref())?;
        let snap = self.checkout(rev, None)?;
        let file_tensors = on_disk
            .files()
            .into_iter()
            .flat_map(|f| {
                f.header()
                    .tensors
                    .iter()
                    .map(move |t| (t.name.as_str(), t.dtype, &t.shape[..], f.tensor_bytes(t)))
            })
            .collect();
        let snap_tensors = snap
            .tensors
            .iter()
            .map(|t| (t.name.as_str(), t.dtype, &t.shape[..], &t.data[..]))
            .collect();
        // The file is compared first (errors relative to its values), but the rows read from
        // the snapshot to the file, as `diff A B` reads from A to B: a tensor only the file
        // has was added.
        let rows = diff_tensors(file_tensors, snap_tensors);
        on_disk.check_unchanged("compared")?;
        Ok(rows.into_iter().map(TensorDiff::reversed).collect())
    }

    /// Totals over the repository.
    pub fn stats(&self) -> Result<Stats> {
        let index = self.index_read()?;
        let mut reader = self.reader();
        let mut logical = 0;
        let mut stored = 0;
        let mut dedup = 0;
        let (snaps, _) = walk_reachable(&index, &mut reader, false, |_, m| {
            logical += m.logical_bytes();
            stored += m.stored_bytes();
            dedup += m.tensors.iter().map(reused_bytes).sum::<u64>();
            Ok(())
        })?;
        let packs = crate::store::pack::list_packs(&self.packs_dir())?;
        let pack_bytes: u64 = packs
            .iter()
            .filter_map(|p| std::fs::metadata(self.packs_dir().join(format!("{p}.pack"))).ok())
            .map(|m| m.len())
            .sum();
        let disk_bytes = dir_bytes(&self.dir);
        let ratio = |of: u64| {
            if of == 0 {
                0.0
            } else {
                logical as f64 / of as f64
            }
        };
        Ok(Stats {
            snapshots: snaps.len(),
            branches: index.list_refs("heads/")?.len(),
            tags: index.list_refs("tags/")?.len(),
            logical_bytes: logical,
            stored_bytes: stored,
            ratio: ratio(stored),
            pack_bytes,
            index_bytes: disk_bytes.saturating_sub(pack_bytes),
            disk_bytes,
            disk_ratio: ratio(disk_bytes),
            dedup_bytes: dedup,
            packs: packs.len(),
        })
    }

    /// Decodes one tensor of a snapshot without writing anything (used by fsck).
    pub(crate) fn verify_tensor(
        reader: &ObjectReader,
        snapshot: &ObjectId,
        entry: &crate::store::manifest::TensorEntry,
    ) -> Result<()> {
        // fsck names the snapshots and tensors itself: the damage alone.
        decode_tensors(reader, snapshot, &[entry], None, &mut |_, _, _| Ok(())).map_err(|e| match e
        {
            crate::Error::DamagedTensor { damage, .. } => *damage,
            other => other,
        })
    }
}

/// Where `status` found a copy: copies are offered in any order, each with its place in the
/// order of preference, and the first exact one (it checks out byte-identical) is chosen, else
/// the first.
struct Preferred<T> {
    exact: Option<(PreferenceOrder, T)>,
    any: Option<(PreferenceOrder, T)>,
}

/// HEAD first, then newest first, then in walk order; then in file order.
type PreferenceOrder = ((bool, std::cmp::Reverse<u64>, usize), usize);

impl<T> Default for Preferred<T> {
    fn default() -> Self {
        Preferred {
            exact: None,
            any: None,
        }
    }
}

impl<T: Clone> Preferred<T> {
    fn offer(&mut self, order: PreferenceOrder, exact: bool, copy: T) {
        let better =
            |held: &Option<(PreferenceOrder, T)>| held.as_ref().is_none_or(|h| order < h.0);
        if exact && better(&self.exact) {
            self.exact = Some((order, copy.clone()));
        }
        if better(&self.any) {
            self.any = Some((order, copy));
        }
    }

    fn chosen(self) -> Option<T> {
        self.exact.or(self.any).map(|(_, copy)| copy)
    }
}

type Side<'a> = Vec<(&'a str, Dtype, &'a [u64], &'a [u8])>;

impl TensorDiff {
    /// The row as the other side sees it: added and removed swap.
    fn reversed(self) -> TensorDiff {
        let status = match self.status {
            "added" => "removed",
            "removed" => "added",
            other => other,
        };
        TensorDiff { status, ..self }
    }
}

fn diff_tensors(a: Side, b: Side) -> Vec<TensorDiff> {
    let mut out = Vec::new();
    let uncompared = |name: &str, status, shape: &[u64]| TensorDiff {
        name: name.to_string(),
        status,
        elements: shape.iter().product(),
        max_abs: None,
        max_rel: None,
        changed_fraction: 1.0,
    };
    let in_b: HashMap<&str, usize> = b.iter().enumerate().map(|(i, t)| (t.0, i)).collect();
    let in_a: HashSet<&str> = a.iter().map(|t| t.0).collect();
    for (name, dt, shape, data) in &a {
        match in_b.get(name).map(|&i| &b[i]) {
            None => out.push(uncompared(name, "removed", shape)),
            Some((_, dt2, shape2, _)) if dt2 != dt || shape2 != shape => {
                out.push(uncompared(name, "layout", shape2))
            }
            Some((_, _, _, data2)) => {
                let (elements, max_abs, max_rel, changed) = compare(*dt, data, data2);
                out.push(TensorDiff {
                    name: name.to_string(),
                    status: if changed == 0 { "same" } else { "changed" },
                    elements,
                    max_abs: Some(max_abs),
                    max_rel: Some(max_rel),
                    changed_fraction: if elements == 0 {
                        0.0
                    } else {
                        changed as f64 / elements as f64
                    },
                });
            }
        }
    }
    for (name, _, shape, _) in &b {
        if !in_a.contains(name) {
            out.push(uncompared(name, "added", shape));
        }
    }
    out
}

/// Element-wise comparison: (elements, max abs diff, max rel diff, elements whose bits differ).
/// Types without a numeric reading here (F8, sub-byte, complex) are compared byte-wise.
fn compare(dtype: Dtype, a: &[u8], b: &[u8]) -> (u64, f64, f64, u64) {
    let unit = dtype.unit_bytes();
    let value: Option<fn(&[u8]) -> f64> = match dtype {
        Dtype::F32 => Some(|x| f32::from_le_bytes(x.try_into().unwrap()) as f64),
        Dtype::F64 => Some(|x| f64::from_le_bytes(x.try_into().unwrap())),
        Dtype::F16 => Some(|x| half::f16::from_le_bytes(x.try_into().unwrap()).to_f64()),
        Dtype::BF16 => Some(|x| half::bf16::from_le_bytes(x.try_into().unwrap()).to_f64()),
        Dtype::I8 => Some(|x| x[0] as i8 as f64),
        Dtype::U8 | Dtype::Bool => Some(|x| x[0] as f64),
        Dtype::I16 => Some(|x| i16::from_le_bytes(x.try_into().unwrap()) as f64),
        Dtype::U16 => Some(|x| u16::from_le_bytes(x.try_into().unwrap()) as f64),
        Dtype::I32 => Some(|x| i32::from_le_bytes(x.try_into().unwrap()) as f64),
        Dtype::U32 => Some(|x| u32::from_le_bytes(x.try_into().unwrap()) as f64),
        Dtype::I64 => Some(|x| i64::from_le_bytes(x.try_into().unwrap()) as f64),
        Dtype::U64 => Some(|x| u64::from_le_bytes(x.try_into().unwrap()) as f64),
        _ => None,
    };
    let (mut max_abs, mut max_rel, mut changed) = (0.0f64, 0.0f64, 0u64);
    let n = (a.len() / unit) as u64;
    for (x, y) in a.chunks_exact(unit).zip(b.chunks_exact(unit)) {
        if x == y {
            continue;
        }
        changed += 1;
        let Some(value) = value else { continue };
        let (va, vb) = (value(x), value(y));
        let d = if va.is_nan() || vb.is_nan() || va.is_infinite() || vb.is_infinite() {
            if va.to_bits() == vb.to_bits() || (va == vb) {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            (vb - va).abs()
        };
        max_abs = max_abs.max(d);
        if va != 0.0 {
            max_rel = max_rel.max(d / va.abs());
        } else if d > 0.0 {
            max_rel = f64::INFINITY;
        }
    }
    (n, max_abs, max_rel, changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_measures_errors() {
        let a: Vec<u8> = [1.0f32, 2.0, -4.0, 0.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let b: Vec<u8> = [1.0f32, 2.2, -4.0, 0.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let (n, abs, rel, changed) = compare(Dtype::F32, &a, &b);
        assert_eq!((n, changed), (4, 1));
        assert!((abs - 0.2).abs() < 1e-6 && (rel - 0.1).abs() < 1e-6);
        let c: Vec<u8> = [1.0f32, 2.0, -4.0, f32::NAN]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let (_, abs, _, _) = compare(Dtype::F32, &a, &c);
        assert!(abs.is_infinite());
    }
}
