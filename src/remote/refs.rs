//! Remote refs: read, and moved by compare-and-swap. On S3 a ref is replaced only by a
//! conditional write (`If-None-Match: *` to create, `If-Match: <etag>` to move), so of two
//! pushers that read the same tip only one moves it; the other is told the new tip and tries
//! again. A directory remote (whose `object_store` backend creates atomically but cannot
//! compare-and-swap) takes a lock file, created atomically, around the read-compare-write.

use std::time::{Duration, Instant};

use object_store::UpdateVersion;

use super::layout::ref_object;
use super::store::{Conditional, RemoteStore, StoreKind};
use crate::error::{Error, Result};
use crate::store::object_id::ObjectId;

/// How long a pusher waits for a directory remote's ref lock.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// A remote ref as read: its snapshot and the version a move must match.
#[derive(Clone, Debug)]
pub(crate) struct RemoteRef {
    pub id: ObjectId,
    version: UpdateVersion,
}

/// The body of a deleted ref on S3 (see [`delete_ref`]): read as no ref at all.
const TOMBSTONE: &str = "deleted";

/// What a ref object holds.
enum Slot {
    /// No object.
    Absent,
    /// A tombstone left by [`delete_ref`], at this version (a create moves it by `If-Match`).
    Deleted(UpdateVersion),
    /// A ref.
    Live(RemoteRef),
    /// An object that is no ref (empty, not an id: a disk's damage), at this version, and why.
    Damaged(UpdateVersion, String),
}

fn read_slot(store: &RemoteStore, key: &str) -> Result<Slot> {
    let object = ref_object(key);
    let Some(v) = store.get(&object)? else {
        return Ok(Slot::Absent);
    };
    let text = std::str::from_utf8(&v.bytes).unwrap_or("").trim();
    if text == TOMBSTONE {
        return Ok(Slot::Deleted(v.version));
    }
    Ok(match text.parse::<ObjectId>() {
        Ok(id) => Slot::Live(RemoteRef {
            id,
            version: v.version,
        }),
        Err(problem) => Slot::Damaged(v.version, problem),
    })
}

/// What a damaged ref's problem is followed by: the way out.
pub(crate) const DAMAGED_REF: &str = "the ref is damaged (`snapstore push --force` of it \
                                      writes it again, `push --delete` removes it)";

/// The error a damaged ref reads as.
fn damaged(store: &RemoteStore, key: &str, problem: &str) -> Error {
    Error::RemoteCorrupt {
        url: store.url.clone(),
        object: ref_object(key),
        problem: format!("{problem}: {DAMAGED_REF}"),
    }
}

/// Reads ref `key` (`heads/NAME`, `tags/NAME`); a deleted one reads as `None`.
pub(crate) fn read_ref(store: &RemoteStore, key: &str) -> Result<Option<RemoteRef>> {
    match read_slot(store, key)? {
        Slot::Live(r) => Ok(Some(r)),
        Slot::Absent | Slot::Deleted(_) => Ok(None),
        Slot::Damaged(_, problem) => Err(damaged(store, key, &problem)),
    }
}

/// Every ref on the remote, as (`heads/NAME` or `tags/NAME`, snapshot). Fails on a damaged one:
/// what it reaches cannot be told (a gc must not run).
pub(crate) fn list_refs(store: &RemoteStore) -> Result<Vec<(String, ObjectId)>> {
    let (refs, damaged_refs) = list_refs_and_damaged(store)?;
    match damaged_refs.first() {
        Some((key, problem)) => Err(damaged(store, key, problem)),
        None => Ok(refs),
    }
}

/// The readable refs, as (key, snapshot), and the damaged ones, as (key, what is wrong).
pub(crate) type RefsAndDamaged = (Vec<(String, ObjectId)>, Vec<(String, String)>);

/// Every readable ref, as [`list_refs`], and each damaged one with what is wrong with it (a
/// fetch takes the others, fsck names these).
pub(crate) fn list_refs_and_damaged(store: &RemoteStore) -> Result<RefsAndDamaged> {
    let mut out = Vec::new();
    let mut damaged_refs = Vec::new();
    for (name, _) in store.list("refs")? {
        // Only names a local ref could take (a hostile or foreign object is not a ref).
        let short = name
            .strip_prefix("heads/")
            .or_else(|| name.strip_prefix("tags/"));
        if short.is_none_or(|n| crate::repo::check_ref_name(n).is_err()) {
            continue;
        }
        match read_slot(store, &name)? {
            Slot::Live(r) => out.push((name, r.id)),
            Slot::Damaged(_, problem) => damaged_refs.push((name, problem)),
            Slot::Absent | Slot::Deleted(_) => {}
        }
    }
    out.sort();
    damaged_refs.sort();
    Ok((out, damaged_refs))
}

/// Writes `new` over ref `key` if it is damaged, or deletes it (`None`; on S3 by a tombstone,
/// as [`delete_ref`]). `Ok(false)`: it is not damaged, or another writer mended it first. A
/// damaged ref has no snapshot to compare with: only a forced push or a delete replaces it.
pub(crate) fn rewrite_damaged(
    store: &RemoteStore,
    key: &str,
    new: Option<ObjectId>,
) -> Result<bool> {
    let object = ref_object(key);
    let body = match new {
        Some(id) => format!("{}\n", id.hex()),
        None => format!("{TOMBSTONE}\n"),
    };
    match store.kind {
        StoreKind::S3 => match read_slot(store, key)? {
            Slot::Damaged(version, _) => {
                Ok(store.update(&object, body.into(), version)? == Conditional::Done)
            }
            _ => Ok(false),
        },
        StoreKind::Directory => {
            let _lock = DirLock::take(store, key)?;
            if !matches!(read_slot(store, key)?, Slot::Damaged(..)) {
                return Ok(false);
            }
            match new {
                Some(_) => store.put(&object, body.into())?,
                None => store.delete(&object)?,
            }
            Ok(true)
        }
    }
}

/// Fails, before anything moves, where a directory remote would have to hold a ref `K` and a ref
/// under `K/` (`heads/feat` and `heads/feat/x`): the one is a file, the other a directory of the
/// same name. A push of both used to move the first and fail on the second with "Not a
/// directory"; a push of `feat` beside a remote `feat/x` waited 30 s on a "lock" that was the
/// directory `locks/refs/heads/feat/`. An S3 remote's keys are names, not paths: it holds both.
pub(crate) fn check_paths_fit(store: &RemoteStore, keys: &[String]) -> Result<()> {
    if store.kind != StoreKind::Directory {
        return Ok(());
    }
    let mut all: Vec<String> = store.list("refs")?.into_iter().map(|(n, _)| n).collect();
    all.extend(keys.iter().cloned());
    let under = |a: &str, b: &str| a.strip_prefix(b).is_some_and(|rest| rest.starts_with('/'));
    for key in keys {
        if let Some(other) = all.iter().find(|o| under(o, key) || under(key, o)) {
            return Err(Error::InvalidArgument {
                what: "refs to push",
                problem: format!(
                    "a directory remote cannot hold both {key} and {other}: one would be a file \
                     and the other a directory of that name. Nothing was pushed; give one of \
                     them another name (an S3 remote holds both)"
                ),
            });
        }
    }
    Ok(())
}

/// Moves ref `key` from `expected` (`None`: it must not exist) to `new`. `Ok(Err(current))`
/// when another writer moved it first (`current`: what it points to now).
pub(crate) fn cas_ref(
    store: &RemoteStore,
    key: &str,
    expected: Option<&RemoteRef>,
    new: ObjectId,
) -> Result<std::result::Result<(), Option<ObjectId>>> {
    let object = ref_object(key);
    let body = bytes::Bytes::from(format!("{}\n", new.hex()));
    match store.kind {
        StoreKind::S3 => {
            let mut outcome = match expected {
                None => store.create(&object, body.clone())?,
                Some(r) => store.update(&object, body.clone(), r.version.clone())?,
            };
            if expected.is_none() && outcome == Conditional::Lost {
                // A deleted ref's tombstone is replaced as any ref is: only at the version read.
                if let Slot::Deleted(version) = read_slot(store, key)? {
                    outcome = store.update(&object, body, version)?;
                }
            }
            match outcome {
                Conditional::Done => Ok(Ok(())),
                Conditional::Lost => Ok(Err(read_ref(store, key)?.map(|r| r.id))),
            }
        }
        StoreKind::Directory => {
            let _lock = DirLock::take(store, key)?;
            let current = read_ref(store, key)?.map(|r| r.id);
            if current != expected.map(|r| r.id) {
                return Ok(Err(current));
            }
            store.put(&object, body)?;
            Ok(Ok(()))
        }
    }
}

/// Deletes ref `key` if it is still at `expected` (its version as read); `Ok(Err(current))`
/// when another writer moved it first (`current`: what it points to now, `None`: deleted).
///
/// S3 itself accepts `If-Match: <etag>` on DeleteObject (AWS documents conditional deletes for
/// general purpose and directory buckets; moto 5.2 checks it too), which would make this one
/// conditional request. `object_store` 0.12 has no conditional delete, so on S3 the ref is
/// replaced by a tombstone (`deleted`) with the same `If-Match` a move uses, and left there:
/// deleting the tombstone afterwards could not be made conditional either, and an
/// unconditional delete could remove a ref another pusher had just created over it. Readers
/// take a tombstone for no ref; a later push of the name replaces it by `If-Match` on the
/// tombstone's ETag ([`cas_ref`]). A directory remote deletes the file under the ref lock.
pub(crate) fn delete_ref(
    store: &RemoteStore,
    key: &str,
    expected: &RemoteRef,
) -> Result<std::result::Result<(), Option<ObjectId>>> {
    let object = ref_object(key);
    match store.kind {
        StoreKind::S3 => {
            let body = bytes::Bytes::from(format!("{TOMBSTONE}\n"));
            match store.update(&object, body, expected.version.clone())? {
                Conditional::Done => Ok(Ok(())),
                Conditional::Lost => Ok(Err(read_ref(store, key)?.map(|r| r.id))),
            }
        }
        StoreKind::Directory => {
            let _lock = DirLock::take(store, key)?;
            let current = read_ref(store, key)?.map(|r| r.id);
            if current != Some(expected.id) {
                return Ok(Err(current));
            }
            store.delete(&object)?;
            Ok(Ok(()))
        }
    }
}

/// A directory remote's lock on one ref: the file `locks/refs/KEY`, created atomically (a
/// hard link, so exactly one creator wins), removed when dropped.
struct DirLock<'a> {
    store: &'a RemoteStore,
    object: String,
}

impl<'a> DirLock<'a> {
    fn take(store: &'a RemoteStore, key: &str) -> Result<DirLock<'a>> {
        let object = format!("locks/{}", ref_object(key));
        let started = Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            let body = bytes::Bytes::from(format!("pid {}\n", std::process::id()));
            if store.create(&object, body)? == Conditional::Done {
                return Ok(DirLock { store, object });
            }
            if started.elapsed() >= LOCK_WAIT {
                return Err(Error::RemoteRefLocked {
                    url: store.url.clone(),
                    lock: format!("{}/{object}", store.url),
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

impl Drop for DirLock<'_> {
    fn drop(&mut self) {
        let _ = self.store.delete(&self.object);
    }
}

/// Checks that an S3 remote honours conditional writes before any ref is moved there: a
/// create of a fresh probe object must succeed, a second create of it must be refused, and an
/// update against a made-up ETag must be refused. A store that refuses the headers, or ignores
/// them (it would let two pushers overwrite each other's snapshots), fails with
/// [`Error::RemoteNoConditionalWrites`]. A directory remote needs no probe.
pub(crate) fn check_conditional_writes(store: &RemoteStore) -> Result<()> {
    if store.kind == StoreKind::Directory {
        return Ok(());
    }
    let probe = format!(
        "probes/{}-{}",
        std::process::id(),
        crate::fsutil::unique_suffix()
    );
    let refused = |problem: &str| Error::RemoteNoConditionalWrites {
        url: store.url.clone(),
        problem: problem.to_string(),
    };
    let result = (|| {
        if store.create(&probe, "1".into())? != Conditional::Done {
            return Err(refused(
                "a create with If-None-Match: * of a fresh probe object was refused",
            ));
        }
        if store.create(&probe, "2".into())? == Conditional::Done {
            return Err(refused(
                "the store ignored If-None-Match: it overwrote an existing probe object",
            ));
        }
        let stale = UpdateVersion {
            e_tag: Some("\"00000000000000000000000000000000\"".into()),
            version: None,
        };
        if store.update(&probe, "3".into(), stale)? == Conditional::Done {
            return Err(refused(
                "the store ignored If-Match: it replaced a probe object whose ETag did not match",
            ));
        }
        Ok(())
    })();
    let _ = store.delete(&probe);
    result
}
