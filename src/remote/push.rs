//! Push: upload the packs and records of every snapshot the remote lacks, then move the remote
//! ref by compare-and-swap. Losing the swap to another pusher means: fetch what they pushed,
//! re-parent our new snapshots on top (as a local commit does), and try again.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use serde::Serialize;

use super::layout::{self, pack_object, read_record, record_object, SnapshotRecord, REMOTE_FORMAT};
use super::refs::{self, cas_ref, delete_ref, read_ref};
use super::store::RemoteStore;
use super::{
    ancestors, fetch, move_local_ref, needs_of, reparent, tracking_key, RemoteSpec, PUSH_TASK,
};
use crate::error::{Error, Result};
use crate::repo::ObjectReader;
use crate::repo::{branch_key, tag_key, Repo};
use crate::store::index::Index;
use crate::store::object_id::ObjectId;

/// Rounds of fetch, re-parent and swap before a push gives up (each lost round means another
/// pusher landed).
const MAX_ATTEMPTS: usize = 64;
/// Upload temp files older than this in a directory remote are a killed push's (a live push
/// writes to its own continually); a push removes them, as `remote gc` does past its grace.
const STALE_UPLOAD_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// How a push treats a remote branch that is not an ancestor of what is pushed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PushOptions {
    /// Move the remote ref even when that drops snapshots from it.
    pub force: bool,
    /// When the remote branch has snapshots the local one lacks (and the local one has its
    /// own), refuse instead of re-parenting the local snapshots on top of the remote's.
    pub no_rebase: bool,
}

/// What happened to one ref.
#[derive(Clone, Debug, Serialize)]
pub struct PushedRef {
    /// `heads/NAME` or `tags/NAME`.
    #[serde(rename = "ref")]
    pub key: String,
    /// The remote's snapshot before the push.
    pub old: Option<ObjectId>,
    /// The remote's snapshot now.
    pub new: ObjectId,
    /// `created`, `fast-forward`, `up-to-date`, `rebased` (the local snapshots were re-parented
    /// onto the remote's first) or `forced`.
    pub status: &'static str,
    /// Local snapshots re-parented.
    pub rebased: usize,
    /// Rounds lost to other pushers before this one landed.
    pub retries: usize,
}

/// What a push did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PushReport {
    /// The remote's URL.
    pub remote: String,
    /// Each ref pushed.
    pub refs: Vec<PushedRef>,
    /// Snapshot records written.
    pub snapshots: usize,
    /// Packs uploaded.
    pub packs_uploaded: usize,
    /// Packs the remote already had (uploaded before, or by an interrupted push).
    pub packs_present: usize,
    /// Pack bytes uploaded.
    pub bytes: u64,
    /// Requests sent.
    pub requests: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Pack bytes uploaded per second, in MB (10^6 bytes).
    pub mb_per_s: f64,
}

/// A remote ref deleted.
#[derive(Clone, Debug, Serialize)]
pub struct DeletedRef {
    /// The remote's URL.
    pub remote: String,
    /// `heads/NAME` or `tags/NAME`.
    #[serde(rename = "ref")]
    pub key: String,
    /// The snapshot it pointed to (`None`: it was damaged, pointing nowhere).
    pub old: Option<ObjectId>,
}

impl Repo {
    /// Deletes the branch or tag `name` (`NAME`, `heads/NAME`, `tags/NAME`; a bare name is a
    /// branch if the remote has one, else a tag) from `remote` by compare-and-swap, and the
    /// local tracking ref with it. The delete is judged against what this repository last saw
    /// of the ref (its tracking ref `remotes/REMOTE/...`, when `remote` is a configured name
    /// and the ref was fetched or pushed), else against the ref as read now; when the remote
    /// ref is elsewhere, or moves before the delete lands, nothing is deleted and the error is
    /// [`Error::RemoteRefMoved`]. Snapshots only the ref reached stay on the remote until
    /// [`Repo::remote_gc`].
    pub fn delete_remote_ref(&self, remote: &str, name: &str) -> Result<DeletedRef> {
        let (remote_name, spec) = self.remote_spec(remote)?;
        self.delete_ref_at(remote_name, &spec, name)
    }

    /// [`Repo::delete_remote_ref`] on the remote `spec` given by URL (with its endpoint and
    /// region): no tracking ref, so the delete is judged against the ref as read.
    pub fn delete_remote_ref_at(&self, spec: &RemoteSpec, name: &str) -> Result<DeletedRef> {
        self.delete_ref_at(None, &spec.clone().normalized()?, name)
    }

    fn delete_ref_at(
        &self,
        remote_name: Option<String>,
        spec: &RemoteSpec,
        name: &str,
    ) -> Result<DeletedRef> {
        let store = RemoteStore::open(spec, false)?;
        layout::check_format(&store, false)?;
        let name = name.strip_prefix("refs/").unwrap_or(name);
        let candidates = if name.starts_with("heads/") || name.starts_with("tags/") {
            vec![name.to_string()]
        } else {
            vec![branch_key(name), tag_key(name)]
        };
        // The ref found, with what it points to (`None`: it was damaged, and is deleted).
        let mut found = None;
        for key in candidates {
            let read = match read_ref(&store, &key) {
                // Nothing to compare with: a damaged ref is deleted as it is.
                Err(Error::RemoteCorrupt { .. }) => {
                    if refs::rewrite_damaged(&store, &key, None)? {
                        found = Some((key, None));
                        break;
                    }
                    read_ref(&store, &key) // another writer mended it first
                }
                read => read,
            }?;
            if let Some(r) = read {
                found = Some((key, Some(r)));
                break;
            }
        }
        let Some((key, current)) = found else {
            return Err(Error::UnknownRemoteRef {
                url: store.url.clone(),
                spec: name.to_string(),
            });
        };
        let tracking = remote_name.as_deref().map(|n| tracking_key(n, &key));
        let seen = match &tracking {
            Some(t) => self.index()?.get_ref(t)?,
            None => None,
        };
        let moved = |expected: ObjectId, now: Option<ObjectId>| Error::RemoteRefMoved {
            url: store.url.clone(),
            key: key.clone(),
            expected: expected.short(),
            found: now.map_or("nothing".into(), |id| id.short()),
        };
        if let Some(current) = &current {
            if let Some(seen) = seen {
                if seen != current.id {
                    return Err(moved(seen, Some(current.id)));
                }
            }
            refs::check_conditional_writes(&store)?;
            if let Err(now) = delete_ref(&store, &key, current)? {
                return Err(moved(current.id, now));
            }
        }
        if let (Some(t), Some(seen)) = (&tracking, seen) {
            let _ = self.index()?.cas_ref_durably(t, Some(seen), None)?;
        }
        Ok(DeletedRef {
            remote: store.url.clone(),
            key,
            old: current.map(|c| c.id),
        })
    }

    /// Pushes branches or tags (`refs`; empty: HEAD's branch) to `remote` (a configured name or
    /// a URL). Uploads what the remote lacks, then moves each remote ref by compare-and-swap. A
    /// remote branch that moved on is fetched and the local snapshots re-parented onto it (the
    /// local branch moves too), unless `opts.no_rebase`; a push that would drop snapshots from
    /// the remote is refused with [`Error::NonFastForward`] unless `opts.force`. Fails with
    /// [`Error::RemoteNoConditionalWrites`] on a store that cannot compare-and-swap.
    pub fn push(&self, remote: &str, refs: &[String], opts: PushOptions) -> Result<PushReport> {
        let (name, spec) = self.remote_spec(remote)?;
        self.push_to(name, &spec, refs, opts)
    }

    /// [`Repo::push`] to the remote `spec` given by URL (with its endpoint and region, e.g. an
    /// S3-compatible store not configured as a remote); no tracking refs are kept.
    pub fn push_at(
        &self,
        spec: &RemoteSpec,
        refs: &[String],
        opts: PushOptions,
    ) -> Result<PushReport> {
        self.push_to(None, &spec.clone().normalized()?, refs, opts)
    }

    fn push_to(
        &self,
        name: Option<String>,
        spec: &RemoteSpec,
        refs: &[String],
        opts: PushOptions,
    ) -> Result<PushReport> {
        let started = Instant::now();
        let store = self
            .open_for_push(name.as_deref(), spec)?
            .stopped_by(self.interrupt());
        let keys = self.local_keys(refs)?;
        refs::check_paths_fit(&store, &keys)?;
        refs::check_conditional_writes(&store)?;
        layout::check_format(&store, true)?;
        store.remove_stale_uploads(STALE_UPLOAD_AGE, false)?;
        let mut report = PushReport {
            remote: store.url.clone(),
            ..PushReport::default()
        };
        for key in keys {
            let pushed = self.push_one(&store, &key, opts, &mut report)?;
            if let Some(name) = &name {
                let tracking = tracking_key(name, &key);
                let old = self.index()?.get_ref(&tracking)?;
                if old != Some(pushed.new) {
                    let _ = move_local_ref(self, &tracking, old, pushed.new);
                }
            }
            report.refs.push(pushed);
        }
        report.requests = store
            .traffic
            .requests
            .load(std::sync::atomic::Ordering::Relaxed);
        report.seconds = started.elapsed().as_secs_f64();
        report.mb_per_s = report.bytes as f64 / 1e6 / report.seconds.max(1e-9);
        Ok(report)
    }

    /// Opens the remote to push to. A first push creates it, but a configured remote this
    /// repository has seen refs on (tracking refs `remotes/NAME/...`) that is now missing or
    /// empty is refused: an unmounted share or a moved directory would otherwise silently
    /// become a new remote on the local disk.
    fn open_for_push(&self, name: Option<&str>, spec: &RemoteSpec) -> Result<RemoteStore> {
        let seen = match name {
            Some(n) => !self
                .index()?
                .list_refs(&format!("remotes/{n}/"))?
                .is_empty(),
            None => false,
        };
        let vanished = || Error::RemoteLayout {
            url: spec.url.clone(),
            problem: format!(
                "looks empty or missing (no {}), although this repository saw refs there \
                 (remotes/{}/...): is the share unmounted, or was the remote moved? Nothing was \
                 pushed. To start a new remote there anyway, push to its URL: `snapstore push \
                 {}{}{}`",
                layout::FORMAT_OBJECT,
                name.unwrap_or_default(),
                spec.url,
                spec.endpoint
                    .as_ref()
                    .map_or(String::new(), |e| format!(" --endpoint {e}")),
                spec.region
                    .as_ref()
                    .map_or(String::new(), |r| format!(" --region {r}")),
            ),
        };
        let store = match RemoteStore::open(spec, !seen) {
            Err(Error::RemoteLayout { .. }) if seen => return Err(vanished()),
            other => other?,
        };
        let formatted = store.get(layout::FORMAT_OBJECT)?.is_some();
        if seen && !formatted {
            return Err(vanished());
        }
        // A first push makes a directory of its own a remote, not one holding other files.
        if !formatted && store.directory().is_some_and(crate::fsutil::holds_entries) {
            return Err(Error::RemoteLayout {
                url: spec.url.clone(),
                problem: format!(
                    "holds files but no snapstore remote (no {}): a push makes a new or empty \
                     directory the remote; nothing was pushed",
                    layout::FORMAT_OBJECT
                ),
            });
        }
        Ok(store)
    }

    /// The local ref keys named by `refs`: a branch, else a tag; HEAD's branch when empty.
    fn local_keys(&self, refs: &[String]) -> Result<Vec<String>> {
        let index = self.index()?;
        if refs.is_empty() {
            let b = index.head_branch()?;
            return match index.get_ref(&branch_key(&b))? {
                Some(_) => Ok(vec![branch_key(&b)]),
                None => Err(Error::EmptyBranch(b)),
            };
        }
        let head = index.head_branch()?;
        refs.iter()
            .map(|r| {
                let r = r.strip_prefix("refs/").unwrap_or(r);
                // HEAD is its branch, as it is wherever a ref is read.
                let r = if r == "HEAD" { head.as_str() } else { r };
                for key in [r.to_string(), branch_key(r), tag_key(r)] {
                    if (key.starts_with("heads/") || key.starts_with("tags/"))
                        && index.get_ref(&key)?.is_some()
                    {
                        return Ok(key);
                    }
                }
                // `main~1` or an id names a snapshot, which a remote ref cannot be set to.
                Err(Error::InvalidArgument {
                    what: "ref to push",
                    problem: format!(
                        "{r:?} is no branch or tag here; push sends branches and tags by name \
                         (HEAD is on {head}; to publish a snapshot, tag it first)"
                    ),
                })
            })
            .collect()
    }

    fn push_one(
        &self,
        store: &RemoteStore,
        key: &str,
        opts: PushOptions,
        report: &mut PushReport,
    ) -> Result<PushedRef> {
        let mut tip = self
            .index()?
            .get_ref(key)?
            .ok_or_else(|| Error::UnknownRef(key.to_string()))?;
        let mut rebased = 0;
        for attempt in 0..MAX_ATTEMPTS {
            let remote = match read_ref(store, key) {
                // No snapshot to compare with: forced, it is written over (what it reached is
                // unknown, as a forced push drops what the ref reached anyway).
                Err(Error::RemoteCorrupt { .. }) if opts.force => {
                    self.upload_closure(store, tip, report)?;
                    if refs::rewrite_damaged(store, key, Some(tip))? {
                        return Ok(PushedRef {
                            key: key.to_string(),
                            old: None,
                            new: tip,
                            status: "forced",
                            rebased: 0,
                            retries: attempt,
                        });
                    }
                    continue; // another writer mended it first: read it again
                }
                read => read?,
            };
            let mut status = "created";
            if let Some(r) = remote.as_ref().filter(|r| r.id != tip) {
                // A published tag keeps its meaning: it moves only by --force.
                if key.starts_with("tags/") && !opts.force {
                    return Err(Error::RemoteTagExists {
                        url: store.url.clone(),
                        tag: key["tags/".len()..].to_string(),
                        remote: r.id.short(),
                        local: tip.short(),
                    });
                }
            }
            if let Some(r) = &remote {
                if r.id == tip {
                    // Up to date, but what the ref reaches may not all be there (a remote gc
                    // racing a push, a pack lost from the store): restored from here.
                    self.upload_closure(store, tip, report)?;
                    return Ok(PushedRef {
                        key: key.to_string(),
                        old: Some(r.id),
                        new: tip,
                        status: if rebased > 0 { "rebased" } else { "up-to-date" },
                        rebased,
                        retries: attempt,
                    });
                }
                // The remote's snapshots, so ancestry can be judged (and re-parenting done).
                fetch::fetch_closure(self, store, &[r.id])?;
                let index = self.index()?;
                let mut reader = self.reader();
                let ours = ancestors(&index, &mut reader, tip)?;
                // A tag that moves at all is forced (see above).
                status = if ours.contains(&r.id) && key.starts_with("heads/") {
                    "fast-forward"
                } else if opts.force {
                    "forced"
                } else {
                    let theirs = ancestors(&index, &mut reader, r.id)?;
                    let dropped = theirs.difference(&ours).count();
                    let behind = theirs.contains(&tip);
                    if behind || opts.no_rebase || !key.starts_with("heads/") {
                        return Err(Error::NonFastForward {
                            url: store.url.clone(),
                            branch: key.to_string(),
                            remote: r.id.short(),
                            local: tip.short(),
                            dropped,
                        });
                    }
                    drop(index);
                    let unrelated = || Error::UnrelatedHistories {
                        url: store.url.clone(),
                        branch: key.trim_start_matches("heads/").to_string(),
                        local: tip.short(),
                        remote: r.id.short(),
                    };
                    let (new_tip, moved) = reparent(self, tip, r.id)?.ok_or_else(unrelated)?;
                    move_local_ref(self, key, Some(tip), new_tip)?;
                    tip = new_tip;
                    // The same local snapshots again when a retry re-parents them anew.
                    rebased = moved;
                    "rebased"
                };
            }
            self.upload_closure(store, tip, report)?;
            match cas_ref(store, key, remote.as_ref(), tip)? {
                Ok(()) => {
                    return Ok(PushedRef {
                        key: key.to_string(),
                        old: remote.map(|r| r.id),
                        new: tip,
                        status: if rebased > 0 { "rebased" } else { status },
                        rebased,
                        retries: attempt,
                    })
                }
                Err(_) => continue,
            }
        }
        Err(Error::RemoteIo {
            url: store.url.clone(),
            object: super::layout::ref_object(key),
            problem: format!("lost the ref to other pushers {MAX_ATTEMPTS} times in a row"),
        })
    }

    /// Uploads the packs and writes the records of every snapshot `tip` needs that the remote
    /// has no record of: packs first, then the records, so a record on the remote always means
    /// its objects are there; the ref moves after both.
    pub(super) fn upload_closure(
        &self,
        store: &RemoteStore,
        tip: ObjectId,
        report: &mut PushReport,
    ) -> Result<()> {
        self.upload_closure_over(store, tip, &HashSet::new(), report)
    }

    /// [`Repo::upload_closure`], writing the records of `damaged` (unreadable on the remote)
    /// again as if they were missing.
    pub(super) fn upload_closure_over(
        &self,
        store: &RemoteStore,
        tip: ObjectId,
        damaged: &HashSet<ObjectId>,
        report: &mut PushReport,
    ) -> Result<()> {
        let damaged: HashSet<String> = damaged.iter().map(ObjectId::hex).collect();
        let on_remote: HashSet<String> = store
            .list("snapshots")?
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| !damaged.contains(n))
            .collect();
        let index = self.index()?;
        let mut reader = self.reader();
        let order = missing_in_order(&index, &mut reader, tip, &on_remote)?;
        let held = held_on_remote(store, &order, &on_remote)?;
        let records: Vec<SnapshotRecord> = order
            .iter()
            .map(|missing| build_record(&index, &mut reader, missing, &held))
            .collect::<Result<_>>()?;
        drop(index);
        let present: HashMap<String, u64> = store.list("packs")?.into_iter().collect();
        let mut wanted: Vec<String> = records.iter().flat_map(|r| r.packs.clone()).collect();
        wanted.sort();
        wanted.dedup();
        let mut uploads = Vec::new();
        for pack in &wanted {
            let path = self.packs_dir().join(format!("{pack}.pack"));
            let on_remote = present.get(&format!("{pack}.pack"));
            let len = match std::fs::metadata(&path) {
                Ok(m) => m.len(),
                // Not here: a remote pack a record there places reused objects in.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && on_remote.is_some() => {
                    report.packs_present += 1;
                    continue;
                }
                Err(e) => return Err(Error::io(&path, e)),
            };
            if on_remote == Some(&len) {
                report.packs_present += 1;
            } else {
                uploads.push((pack_object(pack), path, len));
            }
        }
        let total: u64 = uploads.iter().map(|u| u.2).sum();
        let files: Vec<_> = uploads
            .iter()
            .map(|(o, p, _)| (o.clone(), p.clone()))
            .collect();
        if total > 0 {
            self.report(PUSH_TASK, 0, total);
        }
        store.upload_files(&files, &|done| self.report(PUSH_TASK, done, total))?;
        report.packs_uploaded += uploads.len();
        report.bytes += total;
        // All at once: the walk above does not trust a record to mean its ancestors' are there,
        // so the order of these writes does not matter; the ref moves only after all of them.
        let bodies = records
            .iter()
            .map(|r| {
                let body = serde_json::to_vec(r).expect("record serializes");
                (record_object(&r.snapshot), body.into())
            })
            .collect();
        store.put_many(bodies)?;
        report.snapshots += records.len();
        Ok(())
    }
}

/// A snapshot whose record the remote lacks: what it needs (parents, delta references) and
/// the objects its record places (its manifest, then each distinct chunk), kept from the one
/// reading of its manifest (a push of 100 snapshots of 10,000 tensors held every parsed
/// manifest, 1.5 GiB, to read each three times).
struct Missing {
    id: ObjectId,
    needs: Vec<ObjectId>,
    objects: Vec<ObjectId>,
}

/// Snapshots `tip` needs (itself, ancestors, delta references) whose record the remote lacks.
/// The walk goes through snapshots the remote has too (a push interrupted between records may
/// have left a record whose ancestors' are missing), reading local manifests only.
fn missing_in_order(
    index: &Index,
    reader: &mut ObjectReader,
    tip: ObjectId,
    on_remote: &HashSet<String>,
) -> Result<Vec<Missing>> {
    let mut out = Vec::new();
    let mut seen: HashSet<ObjectId> = HashSet::new();
    let mut todo = vec![tip];
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        let m = reader.read_manifest(index, &id)?;
        let needs = needs_of(&m);
        todo.extend(needs.iter().copied());
        if !on_remote.contains(&id.hex()) {
            let mut objects = vec![id];
            let mut distinct: HashSet<ObjectId> = objects.iter().copied().collect();
            for t in &m.tensors {
                objects.extend(
                    t.chunks
                        .iter()
                        .map(|c| c.id)
                        .filter(|c| distinct.insert(*c)),
                );
            }
            out.push(Missing { id, needs, objects });
        }
    }
    Ok(out)
}

/// Where the remote already holds objects the snapshots in `order` reuse: the records of the
/// snapshots they need that the remote has (their parents and references, a request each).
/// Placed there, a reused chunk is not sent again in the local pack that holds it now (a local
/// `gc` rewrites packs under new names: the next push uploaded the whole rewritten pack for a
/// commit that stored 58 bytes of its own).
fn held_on_remote(
    store: &RemoteStore,
    order: &[Missing],
    on_remote: &HashSet<String>,
) -> Result<HashMap<ObjectId, (String, u64, u64)>> {
    let mut frontier: HashSet<ObjectId> = HashSet::new();
    for missing in order {
        for need in &missing.needs {
            if on_remote.contains(&need.hex()) {
                frontier.insert(*need);
            }
        }
    }
    let mut held = HashMap::new();
    for id in frontier {
        // An unreadable record places nothing: its objects go in the local packs instead.
        let record = match read_record(store, &id) {
            Err(Error::RemoteCorrupt { .. }) => None,
            read => read?,
        };
        if let Some(record) = record {
            for &(object, p, offset, len) in &record.objects {
                held.entry(object)
                    .or_insert_with(|| (record.packs[p as usize].clone(), offset, len));
            }
        }
    }
    Ok(held)
}

/// The record of a local snapshot: where its manifest and chunks lie, in the remote's packs for
/// those `held` there, else in the local packs (which the push uploads as they are).
fn build_record(
    index: &Index,
    reader: &mut ObjectReader,
    missing: &Missing,
    held: &HashMap<ObjectId, (String, u64, u64)>,
) -> Result<SnapshotRecord> {
    let mut packs: Vec<String> = Vec::new();
    let mut objects = Vec::with_capacity(missing.objects.len());
    for &o in &missing.objects {
        let (pack, offset, len) = match held.get(&o) {
            Some(at) => at.clone(),
            None => {
                let loc = reader.locate(index, &o)?;
                (loc.pack, loc.entry.offset, loc.entry.len)
            }
        };
        let p = match packs.iter().position(|p| *p == pack) {
            Some(p) => p,
            None => {
                packs.push(pack);
                packs.len() - 1
            }
        };
        objects.push((o, p as u32, offset, len));
    }
    Ok(SnapshotRecord {
        snapstore_record: REMOTE_FORMAT,
        snapshot: missing.id,
        needs: missing.needs.clone(),
        packs,
        objects,
    })
}
