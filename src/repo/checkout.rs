//! Checkout: rebuild tensors from their chunks (following delta references), verify each
//! tensor's blake3 against the manifest, and hand them back in memory or as a safetensors file.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use super::checkout_cache::Collector;
use super::output_buffer;
use super::reader::ObjectReader;
use super::refs::{resolve_rev, Rev};
use super::windows::{window_bytes, windows_for_threads, MAX_WINDOW_BYTES};
use super::{has_extension, Repo};
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::fsutil::{OutputFile, DIRECT_MIN_BYTES};
use crate::safetensors_io::{canonical_header, write_header_prefix};
use crate::store::manifest::{Manifest, TensorEntry};
use crate::store::object_id::ObjectId;

/// A tensor checked out into memory.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedOutTensor {
    /// Name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<u64>,
    /// Element bytes.
    pub data: Vec<u8>,
}

/// A snapshot checked out into memory.
#[derive(Clone, Debug)]
pub struct Checkout {
    /// Snapshot id.
    pub snapshot: ObjectId,
    /// The safetensors `__metadata__`.
    pub metadata: Option<BTreeMap<String, String>>,
    /// User metadata of the snapshot.
    pub meta: BTreeMap<String, String>,
    /// Tensors, in file order.
    pub tensors: Vec<CheckedOutTensor>,
}

impl Checkout {
    /// A tensor by name.
    pub fn tensor(&self, name: &str) -> Option<&CheckedOutTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// A buffer the caller owns for one tensor of a checkout into place ([`Repo::checkout_into`]):
/// its name, and the element type and shape it holds, which must be the tensor's.
#[derive(Debug)]
pub struct TensorTarget<'b> {
    /// The tensor's name in the snapshot.
    pub name: String,
    /// Element type the buffer holds.
    pub dtype: Dtype,
    /// Shape the buffer holds.
    pub shape: Vec<u64>,
    /// The buffer, exactly the tensor's bytes long.
    pub data: &'b mut [u8],
}

/// Where a checkout into memory puts a decoded chunk: `(tensor index, chunk index, bytes, the
/// checkout cache's collector)`.
type PlaceChunk<'a> = dyn FnMut(usize, usize, Vec<u8>, &Collector) -> Result<()> + 'a;

/// What a checkout into place ([`Repo::checkout_into`]) found besides the tensors.
#[derive(Clone, Debug)]
pub struct CheckoutInfo {
    /// Snapshot id.
    pub snapshot: ObjectId,
    /// The safetensors `__metadata__`.
    pub metadata: Option<BTreeMap<String, String>>,
    /// User metadata of the snapshot.
    pub meta: BTreeMap<String, String>,
}

/// What a checkout to a file did.
#[derive(Clone, Debug, Serialize)]
pub struct CheckoutReport {
    /// Snapshot id.
    pub snapshot: ObjectId,
    /// File written.
    pub path: PathBuf,
    /// Tensors written.
    pub tensors: usize,
    /// Tensor bytes written.
    pub bytes: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// What the symbolic link at `path` named, where the file replaced one (left as it was:
    /// a checkout writes at the path it is given, never through a link there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_link: Option<PathBuf>,
}

/// A checkout ready to decode: the snapshot, its manifest, the tensors asked for, and a reader
/// holding everything they need.
pub(crate) struct Prepared {
    pub snapshot: ObjectId,
    pub manifest: Arc<Manifest>,
    pub selected: Vec<TensorEntry>,
    pub reader: ObjectReader,
}

impl Repo {
    pub(super) fn prepare_checkout(&self, rev: Rev, names: Option<&[String]>) -> Result<Prepared> {
        self.prepare_with(self.reader(), rev, names)
    }

    /// [`Repo::prepare_checkout`] for a checkout into memory, which fills the checkout cache
    /// again: its reader takes the cache's chunks and gives each up at its last use. One that
    /// fails before decoding gives them back ([`Repo::give_back_cache`]); one that fails while
    /// decoding leaves the cache empty, and the next decodes its chains in full.
    fn prepare_checkout_taking(&self, rev: Rev, names: Option<&[String]>) -> Result<Prepared> {
        self.prepare_with(self.reader_with(self.checkouts.take()), rev, names)
    }

    fn prepare_with(
        &self,
        mut reader: ObjectReader,
        rev: Rev,
        names: Option<&[String]>,
    ) -> Result<Prepared> {
        let plan = || -> Result<_> {
            let index = self.index_read()?;
            let snapshot = resolve_rev(&index, &mut reader, rev)?;
            let manifest = reader.load_manifest(&index, &snapshot)?;
            let selected = select_entries(&manifest, &snapshot, names)?;
            reader.load_closure(&index, selected.iter())?;
            Ok((snapshot, manifest, selected))
        };
        match plan() {
            Ok((snapshot, manifest, selected)) => Ok(Prepared {
                snapshot,
                manifest,
                selected,
                reader,
            }),
            Err(e) => {
                self.give_back_cache(reader);
                Err(e)
            }
        }
    }

    /// Puts the cached chunks a reader took back in the cache, unused (a checkout that stopped
    /// before decoding); nothing for a reader that shares them.
    fn give_back_cache(&self, reader: ObjectReader) {
        self.checkouts.give_back(reader.into_known());
    }

    /// Checks out a snapshot (or some of its tensors) into memory. `rev` is a ref expression
    /// (`"HEAD~2"`), a snapshot id, or what [`Repo::show`] returned (see [`Rev`]).
    pub fn checkout<'a>(
        &self,
        rev: impl Into<Rev<'a>>,
        names: Option<&[String]>,
    ) -> Result<Checkout> {
        let mut p = self.prepare_checkout_taking(rev.into(), names)?;
        p.reader.hash_tensors_only();
        let entries: Vec<&TensorEntry> = p.selected.iter().collect();
        let mut data: Vec<Vec<u8>> = entries.iter().map(|_| Vec::new()).collect();
        self.decode_into_memory(&p, &mut |t, i, bytes, remember| {
            // Only this checkout stops midway: its tensors are its own until it returns.
            self.check_interrupt()?;
            let whole = entries[t].len as usize;
            if data[t].is_empty() && bytes.len() == whole {
                // A tensor of one chunk (most of them) is that chunk: handed on, not copied, so
                // the cache keeps a copy.
                remember.offer(entries[t], i, &bytes);
                data[t] = bytes;
            } else {
                let kept = &mut data[t];
                if kept.capacity() == 0 {
                    *kept = output_buffer::with_capacity(whole);
                }
                // (Chunks longer than the tensor fail its hash check when it ends.)
                kept.extend_from_slice(&bytes);
                remember.keep(entries[t], i, bytes);
            }
            Ok(())
        })?;
        let tensors = entries
            .iter()
            .zip(data)
            .map(|(e, data)| CheckedOutTensor {
                name: e.name.clone(),
                dtype: e.dtype,
                shape: e.shape.clone(),
                data,
            })
            .collect();
        Ok(Checkout {
            snapshot: p.snapshot,
            metadata: p.manifest.metadata.clone(),
            meta: p.manifest.meta.clone(),
            tensors,
        })
    }

    /// Checks out the tensors `targets` name into their buffers, in place: an evaluation loop
    /// loading snapshot after snapshot into one model allocates nothing and copies each chunk
    /// once (a fresh buffer's pages are faults the first time they are written). Each target's
    /// dtype and shape must be its tensor's; the snapshot's other tensors are not read.
    ///
    /// Every tensor is checked against its hash as with [`Repo::checkout`], but after it is
    /// written: on an error, what the buffers hold is unspecified (the targets are checked
    /// before anything is written, so a wrong name, dtype or shape changes nothing).
    pub fn checkout_into<'a>(
        &self,
        rev: impl Into<Rev<'a>>,
        targets: &mut [TensorTarget<'_>],
    ) -> Result<CheckoutInfo> {
        let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
        // By a map, not a search of the earlier names: 20,000 targets took 1.7 s that way.
        let mut first_of: HashMap<&str, usize> = HashMap::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            if let Some(first) = first_of.insert(name, i) {
                return Err(Error::invalid(
                    "checkout targets",
                    format!("tensor {name:?} is given two buffers (targets {first} and {i})"),
                ));
            }
        }
        let mut p = self.prepare_checkout_taking(rev.into(), Some(&names))?;
        let fit = p.selected.iter().zip(targets.iter());
        if let Err(e) = fit
            .clone()
            .try_for_each(|(e, t)| check_target(e, t, &p.snapshot))
        {
            self.give_back_cache(p.reader);
            return Err(e);
        }
        p.reader.hash_tensors_only();
        let mut filled = vec![0usize; p.selected.len()];
        self.decode_into_memory(&p, &mut |t, i, bytes, remember| {
            let (at, entry) = (filled[t], &p.selected[t]);
            let place = targets[t]
                .data
                .get_mut(at..at + bytes.len())
                .ok_or_else(|| {
                    Error::decode(
                        format!("tensor {:?}", entry.name),
                        format!("its chunks run past its {} bytes", entry.len),
                    )
                })?;
            place.copy_from_slice(&bytes);
            filled[t] += bytes.len();
            remember.keep(entry, i, bytes);
            Ok(())
        })?;
        Ok(CheckoutInfo {
            snapshot: p.snapshot,
            metadata: p.manifest.metadata.clone(),
            meta: p.manifest.meta.clone(),
        })
    }

    /// Decodes the tensors of a prepared checkout into memory: `place(tensor index, chunk
    /// index, bytes, cache)` puts each chunk where it belongs and offers it to the checkout
    /// cache, which keeps what this checkout collected once every tensor's hash checked out.
    fn decode_into_memory(&self, p: &Prepared, place: &mut PlaceChunk<'_>) -> Result<()> {
        let entries: Vec<&TensorEntry> = p.selected.iter().collect();
        let total = entries.iter().map(|e| e.len).sum();
        let mut done = 0;
        let remember = self.checkouts.collector();
        decode_tensors(
            &p.reader,
            &p.snapshot,
            &entries,
            Some(&remember),
            &mut |t, i, bytes| {
                done += bytes.len() as u64;
                place(t, i, bytes, &remember)?;
                self.report("checkout", done, total);
                Ok(())
            },
        )?;
        self.checkouts.replace(remember);
        Ok(())
    }

    /// Checks out a snapshot (or some tensors) as a safetensors file, written atomically. The
    /// whole snapshot reproduces the committed file byte for byte; the whole of a checkpoint
    /// directory's snapshot is written as that directory, `path` naming it, unless `path` ends
    /// in `.safetensors` (and is no directory): then all its tensors go into that one file.
    pub fn checkout_to_file<'a>(
        &self,
        rev: impl Into<Rev<'a>>,
        path: impl AsRef<Path>,
        names: Option<&[String]>,
    ) -> Result<CheckoutReport> {
        let started = Instant::now();
        let mut p = self.prepare_checkout(rev.into(), names)?;
        p.reader.hash_tensors_only();
        // Not kept for the next checkout: a file is written once (a deploy), and keeping its
        // chunks raised a 512 MiB checkout's peak memory from 24% to 33% of the file.
        let progress = |done, total| self.report("checkout", done, total);
        let stop = || self.check_interrupt();
        let mut r = write_prepared(p, path.as_ref(), names.is_some(), &progress, &stop)?;
        r.seconds = started.elapsed().as_secs_f64();
        Ok(r)
    }
}

/// Writes a prepared checkout as a safetensors file, atomically: the committed header when the
/// whole snapshot was asked for (`some` false), else a header for the selected tensors.
/// `progress(done, total)` is told the tensor bytes written; `stop` is asked before each chunk
/// is written whether to go on (an error ends the checkout, nothing written in place).
pub(crate) fn write_prepared(
    p: Prepared,
    path: &Path,
    some: bool,
    progress: &dyn Fn(u64, u64),
    stop: &dyn Fn() -> Result<()>,
) -> Result<CheckoutReport> {
    // `NAME.safetensors/` names a directory too, existing or not.
    let names_a_directory = path.is_dir() || path.as_os_str().to_string_lossy().ends_with('/');
    // A directory snapshot asked for as one `.safetensors` file: all its tensors in one file,
    // as `--tensor` naming each would write them (a new directory of that name would surprise).
    let merged =
        p.manifest.is_directory() && has_extension(path, "safetensors") && !names_a_directory;
    if !some && !merged && p.manifest.is_directory() {
        return super::checkout_dir::write_directory(p, path, progress, stop);
    }
    if !p.manifest.is_directory() && names_a_directory {
        let named = p.manifest.source.as_deref().unwrap_or("NAME.safetensors");
        return Err(Error::invalid(
            "checkout output",
            format!(
                "{} names a directory, and snapshot {} is one file: name the file to write \
                 ({}{named}, say)",
                path.display(),
                p.snapshot.short(),
                path.join("").display(),
            ),
        ));
    }
    let some = some || merged;
    let started = Instant::now();
    let (header, order): (Vec<u8>, Vec<&TensorEntry>) = match some {
        false => (
            p.manifest.header.as_bytes().to_vec(),
            p.selected.iter().collect(),
        ),
        true => {
            let specs: Vec<(String, Dtype, Vec<u64>)> = p
                .selected
                .iter()
                .map(|e| (e.name.clone(), e.dtype, e.shape.clone()))
                .collect();
            let metadata = match merged {
                true => shards_metadata(&p.manifest),
                false => p.manifest.metadata.clone(),
            };
            let (raw, infos) = canonical_header(metadata.as_ref(), &specs).map_err(|problem| {
                Error::BadTensor {
                    tensor: String::new(),
                    problem: Box::new(problem),
                }
            })?;
            let order = infos
                .iter()
                .map(|i| {
                    p.selected
                        .iter()
                        .find(|e| e.name == i.name)
                        .expect("selected")
                })
                .collect();
            (raw, order)
        }
    };
    // A large file goes around the page cache, as packs do: on the development VM a 2 GiB
    // checkout wrote 2.0-2.3x faster, and with reading the file back (cold, as a deploy then
    // does) still 1.5x (BENCHMARKS.md "Large packs and checkouts around the page cache").
    let total: u64 = order.iter().map(|e| e.len).sum();
    let mut out = OutputFile::open(path, total >= DIRECT_MIN_BYTES)?;
    write_header_prefix(&mut out, &header).map_err(|e| Error::io(path, e))?;
    let mut done = 0;
    decode_tensors(&p.reader, &p.snapshot, &order, None, &mut |_, _, chunk| {
        stop()?;
        done += chunk.len() as u64;
        progress(done, total);
        out.write_all(&chunk).map_err(|err| Error::io(path, err))
    })?;
    let bytes = order.iter().map(|e| e.len).sum();
    let replaced_link = out.replaced_link().map(Path::to_path_buf);
    out.finish(path)?;
    Ok(CheckoutReport {
        snapshot: p.snapshot,
        path: path.to_path_buf(),
        tensors: order.len(),
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        replaced_link,
    })
}

/// The `__metadata__` a directory snapshot's shards share (`{"format": "pt"}` from
/// `save_pretrained`), for the one file they are merged into; none where they differ.
fn shards_metadata(m: &Manifest) -> Option<BTreeMap<String, String>> {
    let mut each = m
        .shards()
        .into_iter()
        .map(|(_, header, _)| super::frames::header_metadata(header));
    let first = each.next()?;
    each.all(|other| other == first).then_some(first)?
}

/// Whether `target` can take `entry`'s bytes: its dtype, its shape, and so its length.
fn check_target(entry: &TensorEntry, target: &TensorTarget<'_>, snapshot: &ObjectId) -> Result<()> {
    if entry.dtype != target.dtype || entry.shape != target.shape {
        return Err(Error::invalid(
            "checkout target",
            format!(
                "tensor {:?} of snapshot {} is {} {:?}, but its buffer holds {} {:?}",
                entry.name,
                snapshot.short(),
                entry.dtype.name(),
                entry.shape,
                target.dtype.name(),
                target.shape
            ),
        ));
    }
    if target.data.len() as u64 != entry.len {
        return Err(Error::invalid(
            "checkout target",
            format!(
                "tensor {:?} of snapshot {} is {} bytes, but its buffer is {}",
                entry.name,
                snapshot.short(),
                entry.len,
                target.data.len()
            ),
        ));
    }
    Ok(())
}

/// The entries of `manifest` a checkout of `names` (all when `None`) decodes, each name once.
pub(crate) fn select_entries(
    manifest: &Manifest,
    snapshot: &ObjectId,
    names: Option<&[String]>,
) -> Result<Vec<TensorEntry>> {
    match names {
        None => Ok(manifest.tensors.clone()),
        Some(names) => names
            .iter()
            .enumerate()
            // A name asked for twice is written once: a safetensors file cannot hold it twice.
            .filter(|(i, n)| !names[..*i].contains(n))
            .map(|(_, n)| n)
            .map(|n| {
                manifest
                    .tensor(n)
                    .cloned()
                    .ok_or_else(|| Error::TensorNotFound {
                        tensor: n.clone(),
                        snapshot: snapshot.hex(),
                    })
            })
            .collect(),
    }
}

/// Decodes the chunks of one window on the pool; on a failure, names the damaged object where
/// there is one (objects are read unhashed, and a damaged one more often breaks decoding than
/// decodes wrongly).
fn decode_window(
    reader: &ObjectReader,
    snapshot: &ObjectId,
    entries: &[&TensorEntry],
    window: &[(usize, usize)],
) -> Result<Vec<Vec<u8>>> {
    window
        .par_iter()
        .map(|&(t, i)| reader.decode_chunk(entries[t], i))
        .collect::<Result<_>>()
        .map_err(|e| {
            let damage = window.iter().find_map(|&(t, i)| {
                let damage = reader.find_damage(entries[t], i)?;
                Some(damaged_tensor(entries[t], snapshot, damage))
            });
            damage.unwrap_or(e)
        })
}

/// `damage` as the tensor that needed the damaged object reports it.
fn damaged_tensor(entry: &TensorEntry, snapshot: &ObjectId, damage: Error) -> Error {
    Error::DamagedTensor {
        tensor: entry.name.clone(),
        snapshot: snapshot.short(),
        damage: Box::new(damage),
    }
}

/// Decodes tensors in order, a window of chunks at a time across tensors (so a checkpoint of
/// many small tensors still uses every core), passes each tensor's bytes on in order as
/// `sink(tensor index, chunk index, bytes)`, and checks every tensor's blake3 against the
/// manifest as soon as its last chunk is through. The sink offers chunks to `remember` (it
/// knows whether it keeps a chunk or copies it out); their tensor failing its hash drops them.
pub(crate) fn decode_tensors(
    reader: &ObjectReader,
    snapshot: &ObjectId,
    entries: &[&TensorEntry],
    remember: Option<&Collector>,
    sink: &mut dyn FnMut(usize, usize, Vec<u8>) -> Result<()>,
) -> Result<()> {
    let jobs: Vec<(usize, usize)> = entries
        .iter()
        .enumerate()
        .flat_map(|(t, e)| (0..e.chunks.len()).map(move |i| (t, i)))
        .collect();
    let mut hashers: Vec<Option<(blake3::Hasher, u64)>> = entries.iter().map(|_| None).collect();
    let finish = |t: usize, hashers: &mut Vec<Option<(blake3::Hasher, u64)>>| -> Result<()> {
        let e = entries[t];
        let (h, total) = hashers[t]
            .take()
            .unwrap_or_else(|| (blake3::Hasher::new(), 0));
        if total != e.len || ObjectId::from(h.finalize()) != e.hash {
            if let Some(c) = remember {
                c.discard(e);
            }
            // Name the damaged object where there is one (objects were read unhashed).
            if let Some(damage) = (0..e.chunks.len()).find_map(|i| reader.find_damage(e, i)) {
                return Err(damaged_tensor(e, snapshot, damage));
            }
            return Err(Error::HashMismatch {
                tensor: e.name.clone(),
                snapshot: snapshot.hex(),
            });
        }
        Ok(())
    };
    // Tensors with no chunks (never written by commit, but possible in a hostile manifest).
    for (t, e) in entries.iter().enumerate() {
        if e.chunks.is_empty() {
            finish(t, &mut hashers)?;
        }
    }
    // Windows of chunks across tensors, in three stages at once: a thread reads the objects of
    // the next window (pack reads wait on the disk), the pool decodes this one, and this thread
    // hashes and hands on the last one. Each window is half the commit's: three are held at
    // once, and the peak memory of a large checkout stays where the commit's is.
    // Cut by bytes, not chunks: a checkpoint of many small tensors in windows of a few chunks
    // went through a thread hand-off and a parallel pass every few kilobytes.
    let job_bytes: Vec<usize> = jobs
        .iter()
        .map(|&(t, i)| entries[t].chunk_range(i).len())
        .collect();
    let windows: Vec<&[(usize, usize)]> =
        windows_for_threads(&job_bytes, window_bytes() / 2, MAX_WINDOW_BYTES / 2)
            .into_iter()
            .map(|r| &jobs[r])
            .collect();
    let mut output = |window: &[(usize, usize)], decoded: Vec<Vec<u8>>| -> Result<()> {
        for (&(t, i), d) in window.iter().zip(decoded) {
            let (h, total) = hashers[t].get_or_insert_with(|| (blake3::Hasher::new(), 0));
            let hash = crate::profile::time_bytes(crate::profile::Stage::OutputHash, d.len());
            h.update(&d);
            *total += d.len() as u64;
            drop(hash);
            // Timed with what the sink gives the checkout cache (a copy where it keeps a chunk).
            let _t = crate::profile::time_bytes(crate::profile::Stage::Output, d.len());
            sink(t, i, d)?;
            if i + 1 == entries[t].chunks.len() {
                finish(t, &mut hashers)?;
            }
        }
        Ok(())
    };
    if let [window] = windows[..] {
        // One window (a small checkpoint): nothing to overlap, no threads to start.
        return output(window, decode_window(reader, snapshot, entries, window)?);
    }
    let windows = &windows;
    // Rendezvous channels: a stage hands its window on only when the next one takes it.
    let (ahead_tx, ahead_rx) = std::sync::mpsc::sync_channel(0);
    let (decoded_tx, decoded_rx) = std::sync::mpsc::sync_channel::<Result<Vec<Vec<u8>>>>(0);
    std::thread::scope(|s| -> Result<()> {
        s.spawn(move || {
            for window in windows {
                let objects = reader.read_ahead(window.iter().map(|&(t, i)| (entries[t], i)));
                if ahead_tx.send(objects).is_err() {
                    return; // the decoder stopped
                }
            }
        });
        s.spawn(move || {
            for window in windows {
                if let Ok(objects) = ahead_rx.recv() {
                    reader.hand_in_ahead(objects);
                }
                let decoded = decode_window(reader, snapshot, entries, window);
                let failed = decoded.is_err();
                if decoded_tx.send(decoded).is_err() || failed {
                    return; // the output stopped, or this window failed
                }
            }
        });
        // Owned here, so an early return drops it and ends the decoder's wait.
        let decoded_rx = decoded_rx;
        for window in windows {
            let decoded = decoded_rx
                .recv()
                .map_err(|_| Error::decode("checkout", "the decoding thread stopped"))??;
            output(window, decoded)?;
        }
        Ok(())
    })?;
    Ok(())
}
