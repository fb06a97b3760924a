//! What a remote holds, all under its prefix:
//!
//! ```text
//! SNAPSTORE-REMOTE        {"snapstore_remote": 1}: the layout version (created once, never changed)
//! packs/<name>.pack       a local pack, byte for byte (immutable, named by the blake3 of its trailer)
//! snapshots/<id>          a snapshot record: where its manifest and every chunk its manifest lists
//!                         lie (pack, offset, length), and the snapshots it needs (parents, delta
//!                         references); written only after those packs, and after the records of
//!                         the snapshots it needs
//! refs/heads/<branch>     "<snapshot id>\n", moved only by compare-and-swap
//! refs/tags/<tag>
//! ```
//!
//! A record lets a reader fetch one tensor's chunks by range without the packs' other bytes, and
//! a fetch learn which packs to download. Records and refs are not named by their hash, but
//! nothing in them is used unverified: every object they locate is checked against its id.

use serde::{Deserialize, Serialize};

use super::store::RemoteStore;
use crate::error::{Error, Result};
use crate::store::object_id::ObjectId;

/// The layout version this build writes and reads.
pub const REMOTE_FORMAT: u32 = 1;
/// The object holding it.
pub(crate) const FORMAT_OBJECT: &str = "SNAPSTORE-REMOTE";
/// Largest snapshot record accepted (about a million chunks).
const MAX_RECORD_BYTES: usize = 256 << 20;

#[derive(Serialize, Deserialize)]
struct FormatObject {
    snapstore_remote: u32,
}

/// The object path of a pack.
pub(crate) fn pack_object(name: &str) -> String {
    format!("packs/{name}.pack")
}

/// The object path of a snapshot record.
pub(crate) fn record_object(id: &ObjectId) -> String {
    format!("snapshots/{}", id.hex())
}

/// The object path of a ref (`heads/NAME`, `tags/NAME`).
pub(crate) fn ref_object(key: &str) -> String {
    format!("refs/{key}")
}

/// Where one object lies on the remote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RemoteObject {
    pub pack: String,
    pub offset: u64,
    pub len: u64,
}

/// A snapshot record (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotRecord {
    /// Record format ([`REMOTE_FORMAT`]).
    pub snapstore_record: u32,
    /// The snapshot (its manifest's id).
    pub snapshot: ObjectId,
    /// Snapshots this one needs: its parents and the snapshots its tensors are coded against.
    pub needs: Vec<ObjectId>,
    /// Packs the objects lie in.
    pub packs: Vec<String>,
    /// `(object id, index into packs, payload offset, payload length)`: the manifest and every
    /// chunk its tensors list.
    pub objects: Vec<(ObjectId, u32, u64, u64)>,
}

impl SnapshotRecord {
    /// Where `id` lies, if this record places it.
    pub fn locate(&self, id: &ObjectId) -> Option<RemoteObject> {
        self.objects
            .iter()
            .find(|(o, ..)| o == id)
            .map(|&(_, p, offset, len)| RemoteObject {
                pack: self.packs[p as usize].clone(),
                offset,
                len,
            })
    }

    /// Parses and checks a record read from `object`.
    pub fn parse(bytes: &[u8], url: &str, object: &str, id: &ObjectId) -> Result<SnapshotRecord> {
        let bad = |problem: String| Error::RemoteCorrupt {
            url: url.to_string(),
            object: object.to_string(),
            problem,
        };
        let r: SnapshotRecord = serde_json::from_slice(bytes)
            .map_err(|e| bad(format!("not a snapshot record: {e}")))?;
        if r.snapstore_record > REMOTE_FORMAT {
            return Err(bad(format!(
                "record format {} is newer than this snapstore ({REMOTE_FORMAT})",
                r.snapstore_record
            )));
        }
        if r.snapshot != *id {
            return Err(bad(format!("record is for snapshot {}", r.snapshot)));
        }
        let names_ok = r
            .packs
            .iter()
            .all(|p| p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit()));
        if !names_ok {
            return Err(bad("a pack name is not 64 hex digits".into()));
        }
        if r.objects.iter().any(|&(_, p, _, len)| {
            p as usize >= r.packs.len() || len > crate::store::pack::MAX_OBJECT_BYTES
        }) {
            return Err(bad(
                "an object lies in no listed pack, or is too large".into()
            ));
        }
        if r.locate(id).is_none() {
            return Err(bad("the record does not place its own manifest".into()));
        }
        Ok(r)
    }
}

/// Checks the remote's layout version; with `create`, writes it when the remote is empty.
/// Fails naming the remote when it holds no snapstore layout (and `create` is off) or a newer one.
pub(crate) fn check_format(store: &RemoteStore, create: bool) -> Result<()> {
    let found = match store.get(FORMAT_OBJECT)? {
        Some(v) => v.bytes,
        None if create => {
            let body = serde_json::to_vec(&FormatObject {
                snapstore_remote: REMOTE_FORMAT,
            })
            .expect("serializes");
            // Two first pushers at once: whoever loses the create reads the winner's.
            store.create(FORMAT_OBJECT, body.into())?;
            return check_format(store, false);
        }
        None => {
            return Err(Error::RemoteLayout {
                url: store.url.clone(),
                problem: format!(
                    "holds no snapstore repository (no {FORMAT_OBJECT} object); push to it first"
                ),
            })
        }
    };
    let f: FormatObject = serde_json::from_slice(&found).map_err(|e| Error::RemoteCorrupt {
        url: store.url.clone(),
        object: FORMAT_OBJECT.into(),
        problem: e.to_string(),
    })?;
    if f.snapstore_remote > REMOTE_FORMAT {
        return Err(Error::RemoteLayout {
            url: store.url.clone(),
            problem: format!(
                "remote layout version {} is newer than this snapstore reads ({REMOTE_FORMAT})",
                f.snapstore_remote
            ),
        });
    }
    Ok(())
}

/// Reads the record of `id`; `None` when the remote has none.
pub(crate) fn read_record(store: &RemoteStore, id: &ObjectId) -> Result<Option<SnapshotRecord>> {
    let object = record_object(id);
    match store.get(&object)? {
        Some(v) if v.bytes.len() > MAX_RECORD_BYTES => Err(Error::RemoteCorrupt {
            url: store.url.clone(),
            object,
            problem: format!(
                "{} bytes, over the {MAX_RECORD_BYTES}-byte limit",
                v.bytes.len()
            ),
        }),
        Some(v) => SnapshotRecord::parse(&v.bytes, &store.url, &object, id).map(Some),
        None => Ok(None),
    }
}

/// Reads one object located by a record and checks it hashes to `id`.
pub(crate) fn read_located(
    store: &RemoteStore,
    id: &ObjectId,
    at: &RemoteObject,
) -> Result<Vec<u8>> {
    let object = pack_object(&at.pack);
    let bytes = store.get_range(&object, at.offset..at.offset + at.len)?;
    verify(store, &object, id, &bytes)?;
    Ok(bytes.to_vec())
}

/// Checks that `bytes`, read from `object`, hash to `id`.
pub(crate) fn verify(store: &RemoteStore, object: &str, id: &ObjectId, bytes: &[u8]) -> Result<()> {
    if ObjectId::of(bytes) != *id {
        return Err(Error::RemoteCorrupt {
            url: store.url.clone(),
            object: format!("{id} in {object}"),
            problem: "content does not hash to its id".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> (ObjectId, SnapshotRecord) {
        let id = ObjectId::of(b"manifest");
        let r = SnapshotRecord {
            snapstore_record: REMOTE_FORMAT,
            snapshot: id,
            needs: vec![ObjectId::of(b"parent")],
            packs: vec!["ab".repeat(32)],
            objects: vec![(id, 0, 12, 8), (ObjectId::of(b"chunk"), 0, 29, 5)],
        };
        (id, r)
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_named() {
        let (id, r) = record();
        let bytes = serde_json::to_vec(&r).unwrap();
        assert_eq!(SnapshotRecord::parse(&bytes, "u", "o", &id).unwrap(), r);
        assert_eq!(
            r.locate(&ObjectId::of(b"chunk")),
            Some(RemoteObject {
                pack: "ab".repeat(32),
                offset: 29,
                len: 5
            })
        );
        let damaged = |r: &SnapshotRecord, other: &ObjectId| {
            let bytes = serde_json::to_vec(r).unwrap();
            SnapshotRecord::parse(&bytes, "s3://b/p", "snapshots/x", other)
                .unwrap_err()
                .to_string()
        };
        let err = damaged(&r, &ObjectId::of(b"other"));
        assert!(
            err.contains("s3://b/p")
                && err.contains("snapshots/x")
                && err.contains("record is for"),
            "{err}"
        );
        let mut bad = r.clone();
        bad.packs[0] = "../../etc/passwd".into();
        assert!(damaged(&bad, &id).contains("not 64 hex digits"));
        let mut bad = r.clone();
        bad.objects[1].1 = 3;
        assert!(damaged(&bad, &id).contains("no listed pack"));
        let mut bad = r.clone();
        bad.objects.remove(0);
        assert!(damaged(&bad, &id).contains("does not place its own manifest"));
        let mut bad = r;
        bad.snapstore_record = REMOTE_FORMAT + 1;
        assert!(damaged(&bad, &id).contains("newer than this snapstore"));
        let err = SnapshotRecord::parse(b"{not json", "u", "o", &id)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a snapshot record"), "{err}");
    }
}
