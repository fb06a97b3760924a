//! Pack files: many objects in one immutable file, so a commit of 10,000 tensors writes one
//! file, not 10,000.
//!
//! ```text
//! "SNAPPACK" [version u32 LE]
//! object*:  [kind u8][len u64 LE][payload]
//! trailer:  entry* = [id 32][kind u8][offset u64 LE][len u64 LE]
//! footer:   [count u64 LE][blake3 of trailer 32]["SNAPEND!"]
//! ```
//! A pack is named after the blake3 of its trailer. Every payload is checked against its id
//! when read, and the trailer against its hash, so any flipped byte is detected.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use memmap2::Mmap;

use super::object_bytes::ObjectBytes;
use super::object_id::ObjectId;
use crate::error::{Error, Result};
use crate::fsutil::{cached, AtomicFile, DirectFile};

const MAGIC: &[u8; 8] = b"SNAPPACK";
const END_MAGIC: &[u8; 8] = b"SNAPEND!";
const PACK_VERSION: u32 = 1;
const HEADER_LEN: u64 = 12;
const ENTRY_LEN: usize = 32 + 1 + 8 + 8;
const FOOTER_LEN: u64 = 8 + 32 + 8;
/// Largest object accepted when reading.
pub const MAX_OBJECT_BYTES: u64 = 1 << 30;

/// The fewest bytes a whole pack holding `objects` distinct objects, the last of whose
/// payloads ends at byte `body_end`, can have: its trailer lists each object and its footer
/// follows. (A pack cut anywhere in its trailer is shorter.)
pub fn min_pack_len(body_end: u64, objects: u64) -> u64 {
    body_end + objects * ENTRY_LEN as u64 + FOOTER_LEN
}

/// What an object holds. The discriminants are on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ObjectKind {
    /// A coded chunk of a tensor.
    Chunk = 1,
    /// A snapshot manifest.
    Manifest = 2,
}

impl TryFrom<u8> for ObjectKind {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        match v {
            1 => Ok(ObjectKind::Chunk),
            2 => Ok(ObjectKind::Manifest),
            other => Err(other),
        }
    }
}

/// Where an object lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackEntry {
    /// Object id.
    pub id: ObjectId,
    /// Object kind.
    pub kind: ObjectKind,
    /// Payload offset in the pack file.
    pub offset: u64,
    /// Payload length.
    pub len: u64,
}

/// Writes a new pack; nothing is visible until [`PackWriter::finish`].
pub struct PackWriter {
    dir: PathBuf,
    file: AtomicFile,
    offset: u64,
    entries: Vec<PackEntry>,
    seen: HashSet<ObjectId>,
}

impl PackWriter {
    /// Starts a pack in `dir`.
    pub fn create(dir: &Path) -> Result<Self> {
        let mut file = AtomicFile::create_direct(&dir.join("incoming.pack"))?;
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&PACK_VERSION.to_le_bytes());
        file.write_all(&header)
            .map_err(|e| Error::io(file.temp_path().to_path_buf(), e))?;
        Ok(PackWriter {
            dir: dir.to_path_buf(),
            file,
            offset: HEADER_LEN,
            entries: Vec::new(),
            seen: HashSet::new(),
        })
    }

    /// Appends an object unless this pack already holds it.
    pub fn add(&mut self, kind: ObjectKind, id: ObjectId, payload: &[u8]) -> Result<()> {
        if !self.seen.insert(id) {
            return Ok(());
        }
        let _t = crate::profile::time_bytes(crate::profile::Stage::PackWrite, payload.len());
        let mut head = [0u8; 9];
        head[0] = kind as u8;
        head[1..].copy_from_slice(&(payload.len() as u64).to_le_bytes());
        let tmp = self.file.temp_path().to_path_buf();
        self.file.write_all(&head).map_err(|e| Error::io(&tmp, e))?;
        self.file
            .write_all(payload)
            .map_err(|e| Error::io(&tmp, e))?;
        self.entries.push(PackEntry {
            id,
            kind,
            offset: self.offset + 9,
            len: payload.len() as u64,
        });
        self.offset += 9 + payload.len() as u64;
        Ok(())
    }

    /// True when the pack holds `id`.
    pub fn contains(&self, id: &ObjectId) -> bool {
        self.seen.contains(id)
    }

    /// Writes the trailer, makes the pack durable and visible, and returns its name and entries.
    pub fn finish(mut self) -> Result<(String, Vec<PackEntry>)> {
        let mut trailer = Vec::with_capacity(self.entries.len() * ENTRY_LEN);
        for e in &self.entries {
            trailer.extend_from_slice(&e.id.0);
            trailer.push(e.kind as u8);
            trailer.extend_from_slice(&e.offset.to_le_bytes());
            trailer.extend_from_slice(&e.len.to_le_bytes());
        }
        let hash = blake3::hash(&trailer);
        let name = ObjectId::from(hash).hex();
        let tmp = self.file.temp_path().to_path_buf();
        let mut footer = (self.entries.len() as u64).to_le_bytes().to_vec();
        footer.extend_from_slice(hash.as_bytes());
        footer.extend_from_slice(END_MAGIC);
        self.file
            .write_all(&trailer)
            .map_err(|e| Error::io(&tmp, e))?;
        self.file
            .write_all(&footer)
            .map_err(|e| Error::io(&tmp, e))?;
        let target = self.dir.join(format!("{name}.pack"));
        // Re-target the atomic file at its content name.
        let PackWriter { mut file, .. } = self;
        file.retarget(&target);
        file.commit()?;
        Ok((name, self.entries))
    }
}

/// Reads objects from one pack file.
pub struct PackReader {
    name: String,
    file: DirectFile,
    /// The pack mapped, where it is read through the page cache: an object the cache holds is
    /// then a range of it, not a copy. Mapped at the first object read, not at open: a reader
    /// opened for the trailer only (a fetch recording its packs, an index rebuild) maps nothing.
    map: OnceLock<Option<Mapping>>,
}

/// A pack's mapping, and whether the page cache held all of it when it was mapped (then its
/// objects are not looked up one by one).
struct Mapping {
    map: Arc<Mmap>,
    whole: bool,
}

impl PackReader {
    /// Opens the pack named `name` in `dir`.
    pub fn open(dir: &Path, name: &str) -> Result<Self> {
        let path = dir.join(format!("{name}.pack"));
        let file = DirectFile::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::CorruptPack {
                pack: name.to_string(),
                problem: "pack file is missing".into(),
            },
            _ => Error::io(&path, e),
        })?;
        Ok(PackReader::with_file(name, file))
    }

    /// Opens the pack file at `path` (a download not yet renamed into place), named `name` in
    /// errors.
    pub fn open_path(path: &Path, name: &str) -> Result<Self> {
        let file = DirectFile::open(path).map_err(|e| Error::io(path, e))?;
        Ok(PackReader::with_file(name, file))
    }

    fn with_file(name: &str, file: DirectFile) -> PackReader {
        PackReader {
            name: name.to_string(),
            map: OnceLock::new(),
            file,
        }
    }

    /// The blake3 of the trailer this pack's footer records: a pack is named after it.
    pub fn trailer_hash(&self) -> Result<ObjectId> {
        let footer = self.footer()?;
        Ok(ObjectId::from_slice(&footer[8..40]).expect("32 bytes"))
    }

    /// How many objects the footer says the pack holds (the trailer is neither read nor
    /// checked: [`PackReader::entries`] does both).
    pub fn object_count(&self) -> Result<u64> {
        let footer = self.footer()?;
        Ok(u64::from_le_bytes(footer[..8].try_into().expect("8 bytes")))
    }

    /// The footer's bytes, from a file long enough for a header and a footer.
    fn footer(&self) -> Result<[u8; FOOTER_LEN as usize]> {
        let len = self.file.len();
        if len < HEADER_LEN + FOOTER_LEN {
            return Err(self.damaged(format!("only {len} bytes")));
        }
        let mut footer = [0u8; FOOTER_LEN as usize];
        self.file
            .read_exact_at(&mut footer, len - FOOTER_LEN)
            .map_err(|e| self.damaged(e.to_string()))?;
        Ok(footer)
    }

    fn damaged(&self, problem: String) -> Error {
        Error::CorruptPack {
            pack: self.name.clone(),
            problem,
        }
    }

    /// Reads one object and checks it hashes to its id.
    pub fn read(&self, entry: &PackEntry) -> Result<ObjectBytes> {
        self.read_checked(entry, true)
    }

    /// Reads one object, checking its record header but not its hash: for a reader that checks
    /// what the object decodes to instead (a checkout hashes every tensor it writes).
    pub fn read_unhashed(&self, entry: &PackEntry) -> Result<ObjectBytes> {
        self.read_checked(entry, false)
    }

    fn read_checked(&self, entry: &PackEntry, hash: bool) -> Result<ObjectBytes> {
        let _t = crate::profile::time(crate::profile::Stage::PackRead);
        let damaged = |problem: String| Error::CorruptObject {
            id: entry.id.hex(),
            pack: self.name.clone(),
            problem,
        };
        if entry.len > MAX_OBJECT_BYTES {
            return Err(damaged(format!(
                "declared length {} is over the limit",
                entry.len
            )));
        }
        // The 9-byte record header before the payload repeats the trailer's kind and length:
        // check it too, so no byte of a pack can be damaged unnoticed.
        let mut head = [0u8; 9];
        if entry.offset < 9 {
            return Err(damaged(format!(
                "offset {} leaves no record header",
                entry.offset
            )));
        }
        let unreadable = |problem: String| {
            damaged(format!(
                "cannot read its record ({} bytes and the 9-byte header) at {}: {problem}",
                entry.len, entry.offset
            ))
        };
        // The record (header and payload) from the mapping where the page cache holds it.
        let mapped = match self.mapping() {
            Some(m) => {
                let end = entry.offset.checked_add(entry.len);
                if end.is_none_or(|end| end > m.map.len() as u64) {
                    return Err(unreadable(format!("the pack ends at {}", m.map.len())));
                }
                let (at, len) = (entry.offset as usize, entry.len as usize);
                (m.whole || cached(&m.map, at - 9..at + len)).then_some((m, at, len))
            }
            None => None,
        };
        let buf = match mapped {
            Some((m, at, len)) => {
                head.copy_from_slice(&m.map[at - 9..at]);
                ObjectBytes::Mapped {
                    map: m.map.clone(),
                    at,
                    len,
                }
            }
            None => ObjectBytes::Owned(
                self.file
                    .read_record_at(&mut head, entry.offset, entry.len as usize)
                    .map_err(|e| unreadable(e.to_string()))?,
            ),
        };
        if head[0] != entry.kind as u8 || head[1..] != entry.len.to_le_bytes() {
            return Err(damaged(
                "record header does not match the pack trailer".into(),
            ));
        }
        if hash && ObjectId::of(&buf) != entry.id {
            return Err(damaged("content does not hash to its id".into()));
        }
        Ok(buf)
    }

    /// The pack's mapping, made at the first call (see [`PackReader::map`]).
    fn mapping(&self) -> Option<&Mapping> {
        self.map
            .get_or_init(|| {
                let map = self.file.map_buffered()?;
                let whole = cached(&map, 0..map.len());
                Some(Mapping {
                    map: Arc::new(map),
                    whole,
                })
            })
            .as_ref()
    }

    /// Reads and verifies the trailer: the list of objects in the pack.
    pub fn entries(&self) -> Result<Vec<PackEntry>> {
        let damaged = |problem: String| self.damaged(problem);
        let footer = self.footer()?;
        let len = self.file.len();
        let mut head = [0u8; HEADER_LEN as usize];
        self.file
            .read_exact_at(&mut head, 0)
            .map_err(|e| damaged(e.to_string()))?;
        if &head[..8] != MAGIC {
            return Err(damaged("bad magic".into()));
        }
        let version = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
        if version != PACK_VERSION {
            return Err(damaged(format!("pack version {version} is not supported")));
        }
        if &footer[40..] != END_MAGIC {
            return Err(damaged("bad end marker (truncated?)".into()));
        }
        let count = u64::from_le_bytes(footer[..8].try_into().expect("8 bytes"));
        let trailer_len = count
            .checked_mul(ENTRY_LEN as u64)
            .filter(|&t| t <= len - HEADER_LEN - FOOTER_LEN)
            .ok_or_else(|| damaged(format!("object count {count} does not fit the file")))?;
        let mut trailer = vec![0u8; trailer_len as usize];
        self.file
            .read_exact_at(&mut trailer, len - FOOTER_LEN - trailer_len)
            .map_err(|e| damaged(e.to_string()))?;
        if blake3::hash(&trailer).as_bytes() != &footer[8..40] {
            return Err(damaged("trailer does not match its hash".into()));
        }
        let body_end = len - FOOTER_LEN - trailer_len;
        trailer
            .chunks_exact(ENTRY_LEN)
            .map(|e| {
                let entry = PackEntry {
                    id: ObjectId::from_slice(&e[..32]).expect("32 bytes"),
                    kind: ObjectKind::try_from(e[32])
                        .map_err(|k| damaged(format!("unknown object kind {k}")))?,
                    offset: u64::from_le_bytes(e[33..41].try_into().expect("8 bytes")),
                    len: u64::from_le_bytes(e[41..49].try_into().expect("8 bytes")),
                };
                let inside = entry.offset >= HEADER_LEN
                    && entry
                        .offset
                        .checked_add(entry.len)
                        .is_some_and(|end| end <= body_end);
                if inside {
                    Ok(entry)
                } else {
                    Err(damaged(format!(
                        "object {} lies outside the pack body",
                        entry.id
                    )))
                }
            })
            .collect()
    }

    /// Hands `each` the objects of a pack whose trailer is lost (truncated, or its footer
    /// damaged) or whose header is damaged, found by walking the records from the end of the
    /// header; the walk stops at the first record that does not fit. The header itself is not
    /// required: a flipped magic byte must not cost the objects after it. Their ids are the
    /// blake3 of what was read: a stray record (trailer bytes taken for one) becomes an object
    /// nothing refers to. Gives back how many.
    pub fn salvage(
        &self,
        mut each: impl FnMut(ObjectKind, ObjectId, &[u8]) -> Result<()>,
    ) -> Result<usize> {
        let len = self.file.len();
        let mut found = 0;
        let mut at = HEADER_LEN;
        let mut record = [0u8; 9];
        while at + 9 <= len && self.file.read_exact_at(&mut record, at).is_ok() {
            let Ok(kind) = ObjectKind::try_from(record[0]) else {
                break;
            };
            let payload_len = u64::from_le_bytes(record[1..].try_into().expect("8 bytes"));
            let offset = at + 9;
            if payload_len > MAX_OBJECT_BYTES || offset + payload_len > len {
                break;
            }
            let mut payload = vec![0u8; payload_len as usize];
            if self.file.read_exact_at(&mut payload, offset).is_err() {
                break;
            }
            each(kind, ObjectId::of(&payload), &payload)?;
            found += 1;
            at = offset + payload_len;
        }
        Ok(found)
    }
}

/// Names of all packs in `dir`.
pub fn list_packs(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".pack") {
            if stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit()) {
                names.push(stem.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How a test reader reads objects, whatever the page cache holds.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Way {
        /// With system calls.
        Reads,
        /// From a mapping, every object.
        Mapped,
        /// From a mapping where the page cache holds the object, else with system calls.
        AsCached,
    }

    /// A reader of pack `name` reading its objects the `way` asked.
    fn reader(dir: &Path, name: &str, way: Way) -> PackReader {
        let mut r = PackReader::open(dir, name).unwrap();
        r.map = OnceLock::from((way != Way::Reads).then(|| {
            let file = std::fs::File::open(dir.join(format!("{name}.pack"))).unwrap();
            Mapping {
                // SAFETY: read-only, and the test changes the file only between readers.
                map: Arc::new(unsafe { Mmap::map(&file) }.unwrap()),
                whole: way == Way::Mapped,
            }
        }));
        r
    }

    #[test]
    fn write_read_and_detect_damage() {
        for way in [Way::Reads, Way::Mapped, Way::AsCached] {
            read_and_detect_damage(way);
        }
    }

    fn read_and_detect_damage(way: Way) {
        let dir = tempfile::tempdir().unwrap();
        let mut w = PackWriter::create(dir.path()).unwrap();
        let a = b"hello".to_vec();
        let b = vec![9u8; 1000];
        w.add(ObjectKind::Chunk, ObjectId::of(&a), &a).unwrap();
        w.add(ObjectKind::Manifest, ObjectId::of(&b), &b).unwrap();
        w.add(ObjectKind::Chunk, ObjectId::of(&a), &a).unwrap();
        let (name, entries) = w.finish().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(list_packs(dir.path()).unwrap(), vec![name.clone()]);
        let r = reader(dir.path(), &name, way);
        assert_eq!(r.entries().unwrap(), entries);
        assert_eq!(*r.read(&entries[1]).unwrap(), b);
        assert_eq!(r.read_unhashed(&entries[0]).unwrap().into_vec(), a);

        // A record past the end of the file (a trailer that lies) is an error, not a panic.
        let file_len = std::fs::metadata(dir.path().join(format!("{name}.pack")))
            .unwrap()
            .len();
        let past_end = [
            (file_len + 100, 10),
            (file_len - 4, 10),
            (20, 1 << 20),
            (u64::MAX - 4, 8),
        ];
        for (offset, len) in past_end {
            let past = PackEntry {
                offset,
                len,
                ..entries[0]
            };
            let err = r.read(&past).unwrap_err().to_string();
            assert!(err.contains("cannot read its record"), "{err}");
            assert!(err.contains(&entries[0].id.hex()), "{err}");
            if way != Way::Reads {
                assert!(
                    err.contains(&format!("the pack ends at {file_len}")),
                    "{err}"
                );
            }
        }

        let path = dir.path().join(format!("{name}.pack"));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(entries[1].offset + 3) as usize] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let r = reader(dir.path(), &name, way);
        assert!(matches!(
            r.read(&entries[1]),
            Err(Error::CorruptObject { .. })
        ));
        assert_eq!(*r.read(&entries[0]).unwrap(), a);
        // A damaged record header (the kind byte before the payload) is caught too.
        let mut header_hit = bytes.clone();
        header_hit[(entries[0].offset - 9) as usize] ^= 1;
        std::fs::write(&path, &header_hit).unwrap();
        let r = reader(dir.path(), &name, way);
        let err = r.read(&entries[0]).unwrap_err().to_string();
        assert!(err.contains("record header does not match"), "{err}");
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let r = reader(dir.path(), &name, way);
        assert!(matches!(r.entries(), Err(Error::CorruptPack { .. })));
    }
}
