//! Remote integrity: every snapshot a remote ref reaches has its record, and every pack those
//! records place objects in is there, long enough for them, and (`deep`) whole: its trailer
//! hashes to its name and every object to its id, read back as a fetch reads it. A repository
//! holding what was lost puts it back ([`Repo::repair_remote`]); a push cannot, since it sends
//! only what the remote has no record of.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use serde::Serialize;

use super::fetch::verify_pack;
use super::layout::{self, pack_object, read_record, record_object};
use super::push::PushReport;
use super::refs::{list_refs_and_damaged, DAMAGED_REF};
use super::store::RemoteStore;
use super::RemoteSpec;
use crate::error::{Error, Result};
use crate::repo::Repo;
use crate::store::object_id::ObjectId;
use crate::store::pack::min_pack_len;

/// What a remote fsck found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RemoteFsckReport {
    /// The remote's URL.
    pub remote: String,
    /// No problem found.
    pub clean: bool,
    /// Whether every live pack was downloaded and verified.
    pub deep: bool,
    /// Remote refs (branches and tags) walked from.
    pub refs: usize,
    /// Snapshots the refs reach.
    pub snapshots: usize,
    /// Packs their records place objects in.
    pub packs: usize,
    /// What is missing or damaged, each with the ref that reaches it.
    pub problems: Vec<RemoteProblem>,
    /// Objects a repair put back (`snapshots/ID`, `packs/NAME.pack`); empty without one.
    pub repaired: Vec<String>,
    /// Requests sent.
    pub requests: u64,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// One missing or damaged remote object.
#[derive(Clone, Debug, Serialize)]
pub struct RemoteProblem {
    /// `snapshots/ID` or `packs/NAME.pack`.
    pub object: String,
    /// What is wrong with it.
    pub problem: String,
    /// A remote ref (`heads/NAME`, `tags/NAME`) whose history needs it.
    pub reached_from: String,
}

/// Checks the remote `spec` (see the module doc); reads, writes nothing.
pub fn remote_fsck(spec: &RemoteSpec, deep: bool) -> Result<RemoteFsckReport> {
    let started = Instant::now();
    let store = RemoteStore::open(&spec.clone().normalized()?, false)?;
    layout::check_format(&store, false)?;
    let mut report = check(&store, deep)?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn check(store: &RemoteStore, deep: bool) -> Result<RemoteFsckReport> {
    let (refs, damaged_refs) = list_refs_and_damaged(store)?;
    let problem = |object: String, problem: String, from: &str| RemoteProblem {
        object,
        problem,
        reached_from: from.to_string(),
    };
    let mut problems: Vec<RemoteProblem> = damaged_refs
        .iter()
        .map(|(key, why)| {
            problem(
                layout::ref_object(key),
                format!("{why}: {DAMAGED_REF}"),
                key,
            )
        })
        .collect();
    // Each snapshot once, named by the first ref that reaches it.
    let mut reached: HashSet<ObjectId> = HashSet::new();
    // Per live pack: the end of the furthest object a record places in it, and a ref.
    let mut needed: BTreeMap<String, (u64, String)> = BTreeMap::new();
    // Per live pack, the distinct objects records place in it (each has a trailer entry).
    let mut placed: HashMap<String, HashSet<ObjectId>> = HashMap::new();
    for (key, tip) in &refs {
        let mut todo = vec![*tip];
        while let Some(id) = todo.pop() {
            if !reached.insert(id) {
                continue;
            }
            match read_record(store, &id) {
                Ok(Some(record)) => {
                    for &(object, p, offset, len) in &record.objects {
                        let Some(pack) = record.packs.get(p as usize) else {
                            continue; // `parse` refuses such a record
                        };
                        let end = needed.entry(pack.clone()).or_insert((0, key.clone()));
                        end.0 = end.0.max(offset + len);
                        placed.entry(pack.clone()).or_default().insert(object);
                    }
                    todo.extend(record.needs.iter().copied());
                }
                Ok(None) => problems.push(problem(
                    record_object(&id),
                    "missing: a ref reaches this snapshot, but the remote holds no record of it"
                        .into(),
                    key,
                )),
                Err(Error::RemoteCorrupt { problem: p, .. }) => {
                    problems.push(problem(record_object(&id), p, key))
                }
                Err(e) => return Err(e),
            }
        }
    }
    let present: HashMap<String, u64> = store.list("packs")?.into_iter().collect();
    let spool = deep.then(scratch_dir).transpose()?;
    for (pack, (end, key)) in &needed {
        let object = pack_object(pack);
        // Its trailer lists at least the objects placed in it: a pack cut in its trailer had
        // passed as whole, and every clone failed on it.
        let objects = placed[pack].len();
        let least = min_pack_len(*end, objects as u64);
        match present.get(&format!("{pack}.pack")) {
            None => problems.push(problem(object, "missing".into(), key)),
            Some(&size) if size < *end => problems.push(problem(
                object,
                format!("truncated: {size} bytes, but objects in it end at byte {end}"),
                key,
            )),
            Some(&size) if size < least => problems.push(problem(
                object,
                format!(
                    "truncated: {size} bytes, but its trailer and footer for the {objects} \
                     object(s) placed in it end at byte {least} or later"
                ),
                key,
            )),
            Some(_) => {
                if let Some(dir) = &spool {
                    if let Some(why) = verify_download(store, &object, &dir.0)? {
                        problems.push(problem(object, why, key));
                    }
                }
            }
        }
    }
    Ok(RemoteFsckReport {
        remote: store.url.clone(),
        clean: problems.is_empty(),
        deep,
        refs: refs.len(),
        snapshots: reached.len(),
        packs: needed.len(),
        problems,
        repaired: Vec::new(),
        requests: store
            .traffic
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        seconds: 0.0,
    })
}

/// A temp directory for packs downloaded to be verified, removed when dropped (and on Ctrl-C).
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        crate::fsutil::forget_temp(&self.0);
    }
}

fn scratch_dir() -> Result<Scratch> {
    let dir = crate::fsutil::temp_sibling(&std::env::temp_dir().join("snapstore-remote-fsck"));
    crate::fsutil::register_temp(&dir);
    std::fs::create_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    Ok(Scratch(dir))
}

/// Downloads pack `object` into `dir` and verifies it as a fetch does: `Some(why)` when it is
/// damaged. The copy is removed either way.
fn verify_download(
    store: &RemoteStore,
    object: &str,
    dir: &std::path::Path,
) -> Result<Option<String>> {
    let target = dir.join("pack");
    let result = store.download_files(
        &[(object.to_string(), target.clone())],
        &|object, tmp| verify_pack(store, object, tmp),
        &|_| {},
    );
    let _ = std::fs::remove_file(&target);
    match result {
        Ok(_) => Ok(None),
        Err(Error::RemoteCorrupt { problem, .. }) => Ok(Some(problem)),
        Err(Error::CorruptPack { problem, .. }) => Ok(Some(problem)),
        Err(e) => Err(e),
    }
}

impl Repo {
    /// [`remote_fsck`] of the remote a configured name or a URL stands for.
    pub fn check_remote(&self, remote: &str, deep: bool) -> Result<RemoteFsckReport> {
        let (_, spec) = self.remote_spec(remote)?;
        remote_fsck(&spec, deep)
    }

    /// Checks the remote (a configured name or a URL) as [`remote_fsck`] does, then puts back
    /// what this repository holds of what is missing or damaged: a pack of the same name (packs
    /// are named by their contents), uploaded over the remote's; a snapshot whose record is
    /// missing, with the records and packs it needs that the remote lacks, as a push sends
    /// them. Returns the check made afterwards, with `repaired` naming what went back.
    pub fn repair_remote(&self, remote: &str, deep: bool) -> Result<RemoteFsckReport> {
        let (_, spec) = self.remote_spec(remote)?;
        self.repair(&spec, deep)
    }

    /// [`Repo::repair_remote`] on the remote `spec` given by URL (with its endpoint and region).
    pub fn repair_remote_at(&self, spec: &RemoteSpec, deep: bool) -> Result<RemoteFsckReport> {
        self.repair(&spec.clone().normalized()?, deep)
    }

    fn repair(&self, spec: &RemoteSpec, deep: bool) -> Result<RemoteFsckReport> {
        let started = Instant::now();
        let store = RemoteStore::open(spec, false)?.stopped_by(self.interrupt());
        layout::check_format(&store, false)?;
        let mut found = check(&store, deep)?;
        let mut repaired = Vec::new();
        // The walk cannot pass a record it cannot read: what lies behind one is checked once
        // it is put back, so a round repeats while one puts something back.
        loop {
            let fixed = self.repair_found(&store, &found)?;
            let progress = fixed.iter().any(|o| !repaired.contains(o));
            repaired.extend(fixed);
            found = check(&store, deep)?;
            if found.clean || !progress {
                break;
            }
        }
        repaired.sort();
        repaired.dedup();
        found.repaired = repaired;
        found.seconds = started.elapsed().as_secs_f64();
        Ok(found)
    }

    /// Puts back what this repository holds of the `found` problems; what went back.
    fn repair_found(&self, store: &RemoteStore, found: &RemoteFsckReport) -> Result<Vec<String>> {
        let mut repaired = Vec::new();
        let mut uploads = Vec::new();
        for p in &found.problems {
            let Some(pack) = p
                .object
                .strip_prefix("packs/")
                .and_then(|n| n.strip_suffix(".pack"))
            else {
                continue;
            };
            let local = self.packs_dir().join(format!("{pack}.pack"));
            if local.is_file() {
                uploads.push((p.object.clone(), local));
            }
        }
        store.upload_files(&uploads, &|_| {})?;
        repaired.extend(uploads.into_iter().map(|(object, _)| object));
        let index = self.index()?;
        // Missing or unreadable records alike: a record's bytes follow from the snapshot, so
        // one written over a damaged one is what was meant to be there.
        let lost: HashSet<ObjectId> = found
            .problems
            .iter()
            .filter_map(|p| p.object.strip_prefix("snapshots/")?.parse().ok())
            .filter(|id: &ObjectId| matches!(index.locate(id), Ok(Some(_))))
            .collect();
        drop(index);
        for &id in &lost {
            let mut sent = PushReport::default();
            self.upload_closure_over(store, id, &lost, &mut sent)?;
            if sent.snapshots > 0 {
                repaired.push(record_object(&id));
            }
        }
        Ok(repaired)
    }
}
