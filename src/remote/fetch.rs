//! Fetch, pull and clone: download the packs of every snapshot a remote ref needs that the
//! local repository lacks, verify each one whole (trailer hash = name, every object against its
//! id) before it is renamed into place and recorded, and only then move local refs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::layout::{self, pack_object, read_record, SnapshotRecord};
use super::refs::{list_refs_and_damaged, read_ref, DAMAGED_REF};
use super::store::RemoteStore;
use super::{
    ancestors, move_local_ref, needs_of, remove_tracking_refs, reparent, tracking_key, RemoteSpec,
    FETCH_TASK,
};
use crate::error::{Error, Result};
use crate::repo::{branch_key, Repo};
use crate::store::object_id::ObjectId;
use crate::store::pack::PackReader;

/// A progress callback shared with the caller.
pub type ProgressCallback = std::sync::Arc<dyn Fn(crate::Progress) + Send + Sync>;

/// A remote ref as fetched.
#[derive(Clone, Debug, Serialize)]
pub struct FetchedRef {
    /// `heads/NAME` or `tags/NAME` on the remote.
    #[serde(rename = "ref")]
    pub key: String,
    /// Its snapshot.
    pub snapshot: ObjectId,
}

/// What a fetch did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FetchReport {
    /// The remote's URL.
    pub remote: String,
    /// The refs fetched.
    pub refs: Vec<FetchedRef>,
    /// Tracking refs removed because the remote no longer has their ref (a fetch of all refs
    /// from a configured remote), as `remotes/NAME/heads/BRANCH`.
    pub pruned: Vec<String>,
    /// Remote refs passed over because they are damaged (`heads/NAME: what is wrong: how to
    /// mend it`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged_refs: Vec<String>,
    /// Snapshots new to the local repository.
    pub snapshots: usize,
    /// Packs downloaded.
    pub packs: usize,
    /// Pack bytes downloaded.
    pub bytes: u64,
    /// Requests sent.
    pub requests: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Pack bytes downloaded per second, in MB (10^6 bytes).
    pub mb_per_s: f64,
}

/// What a pull did.
#[derive(Clone, Debug, Serialize)]
pub struct PullReport {
    /// The fetch.
    pub fetch: FetchReport,
    /// The local branch.
    pub branch: String,
    /// Its snapshot before.
    pub old: Option<ObjectId>,
    /// Its snapshot now.
    pub new: ObjectId,
    /// `created`, `fast-forward`, `up-to-date`, `ahead` (the local branch already holds the
    /// remote's) or `rebased` (local snapshots re-parented onto the remote's).
    pub status: &'static str,
    /// Local snapshots re-parented.
    pub rebased: usize,
}

/// Makes a fetched remote tag (`key`, `tags/NAME`) a local tag, as git fetches tags: only where
/// no local tag or branch has that name (a local tag of the name stays where it is; the
/// remote's stays readable as `remotes/R/tags/NAME`).
fn adopt_tag(repo: &Repo, key: &str, id: ObjectId) -> Result<()> {
    let Some(tag) = key.strip_prefix("tags/") else {
        return Ok(());
    };
    let index = repo.index()?;
    if index.get_ref(key)?.is_some() || index.get_ref(&branch_key(tag))?.is_some() {
        return Ok(());
    }
    drop(index);
    move_local_ref(repo, key, None, id)
}

/// What a clone did.
#[derive(Clone, Debug, Serialize)]
pub struct CloneReport {
    /// The new repository.
    pub path: std::path::PathBuf,
    /// The fetch.
    pub fetch: FetchReport,
    /// Local branches created.
    pub branches: Vec<String>,
    /// Tags created.
    pub tags: Vec<String>,
    /// HEAD's branch.
    pub head: Option<String>,
}

/// Totals of one [`fetch_closure`].
#[derive(Default)]
pub(crate) struct Fetched {
    pub snapshots: usize,
    pub packs: usize,
    pub bytes: u64,
}

/// Downloads what the snapshots `tips` need and the local repository lacks. The walk goes
/// through every ancestor (local manifests where the snapshot is here, remote records where it
/// is not), so a fetch interrupted anywhere is completed by the next one. Packs are streamed
/// into temp files a few at a time, each verified whole before it is renamed into place; then
/// all are recorded in the index at once. A Ctrl-C leaves at most temp files (removed by the
/// signal handler, or by `gc`) or packs no ref reaches yet.
pub(crate) fn fetch_closure(
    repo: &Repo,
    store: &RemoteStore,
    tips: &[ObjectId],
) -> Result<Fetched> {
    let index = repo.index()?;
    let mut reader = repo.reader();
    let mut records: Vec<SnapshotRecord> = Vec::new();
    let mut seen = HashSet::new();
    let mut todo: Vec<ObjectId> = tips.to_vec();
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        if index.locate(&id)?.is_some() {
            todo.extend(needs_of(&*reader.load_manifest(&index, &id)?));
            continue;
        }
        let record = read_record(store, &id)?.ok_or_else(|| Error::RemoteCorrupt {
            url: store.url.clone(),
            object: layout::record_object(&id),
            problem: "the remote refers to this snapshot but holds no record of it".into(),
        })?;
        todo.extend(record.needs.iter().copied());
        records.push(record);
    }
    drop(index);
    let mut packs: Vec<String> = records.iter().flat_map(|r| r.packs.clone()).collect();
    packs.sort();
    packs.dedup();
    let dir = repo.packs_dir();
    let downloads: Vec<(String, PathBuf)> = packs
        .iter()
        .map(|p| (pack_object(p), dir.join(format!("{p}.pack"))))
        .filter(|(_, path)| !path.exists())
        .collect();
    let total: u64 = if downloads.is_empty() {
        0
    } else {
        let sizes: std::collections::HashMap<String, u64> =
            store.list("packs")?.into_iter().collect();
        downloads
            .iter()
            .map(|(o, _)| sizes.get(&o["packs/".len()..]).copied().unwrap_or(0))
            .sum()
    };
    if total > 0 {
        repo.report(FETCH_TASK, 0, total);
    }
    let bytes = store.download_files(
        &downloads,
        &|object, tmp| verify_pack(store, object, tmp),
        &|done| repo.report(FETCH_TASK, done, total.max(done)),
    )?;
    // Recorded whether just downloaded or left by an interrupted fetch (verified then).
    let mut entries = Vec::with_capacity(packs.len());
    for pack in &packs {
        entries.push(PackReader::open(&dir, pack)?.entries()?);
    }
    let index = repo.index()?;
    for (pack, e) in packs.iter().zip(&entries) {
        index.add_pack(pack, e)?;
    }
    index.flush()?;
    // Every object the records place must now be found locally.
    for r in &records {
        for (id, ..) in &r.objects {
            if index.locate(id)?.is_none() {
                return Err(Error::RemoteCorrupt {
                    url: store.url.clone(),
                    object: layout::record_object(&r.snapshot),
                    problem: format!("places object {id} in a pack that does not hold it"),
                });
            }
        }
    }
    Ok(Fetched {
        snapshots: records.len(),
        packs: downloads.len(),
        bytes,
    })
}

/// Checks a downloaded pack (`object` on the remote, `tmp` here) before it is renamed into
/// place: its trailer hashes to its name, every object to its id.
pub(super) fn verify_pack(store: &RemoteStore, object: &str, tmp: &Path) -> Result<()> {
    let name = object
        .strip_prefix("packs/")
        .and_then(|n| n.strip_suffix(".pack"))
        .unwrap_or(object);
    let damaged = |problem: String| Error::RemoteCorrupt {
        url: store.url.clone(),
        object: object.to_string(),
        problem,
    };
    let reader = PackReader::open_path(tmp, name)?;
    let named = reader.trailer_hash().map_err(|e| damaged(e.to_string()))?;
    if named.hex() != name {
        return Err(damaged(format!(
            "its trailer hashes to {named}, not to its name"
        )));
    }
    let entries = reader.entries().map_err(|e| damaged(e.to_string()))?;
    for e in &entries {
        reader.read(e).map_err(|err| match err {
            Error::CorruptObject { id, problem, .. } => damaged(format!("object {id}: {problem}")),
            other => damaged(other.to_string()),
        })?;
    }
    Ok(())
}

impl Repo {
    /// Fetches branches and tags (`refs`; empty: all) from `remote` (a configured name or a
    /// URL): downloads what they need and, for a configured remote, moves the tracking refs
    /// `remotes/NAME/heads/BRANCH`. Local branches do not move ([`Repo::pull`] moves them).
    pub fn fetch(&self, remote: &str, refs: &[String]) -> Result<FetchReport> {
        let (name, spec) = self.remote_spec(remote)?;
        self.fetch_spec(name.as_deref(), &spec, refs)
    }

    /// [`Repo::fetch`] from the remote `spec` given by URL (with its endpoint and region); no
    /// tracking refs are kept, so what no local ref reaches goes at the next gc.
    pub fn fetch_at(&self, spec: &RemoteSpec, refs: &[String]) -> Result<FetchReport> {
        self.fetch_spec(None, &spec.clone().normalized()?, refs)
    }

    fn fetch_spec(
        &self,
        name: Option<&str>,
        spec: &RemoteSpec,
        refs: &[String],
    ) -> Result<FetchReport> {
        let started = Instant::now();
        let store = RemoteStore::open(spec, false)?.stopped_by(self.interrupt());
        layout::check_format(&store, false)?;
        self.fetch_from(&store, name, refs, started)
    }

    fn fetch_from(
        &self,
        store: &RemoteStore,
        name: Option<&str>,
        refs: &[String],
        started: Instant,
    ) -> Result<FetchReport> {
        // A damaged ref is passed over (the others are fetched) and named in the report.
        let (all, damaged_refs) = list_refs_and_damaged(store)?;
        for r in refs {
            let asked =
                |k: &String| *k == *r || *k == branch_key(r) || *k == crate::repo::tag_key(r);
            if let Some((key, _)) = damaged_refs.iter().find(|(k, _)| asked(k)) {
                return Err(read_ref(store, key)
                    .err()
                    .unwrap_or(Error::UnknownRemoteRef {
                        url: store.url.clone(),
                        spec: r.clone(),
                    }));
            }
        }
        let wanted: Vec<(String, ObjectId)> = if refs.is_empty() {
            all
        } else {
            refs.iter()
                .map(|r| {
                    all.iter()
                        .find(|(k, _)| {
                            k == r || *k == branch_key(r) || *k == crate::repo::tag_key(r)
                        })
                        .cloned()
                        .ok_or_else(|| Error::UnknownRemoteRef {
                            url: store.url.clone(),
                            spec: r.clone(),
                        })
                })
                .collect::<Result<_>>()?
        };
        let tips: Vec<ObjectId> = wanted.iter().map(|(_, id)| *id).collect();
        let got = fetch_closure(self, store, &tips)?;
        let mut pruned = Vec::new();
        if let Some(name) = name {
            for (key, id) in &wanted {
                let tracking = tracking_key(name, key);
                let old = self.index()?.get_ref(&tracking)?;
                if old != Some(*id) {
                    move_local_ref(self, &tracking, old, *id)?;
                }
                adopt_tag(self, key, *id)?;
            }
            // A ref deleted on the remote: its tracking ref would keep what it reached from
            // `gc` for ever (no command removes tracking refs by hand).
            if refs.is_empty() {
                // A damaged ref is still there: its tracking ref keeps what it reached.
                pruned = remove_tracking_refs(self, name, &|theirs| {
                    wanted.iter().any(|(k, _)| k == theirs)
                        || damaged_refs.iter().any(|(k, _)| k == theirs)
                })?;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        Ok(FetchReport {
            remote: store.url.clone(),
            refs: wanted
                .into_iter()
                .map(|(key, snapshot)| FetchedRef { key, snapshot })
                .collect(),
            pruned,
            damaged_refs: damaged_refs
                .into_iter()
                .map(|(key, problem)| format!("{key}: {problem}: {DAMAGED_REF}"))
                .collect(),
            snapshots: got.snapshots,
            packs: got.packs,
            bytes: got.bytes,
            requests: store
                .traffic
                .requests
                .load(std::sync::atomic::Ordering::Relaxed),
            seconds,
            mb_per_s: got.bytes as f64 / 1e6 / seconds.max(1e-9),
        })
    }

    /// Fetches `branch` (default: HEAD's) from `remote` and moves the local branch to it: a
    /// fast-forward, or, when both have new snapshots, the local ones re-parented on top of the
    /// remote's (as a commit that lost a race is).
    pub fn pull(&self, remote: &str, branch: Option<&str>) -> Result<PullReport> {
        let (name, spec) = self.remote_spec(remote)?;
        self.pull_spec(name.as_deref(), &spec, branch)
    }

    /// [`Repo::pull`] from the remote `spec` given by URL (with its endpoint and region).
    pub fn pull_at(&self, spec: &RemoteSpec, branch: Option<&str>) -> Result<PullReport> {
        self.pull_spec(None, &spec.clone().normalized()?, branch)
    }

    fn pull_spec(
        &self,
        name: Option<&str>,
        spec: &RemoteSpec,
        branch: Option<&str>,
    ) -> Result<PullReport> {
        let branch = match branch {
            Some(b) => b.to_string(),
            None => self.index()?.head_branch()?,
        };
        let fetch = self.fetch_spec(name, spec, std::slice::from_ref(&branch))?;
        let theirs = fetch.refs[0].snapshot;
        let key = branch_key(&branch);
        let ours = self.index()?.get_ref(&key)?;
        let (new, status, rebased) = match ours {
            None => {
                move_local_ref(self, &key, None, theirs)?;
                (theirs, "created", 0)
            }
            Some(ours) if ours == theirs => (ours, "up-to-date", 0),
            Some(ours) => {
                let index = self.index()?;
                let mut reader = self.reader();
                if ancestors(&index, &mut reader, theirs)?.contains(&ours) {
                    drop(index);
                    move_local_ref(self, &key, Some(ours), theirs)?;
                    (theirs, "fast-forward", 0)
                } else if ancestors(&index, &mut reader, ours)?.contains(&theirs) {
                    (ours, "ahead", 0)
                } else {
                    drop(index);
                    let (tip, moved) =
                        reparent(self, ours, theirs)?.ok_or_else(|| Error::UnrelatedHistories {
                            url: fetch.remote.clone(),
                            branch: branch.clone(),
                            local: ours.short(),
                            remote: theirs.short(),
                        })?;
                    move_local_ref(self, &key, Some(ours), tip)?;
                    (tip, "rebased", moved)
                }
            }
        };
        Ok(PullReport {
            fetch,
            branch,
            old: ours,
            new,
            status,
            rebased,
        })
    }

    /// Clones the remote `spec` into a new repository at `dir`: every branch and tag, the
    /// remote remembered as `origin`, HEAD on `main` (or the first branch). A clone that fails
    /// removes the repository it created. `progress` is told how the download advances.
    pub fn clone_remote(
        spec: RemoteSpec,
        dir: impl AsRef<Path>,
        progress: Option<ProgressCallback>,
    ) -> Result<(Repo, CloneReport)> {
        let target = dir.as_ref();
        let existed = target.exists();
        // The clone makes `target` the repository: files already there would be mixed into it
        // (an existing `refs.log` appended to), as git refuses to.
        if crate::fsutil::holds_entries(target) {
            return Err(Error::InvalidArgument {
                what: "clone destination",
                problem: format!(
                    "{} is not empty, and a clone makes the directory it is given the \
                     repository; give a new or empty directory (`{}` in a project directory, \
                     which commands run there find)",
                    target.display(),
                    target.join(crate::repo::DEFAULT_REPO_DIR).display()
                ),
            });
        }
        // A new repository is built beside its place under a temp name and renamed into place
        // once complete: a clone killed half way leaves no half-made repository where a re-run
        // would find it (Ctrl-C removes the temp; a re-run removes a killed clone's).
        let building = (!existed).then(|| {
            crate::fsutil::remove_stale_temps_of(target);
            let tmp = crate::fsutil::temp_sibling(target);
            crate::fsutil::register_temp(&tmp);
            tmp
        });
        let dir = building.as_deref().unwrap_or(target);
        let result = (|| {
            let started = Instant::now();
            let spec = spec.normalized()?;
            let store = RemoteStore::open(&spec, false)?;
            layout::check_format(&store, false)?;
            let repo = Repo::init(dir)?;
            let with_progress = |repo: Repo| match &progress {
                Some(p) => {
                    let p = p.clone();
                    repo.with_progress(move |x| p(x))
                }
                None => repo,
            };
            let mut repo = with_progress(repo);
            repo.add_remote("origin", spec)?;
            let fetch = repo.fetch_from(&store, Some("origin"), &[], started)?;
            let mut branches = Vec::new();
            let mut tags = Vec::new();
            for r in &fetch.refs {
                // The fetch made the tags already.
                if !r.key.starts_with("tags/") {
                    move_local_ref(&repo, &r.key, None, r.snapshot)?;
                }
                if let Some(b) = r.key.strip_prefix("heads/") {
                    branches.push(b.to_string());
                } else if let Some(t) = r.key.strip_prefix("tags/") {
                    tags.push(t.to_string());
                }
            }
            let head = if branches.iter().any(|b| b == "main") {
                Some("main".to_string())
            } else {
                branches.first().cloned()
            };
            if let Some(h) = &head {
                repo.switch_branch(h)?;
            }
            if let Some(tmp) = &building {
                // Closed, renamed into place, opened there.
                drop(repo);
                std::fs::rename(tmp, target).map_err(|e| Error::io(target, e))?;
                crate::fsutil::forget_temp(tmp);
                repo = with_progress(Repo::open(target)?);
            }
            let report = CloneReport {
                path: repo.path().to_path_buf(),
                fetch,
                branches,
                tags,
                head,
            };
            Ok((repo, report))
        })();
        if result.is_err() && !existed {
            let _ = std::fs::remove_dir_all(dir);
            if let Some(tmp) = &building {
                crate::fsutil::forget_temp(tmp);
            }
        }
        result
    }
}
