//! Ref names and resolution: `HEAD`, `HEAD~N`, branches, tags, full ids and unique id prefixes.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::reader::ObjectReader;
use super::Repo;
use crate::error::{Error, Result};
use crate::store::index::Index;
use crate::store::manifest::Manifest;
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

/// Checks the name of a branch or tag about to be created (`kind`: "branch" or "tag"): a valid
/// name ([`check_ref_name`]) that resolves to nothing else (one that exists already passes). A
/// tag named like a branch (or the reverse), a name that reads as a snapshot id or is a prefix
/// of one, or one starting with a ref namespace would make a ref expression mean one thing
/// today and another after the next commit.
pub(crate) fn check_new_ref_name(index: &Index, name: &str, kind: &'static str) -> Result<()> {
    check_ref_name(name)?;
    let clash = |problem: String| {
        Err(Error::RefShadows {
            kind,
            name: name.to_string(),
            problem,
        })
    };
    if let Some(space) = ["heads/", "tags/", "remotes/"]
        .into_iter()
        .find(|p| name.starts_with(p))
    {
        return clash(format!("`{space}...` names a ref namespace"));
    }
    if name.len() >= 12 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return clash("it reads as a snapshot id".into());
    }
    let (own_key, other, other_key) = match kind {
        "tag" => (tag_key(name), "branch", branch_key(name)),
        _ => (branch_key(name), "tag", tag_key(name)),
    };
    if index.get_ref(&own_key)?.is_some() {
        // Not new: the caller says it exists.
        return Ok(());
    }
    if index.get_ref(&other_key)?.is_some() {
        return clash(format!("a {other} of that name exists"));
    }
    // Refs resolve before id prefixes: `checkout 425ba716` in a deploy script would move.
    if let Ok(id) = resolve_prefix(index, name) {
        return clash(format!(
            "it is the start of snapshot {}'s id, which it names today",
            id.short()
        ));
    }
    // `origin/x` reads as remote origin's branch x once a fetch brings one.
    if let Some((first, _)) = name.split_once('/') {
        if remote_names(index)?.iter().any(|r| r == first) {
            return clash(format!(
                "`{first}/...` names the branches of remote {first}"
            ));
        }
    }
    Ok(())
}

/// The config key of the remotes (`{name: spec}` as JSON; the `remote` module keeps them).
pub(crate) const REMOTES_KEY: &str = "remotes";

/// The names of the configured remotes.
fn remote_names(index: &Index) -> Result<Vec<String>> {
    Ok(match index.config_get(REMOTES_KEY)? {
        Some(json) => serde_json::from_str::<BTreeMap<String, serde_json::Value>>(&json)
            .map(|m| m.into_keys().collect())
            .unwrap_or_default(),
        None => Vec::new(),
    })
}

/// The ref key of a branch.
pub fn branch_key(name: &str) -> String {
    format!("heads/{name}")
}

/// The ref key of a tag.
pub fn tag_key(name: &str) -> String {
    format!("tags/{name}")
}

/// Which snapshot a read names: a ref expression still to resolve, or a snapshot already
/// resolved. The read methods of [`Repo`] take anything that converts into one, so
/// `repo.checkout("HEAD~2", None)` and `repo.checkout(report.snapshot, None)` both work, and an
/// id a caller holds is never written out as text and resolved again.
///
/// ```
/// use snapstore::{CommitOptions, Dtype, Repo, TensorInput};
///
/// let dir = tempfile::tempdir()?;
/// let repo = Repo::init(dir.path().join("repo"))?;
/// let data: Vec<u8> = (0..64).collect();
/// let tensors = [TensorInput { name: "w".into(), dtype: Dtype::U8, shape: vec![64], data: &data }];
/// let report = repo.commit_tensors(&tensors, None, &CommitOptions::default())?;
/// let by_name = repo.checkout("HEAD", None)?; // a ref expression, resolved
/// let by_id = repo.checkout(report.snapshot, None)?; // an id: no lookup by name or prefix
/// let shown = repo.show("HEAD")?; // inspect a snapshot, then read that same one
/// let again = repo.checkout(&shown, None)?; // without reading its manifest a second time
/// assert_eq!(by_name.tensors, by_id.tensors);
/// assert_eq!(again.snapshot, report.snapshot);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub enum Rev<'a> {
    /// `HEAD`, `HEAD~N`, a branch, a tag, `remote/branch`, a full id or a unique id prefix.
    Spec(&'a str),
    /// A snapshot id: no ref lookup and no index scan, only the manifest's own record. Fails
    /// with [`Error::UnknownRef`] when the repository holds no snapshot of that id.
    Id(ObjectId),
    /// A snapshot and its manifest as [`Repo::show`] returned them: nothing is resolved or read
    /// again, so inspecting a snapshot and then checking it out reads its manifest once.
    Shown(ObjectId, Arc<Manifest>),
}

impl<'a> From<&'a str> for Rev<'a> {
    fn from(spec: &'a str) -> Self {
        Rev::Spec(spec)
    }
}

impl<'a> From<&'a String> for Rev<'a> {
    fn from(spec: &'a String) -> Self {
        Rev::Spec(spec)
    }
}

impl From<ObjectId> for Rev<'_> {
    fn from(id: ObjectId) -> Self {
        Rev::Id(id)
    }
}

impl From<&ObjectId> for Rev<'_> {
    fn from(id: &ObjectId) -> Self {
        Rev::Id(*id)
    }
}

impl From<(ObjectId, Arc<Manifest>)> for Rev<'_> {
    fn from((id, manifest): (ObjectId, Arc<Manifest>)) -> Self {
        Rev::Shown(id, manifest)
    }
}

impl From<&(ObjectId, Arc<Manifest>)> for Rev<'_> {
    fn from((id, manifest): &(ObjectId, Arc<Manifest>)) -> Self {
        Rev::Shown(*id, manifest.clone())
    }
}

/// Resolves `rev` to a snapshot id, leaving its manifest in `reader` (an id or a shown snapshot
/// is not looked up by name or prefix; its manifest is read at most once).
pub(crate) fn resolve_rev(index: &Index, reader: &mut ObjectReader, rev: Rev) -> Result<ObjectId> {
    match rev {
        Rev::Spec(spec) => resolve(index, reader, spec),
        Rev::Id(id) => match reader.load_manifest(index, &id) {
            Ok(_) => Ok(id),
            // The error a full id naming no snapshot gets as text.
            Err(Error::MissingObject { .. }) => Err(Error::UnknownRef(id.hex())),
            Err(e) => Err(e),
        },
        Rev::Shown(id, manifest) => {
            reader.insert_manifest(id, manifest);
            Ok(id)
        }
    }
}

/// Splits a ref expression into its base and how many first parents back it goes: `~N`, `~`
/// (one) and `^` (one) as git reads them, any number in a row (`HEAD~2~1`, `main^^`); `None`
/// where a `~` is followed by something other than digits. Ref names hold neither character.
pub(crate) fn split_ancestry(spec: &str) -> Option<(&str, usize)> {
    let mut base = spec;
    let mut back = 0usize;
    loop {
        if let Some(b) = base.strip_suffix('^') {
            (base, back) = (b, back.checked_add(1)?);
            continue;
        }
        let Some((b, n)) = base.rsplit_once('~') else {
            break;
        };
        let n = match n {
            "" => 1,
            n if n.bytes().all(|c| c.is_ascii_digit()) => n.parse().ok()?,
            _ => return None,
        };
        (base, back) = (b, back.checked_add(n)?);
    }
    Some((base, back))
}

/// Resolves a ref expression to a snapshot id.
pub(crate) fn resolve(index: &Index, reader: &mut ObjectReader, spec: &str) -> Result<ObjectId> {
    let (base, back) = split_ancestry(spec).ok_or_else(|| Error::UnknownRef(spec.to_string()))?;
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
    // `heads/NAME`, `tags/NAME`: one kind of ref only (the spelling git users reach for).
    if base.starts_with("heads/") || base.starts_with("tags/") {
        if let Some(id) = index.get_ref(base)? {
            return Ok(id);
        }
    }
    // `origin/main` or `remotes/origin/main`: the branch `main` of remote `origin` as last
    // fetched or pushed; `origin/tags/v1`: its tag (no branch name starts with `tags/`).
    let tracked = base.strip_prefix("remotes/").unwrap_or(base);
    if let Some((remote, rest)) = tracked.split_once('/') {
        let key = match rest.strip_prefix("tags/") {
            Some(tag) => format!("remotes/{remote}/tags/{tag}"),
            None => format!("remotes/{remote}/heads/{rest}"),
        };
        if let Some(id) = index.get_ref(&key)? {
            return Ok(id);
        }
    }
    resolve_prefix(index, base)
}

/// The error for an id prefix several snapshots share, naming the first few of them.
pub(crate) fn ambiguous(prefix: String, matches: &[ObjectId]) -> Error {
    let mut first: Vec<String> = matches.iter().map(|id| id.short()).collect();
    first.sort();
    first.truncate(4);
    Error::AmbiguousRef {
        prefix,
        count: matches.len(),
        first,
    }
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
        _ => Err(ambiguous(prefix, &matches)),
    }
}

impl Repo {
    /// Resolves a ref expression (`HEAD`, `HEAD~2`, `main`, a tag, an id prefix) to a snapshot;
    /// given an id, checks that it names a snapshot here.
    pub fn resolve<'a>(&self, rev: impl Into<Rev<'a>>) -> Result<ObjectId> {
        let index = self.index_read()?;
        let mut reader = self.reader();
        resolve_rev(&index, &mut reader, rev.into())
    }

    /// Creates a branch at `at` (default HEAD's snapshot, or empty when there is none).
    pub fn create_branch(&self, name: &str, at: Option<&str>) -> Result<Option<ObjectId>> {
        let index = self.index()?;
        check_new_ref_name(&index, name, "branch")?;
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
        let index = self.index()?;
        check_new_ref_name(&index, name, "tag")?;
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

    /// A repository of 40 snapshots of one U32 tensor, element `i` of snapshot `k` being
    /// `i * step + k`, and their ids in commit order.
    fn forty_commits(step: u32) -> (tempfile::TempDir, Repo, Vec<ObjectId>) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::init(dir.path()).unwrap();
        let mut ids = Vec::new();
        for k in 0..40u32 {
            let data: Vec<u8> = (0..64u32)
                .flat_map(|i| (i * step + k).to_le_bytes())
                .collect();
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
        (dir, repo, ids)
    }

    /// An ambiguous prefix names the first few snapshots it matches, in order, and how to pick.
    #[test]
    fn an_ambiguous_prefix_lists_what_it_matches() {
        let ids: Vec<ObjectId> = (0..6u8).rev().map(|k| ObjectId([k; 32])).collect();
        let e = ambiguous("0000".into(), &ids[4..]).to_string();
        let want = "ref \"0000\" is ambiguous: it matches 2 snapshots (000000000000, \
                    010101010101): give more digits";
        assert_eq!(e, want);
        let e = ambiguous("0".into(), &ids).to_string();
        assert!(
            e.contains("6 snapshots (000000000000, 010101010101, 020202020202, 030303030303, ...)"),
            "{e}"
        );
    }

    /// `~N`, `~` and `^` go back first parents, any number in a row; anything else after a `~`
    /// is not a ref expression.
    #[test]
    fn ancestry_suffixes_add_up() {
        for (spec, want) in [
            ("HEAD", Some(("HEAD", 0))),
            ("HEAD~", Some(("HEAD", 1))),
            ("HEAD~3", Some(("HEAD", 3))),
            ("main^^", Some(("main", 2))),
            ("v1~2~1^", Some(("v1", 4))),
            ("HEAD^~10", Some(("HEAD", 11))),
            ("ab12cd~0", Some(("ab12cd", 0))),
            ("HEAD~x", None),
            ("HEAD~-1", None),
            ("HEAD~99999999999999999999999", None),
        ] {
            assert_eq!(split_ancestry(spec), want, "{spec}");
        }
        let (_dir, repo, ids) = forty_commits(4);
        for spec in ["HEAD~3", "HEAD~1~2", "HEAD^^^", "main~2^"] {
            assert_eq!(repo.resolve(spec).unwrap(), ids[36], "{spec}");
        }
        assert_eq!(repo.resolve("HEAD~39").unwrap(), ids[0]);
        let e = repo.resolve("HEAD~38~2").unwrap_err().to_string();
        assert!(e.contains("HEAD~38~2"), "{e}");
    }

    /// A new tag or branch may not take a name another ref, an id or a namespace reads as; the
    /// explicit `heads/`, `tags/` forms name one kind only.
    #[test]
    fn new_refs_shadow_nothing_and_explicit_forms_resolve() {
        let (_dir, repo, ids) = forty_commits(3);
        repo.create_branch("exp", Some("HEAD~1")).unwrap();
        repo.create_tag("v1", "HEAD~2").unwrap();
        let shadows = |e: Error| matches!(e, Error::RefShadows { .. });
        let e = repo.create_tag("exp", "HEAD").unwrap_err().to_string();
        assert_eq!(e, "cannot name a tag \"exp\": a branch of that name exists");
        let e = repo
            .create_tag(&ids[1].short(), "HEAD")
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("it reads as a snapshot id"), "{e}");
        // A shorter prefix of a snapshot's id names that snapshot today; any other hex name
        // names nothing yet, and may be taken.
        let prefix = &ids[1].hex()[..8];
        let e = repo.create_tag(prefix, "HEAD").unwrap_err().to_string();
        let names = format!(
            "it is the start of snapshot {}'s id, which it names today",
            ids[1].short()
        );
        assert!(e.ends_with(&names), "{e}");
        assert!(shadows(
            repo.create_branch(&ids[0].hex()[..4], None).unwrap_err()
        ));
        let free = (0..u32::MAX)
            .map(|n| format!("{n:08x}"))
            .find(|n| ids.iter().all(|id| !id.hex().starts_with(n.as_str())))
            .unwrap();
        repo.create_tag(&free, "HEAD").unwrap();
        let e = repo.create_branch("tags/v2", None).unwrap_err().to_string();
        assert!(e.ends_with("`tags/...` names a ref namespace"), "{e}");
        assert!(shadows(repo.create_branch("v1", None).unwrap_err()));
        assert!(shadows(repo.switch_new_branch("v1").unwrap_err()));
        let short = ids[0].short();
        assert!(shadows(repo.create_tag(&short, "HEAD").unwrap_err()));
        assert!(shadows(
            repo.create_branch(&ids[0].hex(), None).unwrap_err()
        ));
        for spaced in ["tags/x", "heads/x", "remotes/o/x"] {
            assert!(shadows(repo.create_tag(spaced, "HEAD").unwrap_err()));
        }
        let onto_tag = CommitOptions {
            branch: Some("v1".into()),
            ..CommitOptions::default()
        };
        let data = [0u8; 4];
        let t = TensorInput {
            name: "w".into(),
            dtype: crate::Dtype::U32,
            shape: vec![1],
            data: &data,
        };
        let e = repo.commit_tensors(&[t], None, &onto_tag).unwrap_err();
        assert!(
            shadows(e),
            "a commit does not start a branch named like a tag"
        );
        // Short hex names and existing refs stay usable.
        repo.create_tag("2024", "HEAD").unwrap();
        assert_eq!(repo.resolve("2024").unwrap(), ids[39]);
        assert!(matches!(
            repo.create_tag("v1", "HEAD").unwrap_err(),
            Error::RefExists(_)
        ));
        assert_eq!(repo.resolve("heads/exp").unwrap(), ids[38]);
        assert_eq!(repo.resolve("tags/v1").unwrap(), ids[37]);
        assert_eq!(repo.resolve("tags/v1~1").unwrap(), ids[36]);
        assert!(repo.resolve("tags/exp").is_err());
        assert!(repo.resolve("heads/v1").is_err());
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
        let (_dir, repo, ids) = forty_commits(7);
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

    /// A checkout by a snapshot id (or by what `show` returned) is not resolved through the
    /// index's object records at all: the id is the snapshot, only its manifest and chunks are
    /// looked up by key. The same checkout by the id written as text reads a record to resolve.
    #[test]
    fn checkout_by_id_reads_no_object_record() {
        let (dir, repo, ids) = forty_commits(5);
        let out = dir.path().join("out.safetensors");
        for id in &ids {
            let by_text = repo.checkout(&id.hex(), None).unwrap();
            let n = records_read(|| {
                let by_id = repo.checkout(*id, None).unwrap();
                assert_eq!(by_id.snapshot, *id);
                assert_eq!(by_id.tensors, by_text.tensors);
            });
            assert_eq!(n, 0, "checkout by id read {n} object records");
            let n = records_read(|| {
                let shown = repo.show(id).unwrap();
                assert_eq!(shown.0, *id);
                let r = repo.checkout_to_file(shown, &out, None).unwrap();
                assert_eq!(r.snapshot, *id);
            });
            assert_eq!(n, 0, "show and checkout read {n} object records");
            let n = records_read(|| {
                repo.checkout(&id.hex(), None).unwrap();
            });
            assert!(
                n >= 1,
                "the text form resolves through the records it names"
            );
        }
        // An id that names no snapshot fails as its text form does.
        let chunk = repo.show(ids[0]).unwrap().1.tensors[0].chunks[0].id;
        for missing in [ObjectId::of(b"no such snapshot"), chunk] {
            let by_id = repo.checkout(missing, None).unwrap_err();
            let by_text = repo.checkout(&missing.hex(), None).unwrap_err();
            assert_eq!(by_id.to_string(), by_text.to_string());
        }
    }
}
