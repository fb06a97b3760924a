//! Remotes: push, fetch, pull and clone through object storage (S3-compatible, or a directory
//! on a shared mount), and checking out some tensors straight from a remote.
//!
//! Packs are uploaded as they are (immutable, named by hash, so an upload is idempotent and an
//! interrupted push resumes by skipping what is there); each snapshot gets a record placing its
//! objects ([`layout`]); refs move by compare-and-swap ([`refs`]). Every byte downloaded is
//! checked against its hash before it is used, and nothing is published locally before it is
//! durable. `object_store` is async: each remote handle drives it with its own current-thread
//! runtime, so the rest of the library stays synchronous.

mod dir_write;
mod fetch;
mod fsck;
mod gc;
mod layout;
mod partial;
mod push;
mod refs;
mod store;
mod url;

use std::collections::{BTreeMap, HashSet};

use crate::error::{Error, Result};
use crate::repo::{ObjectReader, Repo, REMOTES_KEY};
use crate::store::index::Index;
use crate::store::object_id::ObjectId;

pub use fetch::{CloneReport, FetchReport, FetchedRef, ProgressCallback, PullReport};
pub use fsck::{remote_fsck, RemoteFsckReport, RemoteProblem};
pub use gc::{remote_gc, RemoteGcReport};
pub use layout::REMOTE_FORMAT;
pub use partial::{remote_checkout_to_file, RemoteCheckoutReport};
pub use push::{DeletedRef, PushOptions, PushReport, PushedRef};
pub use store::FAIL_UPLOADS_AFTER_ENV;
pub use url::RemoteSpec;

/// Progress task names ([`crate::Progress::task`]) of the remote operations.
pub(crate) const PUSH_TASK: &str = "push";
pub(crate) const FETCH_TASK: &str = "fetch";
pub(crate) const REMOTE_CHECKOUT_TASK: &str = "download";

impl Repo {
    /// The configured remotes, by name.
    pub fn remotes(&self) -> Result<BTreeMap<String, RemoteSpec>> {
        match self.config_get(REMOTES_KEY)? {
            Some(json) => serde_json::from_str(&json).map_err(|e| {
                Error::IndexInconsistent(format!("the remotes setting is not JSON: {e}"))
            }),
            None => Ok(BTreeMap::new()),
        }
    }

    /// Adds a remote named `name`. Sends no request: a bad endpoint shows at the first push.
    /// The name is one word that no ref expression reads otherwise: `NAME/BRANCH` must mean
    /// its branch, so no local branch or tag may start with `NAME/`.
    pub fn add_remote(&self, name: &str, spec: RemoteSpec) -> Result<RemoteSpec> {
        crate::repo::check_ref_name(name)?;
        let refused = |problem: String| Error::InvalidArgument {
            what: "remote name",
            problem: format!("{name:?}: {problem}"),
        };
        if name.contains('/') {
            return Err(refused("a remote's name is one word (no '/')".into()));
        }
        if ["heads", "tags", "remotes"].contains(&name) {
            return Err(refused("it names a ref namespace".into()));
        }
        let (branches, tags) = self.list_refs()?;
        let prefix = format!("{name}/");
        if let Some((r, _)) = branches
            .iter()
            .chain(&tags)
            .find(|(r, _)| r.starts_with(&prefix))
        {
            return Err(refused(format!(
                "the local branch or tag {r} would be read as this remote's branch"
            )));
        }
        let spec = spec.normalized()?;
        let mut all = self.remotes()?;
        if all.contains_key(name) {
            return Err(Error::RemoteExists(name.to_string()));
        }
        all.insert(name.to_string(), spec.clone());
        self.config_set(
            REMOTES_KEY,
            &serde_json::to_string(&all).expect("serializes"),
        )?;
        Ok(spec)
    }

    /// Forgets the remote `name` and its tracking refs `remotes/NAME/...` (the remote itself
    /// is left alone).
    pub fn remove_remote(&self, name: &str) -> Result<RemoteSpec> {
        let mut all = self.remotes()?;
        let spec = all.remove(name).ok_or_else(|| unknown_remote(name, &all))?;
        // Its tracking refs first: kept, they held what they reach from `gc` with no command
        // to remove them, and a remote added again under the name (another URL) was refused as
        // "vanished" because they said this repository had seen refs there.
        remove_tracking_refs(self, name, &|_| false)?;
        self.config_set(
            REMOTES_KEY,
            &serde_json::to_string(&all).expect("serializes"),
        )?;
        Ok(spec)
    }

    /// The remote a name or URL stands for: a configured name, else the URL itself (with no
    /// tracking refs), `(name, spec)`. A bare word is a name ([`RemoteSpec::is_name`]), so a
    /// mistyped name is refused as one, not taken for a directory.
    pub fn remote_spec(&self, remote: &str) -> Result<(Option<String>, RemoteSpec)> {
        let all = self.remotes()?;
        if let Some(spec) = all.get(remote) {
            return Ok((Some(remote.to_string()), spec.clone()));
        }
        if !RemoteSpec::is_name(remote) {
            return Ok((None, RemoteSpec::new(remote)?));
        }
        Err(unknown_remote(remote, &all))
    }
}

fn unknown_remote(name: &str, all: &BTreeMap<String, RemoteSpec>) -> Error {
    Error::UnknownRemote {
        name: name.to_string(),
        known: if all.is_empty() {
            "none".into()
        } else {
            all.keys().cloned().collect::<Vec<_>>().join(", ")
        },
    }
}

/// Removes remote `name`'s tracking refs whose remote ref (`heads/BRANCH`, `tags/TAG`) `keep`
/// refuses; returns their keys. One a concurrent fetch moved or removed meanwhile is left.
pub(crate) fn remove_tracking_refs(
    repo: &Repo,
    name: &str,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Vec<String>> {
    let prefix = tracking_key(name, "");
    let index = repo.index()?;
    let mut removed = Vec::new();
    for (theirs, id) in index.list_refs(&prefix)? {
        if !keep(&theirs) {
            let key = format!("{prefix}{theirs}");
            if index.cas_ref_durably(&key, Some(id), None)?.is_ok() {
                removed.push(key);
            }
        }
    }
    Ok(removed)
}

/// The local ref key tracking `key` (`heads/NAME`) of remote `name`.
pub(crate) fn tracking_key(remote: &str, key: &str) -> String {
    format!("remotes/{remote}/{key}")
}

/// The snapshots a snapshot needs besides itself: its parents and the snapshots its tensors are
/// coded against (a checkout follows those references).
pub(crate) fn needs_of(manifest: &crate::store::manifest::Manifest) -> Vec<ObjectId> {
    let mut out: Vec<ObjectId> = manifest.parents.clone();
    for t in &manifest.tensors {
        if let Some(r) = &t.reference {
            if !out.contains(&r.snapshot) {
                out.push(r.snapshot);
            }
        }
    }
    out
}

/// Every ancestor of `tip` (itself included) along all parents, from local manifests.
pub(crate) fn ancestors(
    index: &Index,
    reader: &mut ObjectReader,
    tip: ObjectId,
) -> Result<HashSet<ObjectId>> {
    let mut seen = HashSet::new();
    let mut todo = vec![tip];
    while let Some(id) = todo.pop() {
        if seen.insert(id) {
            todo.extend(reader.load_manifest(index, &id)?.parents.iter().copied());
        }
    }
    Ok(seen)
}

/// Re-parents the snapshots of `tip`'s first-parent line that `onto` lacks on top of `onto`,
/// oldest first, as a commit that lost its branch to another does: the manifests are rewritten
/// with the new parent (their coded tensors and delta references stay valid), written in one
/// new pack, and recorded. Returns the new tip and how many snapshots moved, or `None` when
/// the line reaches its first snapshot without meeting `onto`'s history: two unrelated
/// histories, which are never joined (nothing is written then). The caller moves the branch.
pub(crate) fn reparent(
    repo: &Repo,
    tip: ObjectId,
    onto: ObjectId,
) -> Result<Option<(ObjectId, usize)>> {
    use crate::store::pack::{ObjectKind, PackWriter};
    let index = repo.index()?;
    let mut reader = repo.reader();
    let base = ancestors(&index, &mut reader, onto)?;
    let mut line = Vec::new();
    let mut at = tip;
    while !base.contains(&at) {
        let m = reader.load_manifest(&index, &at)?;
        line.push(m);
        match line.last().and_then(|m| m.parents.first()) {
            Some(p) => at = *p,
            None => return Ok(None),
        }
    }
    drop(index);
    let mut pack = PackWriter::create(&repo.packs_dir())?;
    let mut parent = onto;
    for m in line.iter().rev() {
        let mut m = (**m).clone();
        m.parents = vec![parent];
        let bytes = m.to_bytes();
        parent = ObjectId::of(&bytes);
        pack.add(ObjectKind::Manifest, parent, &bytes)?;
    }
    let (name, entries) = pack.finish()?;
    let index = repo.index()?;
    index.add_pack(&name, &entries)?;
    index.flush()?;
    Ok(Some((parent, line.len())))
}

/// Moves local ref `key` from `old` to `new` durably; fails if another process moved it.
pub(crate) fn move_local_ref(
    repo: &Repo,
    key: &str,
    old: Option<ObjectId>,
    new: ObjectId,
) -> Result<()> {
    let index = repo.index()?;
    match index.cas_ref_durably(key, old, Some(new))? {
        Ok(()) => Ok(()),
        Err(now) => Err(Error::LocalRefMoved {
            key: key.to_string(),
            found: now.map_or("nothing".into(), |id| id.short()),
        }),
    }
}
