//! The sled index: refs, config, and lookups that can all be rebuilt from the packs.
//!
//! sled lets one process hold a database at a time, so snapstore opens it only for the short
//! moments it needs it and waits (bounded) while another process has it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::object_id::ObjectId;
use super::pack::{ObjectKind, PackEntry};
use super::reflog::RefLog;
use crate::error::{Error, Result};

/// How long to wait for another process to release the index, unless
/// `SNAPSTORE_LOCK_TIMEOUT` (seconds) says otherwise.
const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(120);

/// Where an object is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// Pack name (hex).
    pub pack: String,
    /// The pack trailer entry.
    pub entry: PackEntry,
}

#[cfg(test)]
thread_local! {
    /// Object records this thread read from the index (tests count them, not time).
    pub static OBJECT_RECORDS_READ: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The location an object record of the index holds (each one read is counted in tests).
fn object_record(kv: sled::Result<(sled::IVec, sled::IVec)>) -> Result<Location> {
    let (k, v) = kv?;
    #[cfg(test)]
    OBJECT_RECORDS_READ.with(|c| c.set(c.get() + 1));
    let id = ObjectId::from_slice(&k)
        .ok_or_else(|| Error::IndexInconsistent("bad object key".into()))?;
    decode_location(&id, &v)
        .ok_or_else(|| Error::IndexInconsistent(format!("bad location for {id}")))
}

/// An open index. Drop it to release the lock.
pub struct Index {
    /// The index directory (named in errors).
    dir: PathBuf,
    reflog: RefLog,
    db: sled::Db,
    refs: sled::Tree,
    objects: sled::Tree,
    config: sled::Tree,
    tensors: sled::Tree,
    /// Opened read-only (by a read-only command, or because this user cannot write the index):
    /// sled then writes nothing, and every change is refused with [`Error::ReadOnly`].
    read_only: bool,
}

/// True for the errors a read-only directory or mount gives.
fn is_read_only(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(libc::EROFS)
}

/// Sets `key` to `value` unless it has a value; whether it set it.
fn insert_missing(tree: &sled::Tree, key: &str, value: &[u8]) -> Result<bool> {
    Ok(tree
        .compare_and_swap(key.as_bytes(), None::<&[u8]>, Some(value))?
        .is_ok())
}

/// The config table's key of [`Index::gc_generation`] (outside `cfg.*`: not a setting, not
/// logged, not listed).
const GC_GENERATION: &[u8] = b"gc.generation";

/// A file in the repository that exists while `fsck --rebuild-index` rebuilds the index: the
/// rebuild clears the object and tensor tables before it fills them again, so an index a rebuild
/// left unfinished (Ctrl-C, a crash) is refused until a rebuild completes.
pub(crate) const REBUILDING: &str = "index.unfinished";

/// The process that first opened an index, which starts sled's thread pool (0: none yet).
static SLED_STARTED_IN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Refuses to open an index in a process `fork()`ed from one that had opened an index: the
/// child inherits sled's pool as started but none of its threads, so an open would wait for
/// them for ever (Python's `multiprocessing` forks by default on Linux before 3.14).
fn check_not_forked() -> Result<()> {
    use std::sync::atomic::Ordering::Relaxed;
    let me = std::process::id();
    match SLED_STARTED_IN.compare_exchange(0, me, Relaxed, Relaxed) {
        Ok(_) => Ok(()),
        Err(first) if first == me => Ok(()),
        Err(first) => Err(Error::ForkedProcess { parent: first }),
    }
}

impl Index {
    /// Opens the index of `repo` for changes, waiting while another process holds it. On a
    /// repository this user cannot write, opens it read-only instead (changes then fail with
    /// [`Error::ReadOnly`]).
    pub fn open(repo: &Path) -> Result<Self> {
        match Self::open_with(repo, false) {
            Err(Error::Io { error, .. }) if is_read_only(&error) => Self::open_with(repo, true),
            other => other,
        }
    }

    /// Opens the index of `repo` for reading only: nothing in the repository is written or
    /// synced (sled recovers in memory), and other readers may hold it at the same time.
    pub fn open_read(repo: &Path) -> Result<Self> {
        Self::open_with(repo, true)
    }

    /// Opens the index of `repo` to rebuild it, whether or not an earlier rebuild finished.
    pub(crate) fn open_to_rebuild(repo: &Path) -> Result<Self> {
        Self::open_unchecked(repo, false)
    }

    fn open_with(repo: &Path, read_only: bool) -> Result<Self> {
        if repo.join(REBUILDING).exists() {
            return Err(Error::IndexInconsistent(
                "a rebuild of the index was interrupted, so it may lack objects and refs".into(),
            ));
        }
        Self::open_unchecked(repo, read_only)
    }

    fn open_unchecked(repo: &Path, read_only: bool) -> Result<Self> {
        let _t = crate::profile::time(crate::profile::Stage::Index);
        check_not_forked()?;
        let dir = repo.join("index");
        let wait = std::env::var("SNAPSTORE_LOCK_TIMEOUT")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .map_or(DEFAULT_LOCK_WAIT, Duration::from_secs_f64);
        let start = Instant::now();
        let mut pause = Duration::from_millis(2);
        let db = loop {
            // No background flusher: every change is flushed explicitly before it is reported,
            // and the flusher thread cost each short-lived open ~0.4 ms.
            let config = sled::Config::new()
                .path(&dir)
                .flush_every_ms(None)
                .read_only(read_only);
            match config.open() {
                Ok(db) => break db,
                Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                    if start.elapsed() >= wait {
                        return Err(Error::Busy {
                            path: repo.to_path_buf(),
                            waited_ms: start.elapsed().as_millis() as u64,
                        });
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                // Permission and missing-file errors name the index directory.
                Err(sled::Error::Io(e))
                    if is_read_only(&e) || e.kind() == std::io::ErrorKind::NotFound =>
                {
                    return Err(Error::io(&dir, e))
                }
                Err(e) => return Err(e.into()),
            }
        };
        Ok(Index {
            reflog: RefLog::new(repo),
            refs: db.open_tree("refs")?,
            objects: db.open_tree("objects")?,
            config: db.open_tree("config")?,
            tensors: db.open_tree("tensors")?,
            db,
            dir,
            read_only,
        })
    }

    /// Fails with [`Error::ReadOnly`] on a read-only index.
    fn writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly {
                path: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// Makes every change so far durable.
    pub fn flush(&self) -> Result<()> {
        self.step("index flush")?;
        let _t = crate::profile::time(crate::profile::Stage::Index);
        self.db.flush()?;
        Ok(())
    }

    /// Flushes; when that fails, takes the change back with `undo` (best effort), so a change
    /// reported as failed is not made durable by a later flush.
    pub fn flush_or_undo(&self, undo: impl FnOnce(&Index)) -> Result<()> {
        if let Err(e) = self.flush() {
            undo(self);
            let _ = self.db.flush();
            return Err(e);
        }
        Ok(())
    }

    // ---- refs ----

    /// The snapshot a ref (`heads/NAME`, `tags/NAME`) points to.
    pub fn get_ref(&self, name: &str) -> Result<Option<ObjectId>> {
        Ok(self
            .refs
            .get(name.as_bytes())?
            .and_then(|v| ObjectId::from_slice(&v)))
    }

    /// Sets `name` to `new` if it still points to `old` (`None`: does not exist). Returns the
    /// current value when it moved.
    pub fn cas_ref(
        &self,
        name: &str,
        old: Option<ObjectId>,
        new: Option<ObjectId>,
    ) -> Result<std::result::Result<(), Option<ObjectId>>> {
        self.step("ref update")?;
        let res = self.refs.compare_and_swap(
            name.as_bytes(),
            old.as_ref().map(|o| &o.0[..]),
            new.as_ref().map(|n| &n.0[..]),
        )?;
        match res {
            Ok(()) => {
                if let Err(e) = self.reflog.record(name, new.map(|n| n.hex()).as_deref()) {
                    // Unlogged, the move would be lost with the index: take it back.
                    let _ = self.refs.compare_and_swap(
                        name.as_bytes(),
                        new.as_ref().map(|n| &n.0[..]),
                        old.as_ref().map(|o| &o.0[..]),
                    );
                    return Err(e);
                }
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(e.current.and_then(|v| ObjectId::from_slice(&v)))),
        }
    }

    /// [`Index::cas_ref`], then a flush; a failed flush takes the move back, so a ref change
    /// reported as failed never becomes durable later.
    pub fn cas_ref_durably(
        &self,
        name: &str,
        old: Option<ObjectId>,
        new: Option<ObjectId>,
    ) -> Result<std::result::Result<(), Option<ObjectId>>> {
        let moved = self.cas_ref(name, old, new)?;
        if moved.is_ok() {
            self.flush_or_undo(|i| {
                let _ = i.cas_ref(name, new, old);
            })?;
        }
        Ok(moved)
    }

    /// All refs under `prefix` (e.g. `heads/`), name without the prefix.
    pub fn list_refs(&self, prefix: &str) -> Result<Vec<(String, ObjectId)>> {
        let mut out = Vec::new();
        for kv in self.refs.scan_prefix(prefix.as_bytes()) {
            let (k, v) = kv?;
            if let (Ok(name), Some(id)) = (std::str::from_utf8(&k), ObjectId::from_slice(&v)) {
                out.push((name[prefix.len()..].to_string(), id));
            }
        }
        Ok(out)
    }

    /// The branch HEAD names.
    pub fn head_branch(&self) -> Result<String> {
        Ok(self
            .config
            .get(b"HEAD")?
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_else(|| "main".to_string()))
    }

    /// Points HEAD at a branch.
    pub fn set_head_branch(&self, branch: &str) -> Result<()> {
        self.step("HEAD update")?;
        self.change_logged("HEAD", Some(branch))
    }

    /// Restores refs, HEAD and config values that the ref log knows but the index lacks (after
    /// the index was lost). Returns how many refs were restored.
    pub fn restore_refs_from_log(&self) -> Result<usize> {
        self.writable()?;
        let logged = self.reflog.replay()?;
        let mut restored = 0;
        for (key, id) in &logged.refs {
            restored += usize::from(insert_missing(&self.refs, key, &id.0)?);
        }
        let head = logged.head.iter().map(|h| ("HEAD", h));
        for (key, value) in head.chain(logged.config.iter().map(|(k, v)| (k.as_str(), v))) {
            insert_missing(&self.config, key, value.as_bytes())?;
        }
        Ok(restored)
    }

    // ---- config ----

    /// A config value.
    pub fn config_get(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .config
            .get(format!("cfg.{key}").as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Sets a config value, logged beside the refs so it survives the loss of the index.
    pub fn config_set(&self, key: &str, value: &str) -> Result<()> {
        self.step("config update")?;
        self.change_logged(&format!("cfg.{key}"), Some(value))
    }

    /// Removes a config value (logged too).
    pub fn config_remove(&self, key: &str) -> Result<()> {
        self.writable()?;
        self.change_logged(&format!("cfg.{key}"), None)
    }

    /// Sets (or with `None` removes) `key` of the config table (HEAD, `cfg.*`) and logs the
    /// change in the ref log under the same key.
    fn change_logged(&self, key: &str, value: Option<&str>) -> Result<()> {
        let previous = match value {
            Some(v) => self.config.insert(key.as_bytes(), v.as_bytes())?,
            None => self.config.remove(key.as_bytes())?,
        };
        if let Err(e) = self.reflog.record(key, value) {
            // Unlogged, the change would be lost with the index: take it back.
            let _ = match previous {
                Some(p) => self.config.insert(key.as_bytes(), p),
                None => self.config.remove(key.as_bytes()),
            };
            return Err(e);
        }
        Ok(())
    }

    // ---- gc generation ----

    /// How many collections have removed objects from this index (0 for none, or since a
    /// rebuild): a commit that reads the same count when it publishes as when it planned knows
    /// that every object it reuses is still there.
    pub fn gc_generation(&self) -> Result<u64> {
        Ok(self
            .config
            .get(GC_GENERATION)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_le_bytes))
    }

    /// Counts one more collection; called before it removes anything (and flushed with it).
    pub fn bump_gc_generation(&self) -> Result<()> {
        self.writable()?;
        let next = self.gc_generation()?.wrapping_add(1);
        self.config.insert(GC_GENERATION, &next.to_le_bytes())?;
        Ok(())
    }

    /// Closes the index, then opens it for changes once more and closes it again: that open
    /// makes sled write a snapshot of its pages. An open replays the log written since the
    /// last snapshot, and only an open for changes writes one, so after a rebuild or a gc
    /// wrote a record per object every read-only command replayed them all until the next
    /// commit (`log -n 1` on 100 snapshots of 10,000 tensors: 0.62 s after a rebuild, 0.14 s
    /// before it).
    pub fn close_with_snapshot(self) -> Result<()> {
        let repo = self
            .dir
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| Error::IndexInconsistent("index directory has no parent".into()))?;
        let read_only = self.read_only;
        drop(self);
        if !read_only {
            drop(Index::open_unchecked(&repo, false)?);
        }
        Ok(())
    }

    // ---- object locations ----

    /// Records the objects of a pack that the index does not know yet; returns their ids.
    pub fn add_pack(&self, pack: &str, entries: &[PackEntry]) -> Result<Vec<ObjectId>> {
        // An object already stored keeps its location, so forgetting this pack's additions
        // (a failed commit) never loses another pack's copy.
        self.record_pack(pack, entries, false)
    }

    /// Points every object of `entries` at `pack` (gc rewrote them there).
    pub fn move_to_pack(&self, pack: &str, entries: &[PackEntry]) -> Result<()> {
        self.record_pack(pack, entries, true).map(|_| ())
    }

    fn record_pack(
        &self,
        pack: &str,
        entries: &[PackEntry],
        replace: bool,
    ) -> Result<Vec<ObjectId>> {
        let pack_id: ObjectId = pack
            .parse()
            .map_err(|e: String| Error::IndexInconsistent(e))?;
        self.step("object index update")?;
        let mut batch = sled::Batch::default();
        let mut added = Vec::new();
        for e in entries {
            if replace || !self.objects.contains_key(e.id.0)? {
                batch.insert(&e.id.0[..], encode_location(&pack_id, e));
                added.push(e.id);
            }
        }
        self.objects.apply_batch(batch)?;
        Ok(added)
    }

    /// Forgets objects: those gc dropped from a pack, or those [`Index::add_pack`] added for a
    /// commit that failed.
    pub fn forget_objects(&self, ids: &[ObjectId]) -> Result<()> {
        self.step("object index update")?;
        let mut batch = sled::Batch::default();
        for id in ids {
            batch.remove(&id.0[..]);
        }
        self.objects.apply_batch(batch)?;
        Ok(())
    }

    /// Where an object is, if indexed.
    pub fn locate(&self, id: &ObjectId) -> Result<Option<Location>> {
        let Some(v) = self.objects.get(id.0)? else {
            return Ok(None);
        };
        decode_location(id, &v)
            .map(Some)
            .ok_or_else(|| Error::IndexInconsistent(format!("bad location record for {id}")))
    }

    /// The indexed objects whose id starts with `hex` (lowercase hex digits): a range of the
    /// key space, so resolving an id or a prefix reads only the records that match (up to one
    /// odd digit's worth), not the whole index.
    pub fn locations_with_prefix(&self, hex: &str) -> Result<Vec<Location>> {
        let whole_bytes: Option<Vec<u8>> = hex
            .as_bytes()
            .chunks_exact(2)
            .map(crate::store::object_id::hex_byte)
            .collect();
        let Some(key_prefix) = whole_bytes else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for kv in self.objects.scan_prefix(&key_prefix) {
            let location = object_record(kv)?;
            // An odd digit is not part of the byte prefix.
            if location.entry.id.hex().starts_with(hex) {
                out.push(location);
            }
        }
        Ok(out)
    }

    /// Every indexed object.
    pub fn all_locations(&self) -> Result<Vec<Location>> {
        self.objects.iter().map(object_record).collect()
    }

    // ---- tensor dedup ----

    /// A stored tensor with these exact bytes: (snapshot, tensor name).
    pub fn find_tensor(&self, hash: &ObjectId) -> Result<Option<(ObjectId, String)>> {
        let Some(v) = self.tensors.get(hash.0)? else {
            return Ok(None);
        };
        let snap = ObjectId::from_slice(v.get(..32).unwrap_or_default());
        Ok(snap.map(|s| (s, String::from_utf8_lossy(&v[32..]).into_owned())))
    }

    /// Remembers where a tensor's exact bytes are stored, unless a copy is already known.
    /// Returns whether it was added.
    pub fn add_tensor(&self, hash: &ObjectId, snapshot: &ObjectId, name: &str) -> Result<bool> {
        self.step("tensor index update")?;
        let mut v = snapshot.0.to_vec();
        v.extend_from_slice(name.as_bytes());
        Ok(self
            .tensors
            .compare_and_swap(hash.0, None as Option<&[u8]>, Some(v))?
            .is_ok())
    }

    /// Forgets tensors that [`Index::add_tensor`] added (the commit that stored them failed).
    pub fn forget_tensors(&self, hashes: &[ObjectId]) -> Result<()> {
        self.writable()?;
        for h in hashes {
            self.tensors.remove(h.0)?;
        }
        Ok(())
    }

    fn step(&self, what: &str) -> Result<()> {
        self.writable()?;
        crate::fsutil::io_step(what).map_err(|e| Error::io(&self.dir, e))
    }

    /// Empties the tensor dedup index (gc and rebuild refill it).
    pub fn clear_tensors(&self) -> Result<()> {
        self.writable()?;
        self.tensors.clear()?;
        Ok(())
    }

    /// Empties the object index before a rebuild.
    pub fn clear_objects(&self) -> Result<()> {
        self.writable()?;
        self.objects.clear()?;
        Ok(())
    }
}

fn encode_location(pack: &ObjectId, e: &PackEntry) -> Vec<u8> {
    let mut v = Vec::with_capacity(49);
    v.extend_from_slice(&pack.0);
    v.push(e.kind as u8);
    v.extend_from_slice(&e.offset.to_le_bytes());
    v.extend_from_slice(&e.len.to_le_bytes());
    v
}

fn decode_location(id: &ObjectId, v: &[u8]) -> Option<Location> {
    if v.len() != 49 {
        return None;
    }
    Some(Location {
        pack: ObjectId::from_slice(&v[..32])?.hex(),
        entry: PackEntry {
            id: *id,
            kind: ObjectKind::try_from(v[32]).ok()?,
            offset: u64::from_le_bytes(v[33..41].try_into().ok()?),
            len: u64::from_le_bytes(v[41..49].try_into().ok()?),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_share_the_index_and_see_what_the_writer_flushed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let index = Index::open(dir.path()).unwrap();
            index.set_head_branch("trunk").unwrap();
            index.flush().unwrap();
        }
        // Two readers at once (a writer would wait for the first to let go).
        let a = Index::open_read(dir.path()).unwrap();
        let b = Index::open_read(dir.path()).unwrap();
        assert_eq!(a.head_branch().unwrap(), "trunk");
        assert_eq!(b.head_branch().unwrap(), "trunk");
        assert!(matches!(
            a.set_head_branch("other"),
            Err(Error::ReadOnly { .. })
        ));
    }

    /// The newest sled snapshot file's name (its log position).
    fn newest_snapshot(repo: &Path) -> String {
        let mut snaps: Vec<String> = std::fs::read_dir(repo.join("index"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("snap.") && !n.contains("generating"))
            .collect();
        snaps.sort();
        snaps.pop().expect("a snapshot file")
    }

    /// After many records (a rebuild, a gc), closing with a snapshot leaves no log for the
    /// next open to replay: an open for changes right after finds nothing new to snapshot.
    #[test]
    fn closing_with_a_snapshot_leaves_no_log_to_replay() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        index.set_head_branch("main").unwrap();
        index.flush().unwrap();
        drop(index);
        // This open snapshots what is there so far, as a rebuild's or a gc's open does.
        let index = Index::open(dir.path()).unwrap();
        let opened = newest_snapshot(dir.path());
        let entries: Vec<PackEntry> = (0..5000u32)
            .map(|i| PackEntry {
                id: ObjectId::of(&i.to_le_bytes()),
                kind: ObjectKind::Chunk,
                offset: 12 + u64::from(i) * 10,
                len: 10,
            })
            .collect();
        let pack = ObjectId::of(b"pack").hex();
        index.add_pack(&pack, &entries).unwrap();
        index.flush().unwrap();
        index.close_with_snapshot().unwrap();
        let closed = newest_snapshot(dir.path());
        assert_ne!(closed, opened);
        drop(Index::open(dir.path()).unwrap());
        assert_eq!(newest_snapshot(dir.path()), closed);
        let index = Index::open_read(dir.path()).unwrap();
        assert_eq!(index.all_locations().unwrap().len(), 5000);
    }

    #[test]
    fn a_missing_index_is_named_not_created_by_a_reader() {
        let dir = tempfile::tempdir().unwrap();
        let err = Index::open_read(dir.path()).err().expect("no index there");
        assert!(err.to_string().contains("index"), "{err}");
        assert!(!dir.path().join("index").exists());
    }
}
