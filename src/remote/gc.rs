//! Remote garbage collection: delete the snapshot records and packs no remote ref reaches
//! (what forced pushes, deleted refs and interrupted pushes leave behind), and in a directory
//! remote the temp files of killed uploads. (S3's unfinished multipart uploads cannot be
//! listed through `object_store`; a failed upload aborts its own, and the bucket rule in the
//! README aborts those of a killed push.)
//!
//! Reachability follows the records: every ref's snapshot, then each record's `needs`
//! (parents and delta references) transitively; a pack is live when a live record places an
//! object in it (packs are kept or deleted whole, never rewritten on the remote). Objects
//! younger than the grace period are kept whatever they are: a push uploads packs, then
//! records, then moves its ref, so until the ref moves its fresh packs and records reach
//! nothing. Ages are measured against this machine's clock (the store's `Last-Modified` on S3,
//! the file's mtime on a directory), so the grace must exceed any clock skew to the store.
//!
//! Records are deleted before packs, so a record that survives never names a deleted pack. One
//! race is left, as in `git gc --prune`: a push that found an old unreachable record on the
//! remote uses it instead of writing it again; if a gc deletes that record before the push's
//! ref moves, the pushed ref reaches a missing record. The gc re-reads the refs after it lists
//! and keeps whatever they reach then, which narrows the window; a `fetch` or `clone` names
//! the missing record, and pushing the branch again (from any repository holding it) restores
//! it. Run `remote gc` when no push is in flight to rule it out.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::layout::{self, pack_object, read_record, record_object};
use super::refs::list_refs;
use super::store::RemoteStore;
use super::RemoteSpec;
use crate::error::{Error, Result};
use crate::store::object_id::ObjectId;

/// What a remote gc removed (or, dry, would remove).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RemoteGcReport {
    /// The remote's URL.
    pub remote: String,
    /// Nothing was deleted.
    pub dry_run: bool,
    /// The grace period in seconds.
    pub grace_s: u64,
    /// Remote refs (branches and tags) walked from.
    pub refs: usize,
    /// Snapshots the refs reach.
    pub live_snapshots: usize,
    /// Packs those snapshots' records place objects in.
    pub live_packs: usize,
    /// Snapshot records removed (their ids).
    pub removed_snapshots: Vec<ObjectId>,
    /// Packs removed (their names).
    pub removed_packs: Vec<String>,
    /// Bytes of the records and packs removed.
    pub removed_bytes: u64,
    /// Unreachable records kept because they are younger than the grace period.
    pub young_snapshots: usize,
    /// Unreachable packs kept because they are younger than the grace period.
    pub young_packs: usize,
    /// Temp files of killed uploads removed from a directory remote (older than the grace;
    /// their bytes count in `removed_bytes`).
    pub removed_uploads: usize,
    /// Requests sent.
    pub requests: u64,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Removes from the remote `spec` the snapshot records and packs no remote ref reaches and that
/// are older than `grace` (see the module doc). With `dry_run`, only reports them.
pub fn remote_gc(spec: &RemoteSpec, dry_run: bool, grace: Duration) -> Result<RemoteGcReport> {
    let started = Instant::now();
    let store = RemoteStore::open(&spec.clone().normalized()?, false)?;
    layout::check_format(&store, false)?;
    let mut report = RemoteGcReport {
        remote: store.url.clone(),
        dry_run,
        grace_s: grace.as_secs(),
        ..RemoteGcReport::default()
    };
    let mut live = Live::default();
    let tips = list_refs(&store)?;
    report.refs = tips.len();
    live.walk(&store, tips.iter().map(|(_, id)| *id))?;
    let records = store.list_dated("snapshots")?;
    let packs = store.list_dated("packs")?;
    // A push that landed while we listed: keep what its ref reaches too.
    live.walk(&store, list_refs(&store)?.into_iter().map(|(_, id)| id))?;
    report.live_snapshots = live.snapshots.len();
    report.live_packs = live.packs.len();
    let now = SystemTime::now();
    let young = |t: SystemTime| now.duration_since(t).map_or(true, |age| age < grace);
    let mut dead_records = Vec::new();
    for (name, size, modified) in records {
        let Ok(id) = name.parse::<ObjectId>() else {
            continue; // not a record this layout writes
        };
        if live.snapshots.contains(&id) {
            continue;
        }
        if young(modified) {
            report.young_snapshots += 1;
        } else {
            dead_records.push(id);
            report.removed_bytes += size;
        }
    }
    let mut dead_packs = Vec::new();
    for (name, size, modified) in packs {
        let Some(pack) = name.strip_suffix(".pack") else {
            continue;
        };
        let is_pack = pack.len() == 64 && pack.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_pack || live.packs.contains(pack) {
            continue;
        }
        if young(modified) {
            report.young_packs += 1;
        } else {
            dead_packs.push(pack.to_string());
            report.removed_bytes += size;
        }
    }
    dead_records.sort();
    dead_packs.sort();
    if !dry_run {
        // Records first: a record that stays never names a deleted pack.
        for id in &dead_records {
            store.delete(&record_object(id))?;
        }
        for pack in &dead_packs {
            store.delete(&pack_object(pack))?;
        }
    }
    let (uploads, upload_bytes) = store.remove_stale_uploads(grace, dry_run)?;
    report.removed_uploads = uploads;
    report.removed_bytes += upload_bytes;
    report.removed_snapshots = dead_records;
    report.removed_packs = dead_packs;
    report.requests = store
        .traffic
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The snapshots reached so far and the packs their records use.
#[derive(Default)]
struct Live {
    snapshots: HashSet<ObjectId>,
    packs: HashSet<String>,
}

impl Live {
    /// Adds everything `tips` reach, reading each new snapshot's record once. A snapshot a ref
    /// reaches without a record stops the gc: the remote is damaged, and deleting by a partial
    /// walk could remove what the missing record would have kept.
    fn walk(&mut self, store: &RemoteStore, tips: impl Iterator<Item = ObjectId>) -> Result<()> {
        let mut todo: Vec<ObjectId> = tips.collect();
        while let Some(id) = todo.pop() {
            if !self.snapshots.insert(id) {
                continue;
            }
            let record = read_record(store, &id)?.ok_or_else(|| Error::RemoteCorrupt {
                url: store.url.clone(),
                object: record_object(&id),
                problem: "a remote ref reaches this snapshot but the remote holds no record of \
                          it; nothing was removed (push the branch again to restore it)"
                    .into(),
            })?;
            self.packs.extend(record.packs.iter().cloned());
            todo.extend(record.needs.iter().copied());
        }
        Ok(())
    }
}
