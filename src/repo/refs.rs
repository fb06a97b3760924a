//! Ref names and resolution: `HEAD`, `HEAD~N`, branches, tags, full ids and unique id prefixes.

use super::reader::ObjectReader;
use super::Repo;
use crate::error::{Error, Result};
use crate::store::index::Index;
use crate::store::object_id::ObjectId;
use crate::store::pack::ObjectKind;

/// Named refs with their snapshots.
pub type RefList = Vec<(String, ObjectId)>;

/// Checks a branch or tag name: no path tricks, no control characters, bounded length.
pub fn check_ref_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with(['/', '-', '.'])
        && !name.ends_with(['/', '.'])
        && !name.contains("..")
        && !name.contains("//")
        && name != "HEAD"
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadRefName(name.chars().take(80).collect()))
    }
}

/// The ref key of a branch.
pub fn branch_key(name: &str) -> String {
    format!("heads/{name}")
}

/// The ref key of a tag.
pub fn tag_key(name: &str) -> String {
    format!("tags/{name}")
}

/// Resolves a ref expression to a snapshot id.
pub(crate) fn resolve(index: &Index, reader: &mut ObjectReader, spec: &str) -> Result<ObjectId> {
    let (base, back) = match spec.rsplit_once('~') {
        Some((b, n)) => {
            let n: usize = if n.is_empty() {
                1
            } else {
                n.parse().map_err(|_| Error::UnknownRef(spec.to_string()))?
            };
            (b, n)
        }
        None => (spec, 0),
    };
    let mut id = resolve_base(index, base)?;
    for _ in 0..back {
        let m = reader.load_manifest(index, &id)?;
        id = *m
            .parents
            .first()
            .ok_or_else(|| Error::UnknownRef(spec.to_string()))?;
    }
    Ok(id)
}

fn resolve_base(index: &Index, base: &str) -> Result<ObjectId> {
    if base == "HEAD" {
        let branch = index.head_branch()?;
        return index
            .get_ref(&branch_key(&branch))?
            .ok_or(Error::EmptyBranch(branch));
    }
    for key in [branch_key(base), tag_key(base)] {
        if let Some(id) = index.get_ref(&key)? {
            return Ok(id);
        }
    }
    // `origin/main`: the branch `main` of remote `origin` as last fetched or pushed.
    if let Some((remote, branch)) = base.split_once('/') {
        if let Some(id) = index.get_ref(&format!("remotes/{remote}/heads/{branch}"))? {
            return Ok(id);
        }
    }
    resolve_prefix(index, base)
}

fn resolve_prefix(index: &Index, prefix: &str) -> Result<ObjectId> {
    let hex_ok =
        prefix.len() >= 4 && prefix.len() <= 64 && prefix.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex_ok {
        return Err(Error::UnknownRef(prefix.to_string()));
    }
    let prefix = prefix.to_ascii_lowercase();
    let matches: Vec<ObjectId> = index
        .locations_with_prefix(&prefix)?
        .into_iter()
        .filter(|l| l.entry.kind == ObjectKind::Manifest)
        .map(|l| l.entry.id)
        .collect();
    match matches.len() {
        0 => Err(Error::UnknownRef(prefix)),
        1 => Ok(matches[0]),
        count => Err(Error::AmbiguousRef { prefix, count }),
    }
}

impl Repo {
    /// Resolves a ref expression (`HEAD`, `HEAD~2`, `main`, a tag, an id prefix) to a snapshot.
    pub fn resolve(&self, spec: &str) -> Result<ObjectId> {
        let index = self.index_read()?;
        let mut reader = self.reader();
        resolve(&index, &mut reader, spec)
    }

    /// Creates a branch at `at` (default HEAD's snapshot, or empty when there is none).
    pub fn create_branch(&self, name: &str, at: Option<&str>) -> Result<Option<ObjectId>> {
        check_ref_name(name)?;
        let index = self.index()?;
        let mut reader = self.reader();
        let target = match at {
            Some(spec) => Some(resolve(&index, &mut reader, spec)?),
            None => match resolve(&index, &mut reader, "HEAD") {
                Ok(id) => Some(id),
                Err(Error::EmptyBranch(_)) => None,
                Err(e) => return Err(e),
            },
        };
        let key = branch_key(name);
        if index.get_ref(&key)?.is_some() {
            return Err(Error::RefExists(name.to_string()));
        }
        if let Some(id) = target {
            index
                .cas_ref_durably(&key, None, Some(id))?
                .map_err(|_| Error::RefExists(name.to_string()))?;
        }
        Ok(target)
    }

    /// Points HEAD at an existing branch (or at HEAD's own branch before its first snapshot).
    /// Fails with [`Error::UnknownBranch`] for any other name: a typo must not leave HEAD on a
    /// branch nobody created. [`Repo::switch_new_branch`] creates one.
    pub fn switch_branch(&self, name: &str) -> Result<()> {
        check_ref_name(name)?;
        let index = self.index()?;
        if index.get_ref(&branch_key(name))?.is_none() && index.head_branch()? != name {
            let mut known: Vec<String> = index
                .list_refs("heads/")?
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            known.truncate(10);
            if known.is_empty() {
                known.push("none yet".into());
            }
            return Err(Error::UnknownBranch {
                name: name.to_string(),
                known: known.join(", "),
            });
        }
        set_head(&index, name)
    }

    /// Creates branch `name` at HEAD's snapshot (empty before the first one) and points HEAD at
    /// it. Fails with [`Error::RefExists`] when the branch exists.
    pub fn switch_new_branch(&self, name: &str) -> Result<Option<ObjectId>> {
        check_ref_name(name)?;
        let created = self.create_branch(name, None)?;
        let index = self.index()?;
        if created.is_none() && index.head_branch()? == name {
            return Err(Error::RefExists(name.to_string()));
        }
        set_head(&index, name)?;
        Ok(created)
    }

    /// The branch HEAD names.
    pub fn head_branch(&self) -> Result<String> {
        self.index_read()?.head_branch()
    }

    /// Creates a tag at `at`.
    pub fn create_tag(&self, name: &str, at: &str) -> Result<ObjectId> {
        check_ref_name(name)?;
        let index = self.index()?;
        let mut reader = self.reader();
        let id = resolve(&index, &mut reader, at)?;
        index
            .cas_ref_durably(&tag_key(name), None, Some(id))?
            .map_err(|_| Error::RefExists(name.to_string()))?;
        Ok(id)
    }

    /// Deletes a tag or branch ref (the snapshots stay until `gc`) and returns the snapshot it
    /// named, so a caller can say how to restore it. Refuses the branch HEAD names
    /// ([`Error::DeleteCurrentBranch`]): its next commit would silently start a new root.
    pub fn delete_ref(&self, key: &str) -> Result<ObjectId> {
        let index = self.index()?;
        if let Some(branch) = key.strip_prefix("heads/") {
            if index.head_branch()? == branch {
                return Err(Error::DeleteCurrentBranch(branch.to_string()));
            }
        }
        let old = index
            .get_ref(key)?
            .ok_or_else(|| Error::UnknownRef(key.to_string()))?;
        index
            .cas_ref_durably(key, Some(old), None)?
            .map_err(|_| Error::UnknownRef(key.to_string()))?;
        Ok(old)
    }

    /// Branches and tags with their snapshots.
    pub fn list_refs(&self) -> Result<(RefList, RefList)> {
        let index = self.index_read()?;
        Ok((index.list_refs("heads/")?, index.list_refs("tags/")?))
    }
}

/// Points HEAD at `name` durably (a failed flush puts the previous branch back).
fn set_head(index: &Index, name: &str) -> Result<()> {
    let previous = index.head_branch().ok();
    index.set_head_branch(name)?;
    index.flush_or_undo(|i| {
        if let Some(p) = previous {
            let _ = i.set_head_branch(&p);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::index::OBJECT_RECORDS_READ;
    use crate::{CommitOptions, TensorInput};

    #[test]
    fn ref_names() {
        for good in ["main", "exp/lr-3e-4", "v1.0", "a_b"] {
            assert!(check_ref_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../x",
            "/abs",
            "a//b",
            "a..b",
            "-x",
            "HEAD",
            "a b",
            "x\0",
            "end/",
            &"x".repeat(201),
        ] {
            assert!(check_ref_name(bad).is_err(), "{bad:?}");
        }
    }

    fn records_read(f: impl FnOnce()) -> usize {
        OBJECT_RECORDS_READ.with(|c| c.set(0));
        f();
        OBJECT_RECORDS_READ.with(|c| c.get())
    }

    /// Resolving a full id or a prefix reads the index records under that prefix, not every
    /// object record (40 snapshots and their chunks here).
    #[test]
    fn ids_resolve_without_scanning_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::init(dir.path()).unwrap();
        let mut ids = Vec::new();
        for k in 0..40u32 {
            let data: Vec<u8> = (0..64u32).flat_map(|i| (i * 7 + k).to_le_bytes()).collect();
            let t = TensorInput {
                name: "w".into(),
                dtype: crate::Dtype::U32,
                shape: vec![64],
                data: &data,
            };
            let r = repo
                .commit_tensors(&[t], None, &CommitOptions::default())
                .unwrap();
            ids.push(r.snapshot);
        }
        let total = records_read(|| {
            repo.index().unwrap().all_locations().unwrap();
        });
        assert!(total > 40, "{total} objects");
        for id in &ids {
            let full = id.hex();
            let n = records_read(|| assert_eq!(repo.resolve(&full).unwrap(), *id));
            assert!(n <= 1, "full id read {n} of {total} records");
            let n = records_read(|| assert_eq!(repo.resolve(&full[..9]).unwrap(), *id));
            assert!(n <= 2, "9-digit prefix read {n} of {total} records");
        }
    }
}
