//! Checking out tensors straight from a remote, without cloning: the snapshot's record, its
//! manifest, then exactly the chunk objects the asked-for tensors need (along their delta
//! references), each fetched by a range request, verified against its id and decoded in memory.
//! No local repository is needed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::layout::{self, read_located, read_record, RemoteObject, SnapshotRecord};
use super::refs::{list_refs, read_ref};
use super::store::RemoteStore;
use super::{RemoteSpec, REMOTE_CHECKOUT_TASK};
use crate::error::{Error, Result};
use crate::repo::{select_entries, ObjectReader, Prepared, Spool};
use crate::store::manifest::{Manifest, TensorEntry};
use crate::store::object_id::ObjectId;

/// Objects closer than this in one pack are fetched by one range request (the 9-byte record
/// header between two neighbours is the usual gap).
const MERGE_GAP: u64 = 64;
/// ... up to this many bytes a request, so a response held while it is spooled stays small.
const MAX_RANGE_BYTES: u64 = 16 << 20;

/// What a remote checkout did.
#[derive(Clone, Debug, Serialize)]
pub struct RemoteCheckoutReport {
    /// The remote's URL.
    pub remote: String,
    /// Snapshot id.
    pub snapshot: ObjectId,
    /// File written.
    pub path: PathBuf,
    /// Tensors written.
    pub tensors: usize,
    /// Tensor bytes written.
    pub bytes: u64,
    /// Bytes downloaded (records, manifests and chunks).
    pub downloaded_bytes: u64,
    /// Requests sent.
    pub requests: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// What the symbolic link at `path` named, where the file replaced one (left as it was).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_link: Option<PathBuf>,
}

/// Checks out `spec` (`HEAD`, a remote branch, tag, snapshot id or unique id prefix, optionally
/// `~N`: resolved as a local checkout resolves one, against the remote's refs and records) of
/// the remote, or only the tensors `names`, as a safetensors file at `path`, downloading only
/// what those tensors need.
/// `progress(done, total)` is told the download's bytes. Every object is verified against its
/// id, and every tensor against the manifest's hash.
pub fn remote_checkout_to_file(
    remote: &RemoteSpec,
    spec: &str,
    path: impl AsRef<Path>,
    names: Option<&[String]>,
    progress: &dyn Fn(crate::Progress),
) -> Result<RemoteCheckoutReport> {
    let started = Instant::now();
    // Only safetensors comes out of a remote: a frame sequence's .npy or PNGs need its groups
    // decoded as frames, which a local checkout does (before, safetensors bytes were written
    // under a .npy name).
    let out = path.as_ref();
    let refuse = || {
        Error::invalid(
            "output",
            format!(
                "{}: remote checkout writes a .safetensors file (a checkpoint directory's \
                 snapshot, a directory); for a frame sequence's .npy or PNGs, fetch it and \
                 check it out locally",
                out.display()
            ),
        )
    };
    if crate::has_extension(out, "npy") {
        return Err(refuse());
    }
    let store = RemoteStore::open(&remote.clone().normalized()?, false)?;
    layout::check_format(&store, false)?;
    let mut loader = Loader {
        store: &store,
        records: HashMap::new(),
        reader: ObjectReader::new(PathBuf::new()),
    };
    let snapshot = resolve(&mut loader, spec)?;
    let manifest = loader.manifest(&snapshot)?;
    if out.is_dir() && !(manifest.is_directory() && names.is_none()) {
        return Err(refuse());
    }
    let selected = select_entries(&manifest, &snapshot, names)?;
    // Every chunk the selected tensors need, down their reference chains.
    let mut wanted: BTreeMap<String, Vec<(ObjectId, RemoteObject)>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for e in &selected {
        let mut owner = snapshot;
        let mut entry: TensorEntry = e.clone();
        let mut hops = 0usize;
        loop {
            let record = loader.record(&owner)?;
            for c in &entry.chunks {
                if seen.insert(c.id) {
                    let at = record.locate(&c.id).ok_or_else(|| Error::RemoteCorrupt {
                        url: store.url.clone(),
                        object: layout::record_object(&owner),
                        problem: format!(
                            "does not place chunk {} of tensor {:?}",
                            c.id, entry.name
                        ),
                    })?;
                    wanted.entry(at.pack.clone()).or_default().push((c.id, at));
                }
            }
            let Some(r) = entry.reference.clone() else {
                break;
            };
            hops += 1;
            if hops > 100_000 {
                return Err(Error::decode(
                    format!("tensor {:?}", e.name),
                    "reference cycle",
                ));
            }
            let m = loader.manifest(&r.snapshot)?;
            entry = m
                .tensor(&r.tensor)
                .cloned()
                .ok_or_else(|| Error::TensorNotFound {
                    tensor: r.tensor.clone(),
                    snapshot: r.snapshot.hex(),
                })?;
            owner = r.snapshot;
        }
    }
    let total: u64 = wanted.values().flatten().map(|(_, at)| at.len).sum();
    let mut done = 0u64;
    let report = |done: u64| {
        progress(crate::Progress {
            task: REMOTE_CHECKOUT_TASK,
            done,
            total,
        })
    };
    report(0);
    // Beside the output, on its file system, not in memory (see `Spool`).
    let mut spool =
        Spool::new(crate::fsutil::unnamed_file_beside(out).map_err(|e| Error::io(out, e))?);
    for (pack, mut objects) in wanted {
        objects.sort_by_key(|(_, at)| at.offset);
        let object = layout::pack_object(&pack);
        let mut i = 0;
        while i < objects.len() {
            // One request for a run of neighbouring objects.
            let start = objects[i].1.offset;
            let mut end = start + objects[i].1.len;
            let mut j = i + 1;
            while j < objects.len()
                && objects[j].1.offset <= end + MERGE_GAP
                && objects[j].1.offset + objects[j].1.len - start <= MAX_RANGE_BYTES
            {
                end = end.max(objects[j].1.offset + objects[j].1.len);
                j += 1;
            }
            let bytes = store.get_range(&object, start..end)?;
            for (id, at) in &objects[i..j] {
                let from = (at.offset - start) as usize;
                let piece = &bytes[from..from + at.len as usize];
                layout::verify(&store, &object, id, piece)?;
                spool.append(*id, piece).map_err(|e| Error::io(out, e))?;
                done += at.len;
            }
            report(done);
            i = j;
        }
    }
    loader.reader.set_spool(spool);
    let prepared = Prepared {
        snapshot,
        manifest,
        selected,
        reader: loader.reader,
    };
    let mut r = crate::repo::write_prepared(
        prepared,
        path.as_ref(),
        names.is_some(),
        &|_, _| {},
        &|| Ok(()),
    )?;
    r.seconds = started.elapsed().as_secs_f64();
    Ok(RemoteCheckoutReport {
        remote: store.url.clone(),
        snapshot,
        path: r.path,
        tensors: r.tensors,
        bytes: r.bytes,
        downloaded_bytes: store.traffic.bytes_down.load(Ordering::Relaxed),
        requests: store.traffic.requests.load(Ordering::Relaxed),
        seconds: r.seconds,
        replaced_link: r.replaced_link,
    })
}

/// A ref expression against the remote, as local checkout reads one: `BASE` or `BASE~N` (N
/// first parents back, each a record and a manifest read), where `BASE` is `HEAD` (the remote
/// has no HEAD: `main`, else its first branch, as a clone chooses), a branch, a tag
/// (`heads/NAME`, `tags/NAME` to be exact), a full snapshot id, or a unique prefix of at least 4
/// hex digits. A prefix is looked up by listing `snapshots/` from the prefix on
/// ([`RemoteStore::list_starting`]: on S3 one request, not a listing of every record).
fn resolve(loader: &mut Loader, spec: &str) -> Result<ObjectId> {
    let store = loader.store;
    let unknown = || Error::UnknownRemoteRef {
        url: store.url.clone(),
        spec: spec.to_string(),
    };
    let (base, back) = crate::repo::split_ancestry(spec).ok_or_else(unknown)?;
    let mut id = resolve_base(store, base)?.ok_or_else(unknown)?;
    for _ in 0..back {
        id = *loader.manifest(&id)?.parents.first().ok_or_else(unknown)?;
    }
    Ok(id)
}

fn resolve_base(store: &RemoteStore, base: &str) -> Result<Option<ObjectId>> {
    if base == "HEAD" {
        if let Some(r) = read_ref(store, &crate::repo::branch_key("main"))? {
            return Ok(Some(r.id));
        }
        let refs = list_refs(store)?;
        return Ok(refs
            .iter()
            .find(|(k, _)| k.starts_with("heads/"))
            .map(|(_, id)| *id));
    }
    for key in [
        crate::repo::branch_key(base),
        crate::repo::tag_key(base),
        base.strip_prefix("refs/").unwrap_or(base).to_string(),
    ] {
        if key.starts_with("heads/") || key.starts_with("tags/") {
            if let Some(r) = read_ref(store, &key)? {
                return Ok(Some(r.id));
            }
        }
    }
    if let Ok(id) = base.parse::<ObjectId>() {
        return Ok(read_record(store, &id)?.map(|_| id));
    }
    let hex = base.len() >= 4 && base.len() < 64 && base.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex {
        return Ok(None);
    }
    let prefix = base.to_ascii_lowercase();
    let matches: Vec<ObjectId> = store
        .list_starting("snapshots", &prefix)?
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    match matches.len() {
        0 => Ok(None),
        1 => Ok(Some(matches[0])),
        _ => Err(crate::repo::ambiguous(prefix, &matches)),
    }
}

/// Records and manifests read so far, and the reader that will decode.
struct Loader<'a> {
    store: &'a RemoteStore,
    records: HashMap<ObjectId, Arc<SnapshotRecord>>,
    reader: ObjectReader,
}

impl Loader<'_> {
    fn record(&mut self, id: &ObjectId) -> Result<Arc<SnapshotRecord>> {
        if let Some(r) = self.records.get(id) {
            return Ok(r.clone());
        }
        let r = read_record(self.store, id)?.ok_or_else(|| Error::UnknownRemoteRef {
            url: self.store.url.clone(),
            spec: id.hex(),
        })?;
        let r = Arc::new(r);
        self.records.insert(*id, r.clone());
        Ok(r)
    }

    fn manifest(&mut self, id: &ObjectId) -> Result<Arc<Manifest>> {
        if let Some(m) = self.reader.manifest(id) {
            return Ok(m.clone());
        }
        let record = self.record(id)?;
        let at = record
            .locate(id)
            .expect("a parsed record places its manifest");
        let bytes = read_located(self.store, id, &at)?;
        let m = Arc::new(Manifest::from_bytes(&bytes, id)?);
        self.reader.insert_manifest(*id, m.clone());
        Ok(m)
    }
}
