//! The crate's one error type. Every variant names what failed (a file, a ref, an object, a
//! tensor) so a user can act on the message alone.

use std::path::PathBuf;

/// What is wrong with a safetensors file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SafetensorsProblem {
    /// Fewer than the 8 bytes that give the header length.
    #[error("file is {0} bytes, too short for the 8-byte header length")]
    TooShort(u64),
    /// The header length points past the end of the file.
    #[error("header length {header} goes past the end of the file ({file} bytes)")]
    HeaderPastEnd {
        /// Declared header length.
        header: u64,
        /// File length.
        file: u64,
    },
    /// The file is of another format, known by its first bytes.
    #[error("it is {0}")]
    OtherFormat(&'static str),
    /// The header is larger than the format allows.
    #[error("header of {0} bytes is over the 100 MB limit")]
    HeaderTooLarge(u64),
    /// The header is not UTF-8 JSON of the expected shape.
    #[error("malformed header JSON: {0}")]
    MalformedHeader(String),
    /// A dtype name that is not known.
    #[error("tensor {tensor:?} has unknown dtype {dtype:?}")]
    UnknownDtype {
        /// Tensor name.
        tensor: String,
        /// The unknown spelling.
        dtype: String,
    },
    /// Shape and dtype disagree with the data offsets.
    #[error("tensor {tensor:?}: shape {shape:?} of {dtype} needs {expected} bytes but its offsets give {actual}")]
    LengthMismatch {
        /// Tensor name.
        tensor: String,
        /// Declared shape.
        shape: Vec<u64>,
        /// Declared dtype.
        dtype: String,
        /// Bytes the shape needs.
        expected: String,
        /// Bytes between the offsets.
        actual: u64,
    },
    /// Offsets leave a gap, overlap, or run backwards.
    #[error("tensor {tensor:?}: data offsets [{start}, {end}) do not follow the previous tensor (expected start {expected_start})")]
    BadOffsets {
        /// Tensor name.
        tensor: String,
        /// Declared start.
        start: u64,
        /// Declared end.
        end: u64,
        /// Where the previous tensor ended.
        expected_start: u64,
    },
    /// The data section is not exactly covered by the tensors (truncated file or trailing bytes).
    #[error(
        "tensors cover {covered} data bytes but the file holds {actual} (truncated or padded file)"
    )]
    DataSizeMismatch {
        /// Bytes covered by the offsets.
        covered: u64,
        /// Bytes actually present after the header.
        actual: u64,
    },
    /// A tensor name that snapstore refuses (empty, NUL, too long, or `__metadata__`).
    #[error("invalid tensor name {}: {reason}", shown_name(.name))]
    BadTensorName {
        /// The name.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
}

/// Every way a snapstore operation can fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- input and output files ----
    /// Reading or writing a user file failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error (in the message, not a separate `source`, so a printed error chain
        /// does not repeat it).
        error: std::io::Error,
    },
    /// A repository was opened in a process `fork()`ed from one that had opened a repository.
    #[error("this process was forked from process {parent}, which had opened a repository: the index's threads do not survive a fork; open repositories only in processes started with spawn or forkserver (multiprocessing.get_context(\"spawn\")), or only after the fork")]
    ForkedProcess {
        /// The process that opened a repository before the fork.
        parent: u32,
    },
    /// A file was written, truncated or replaced in place while it was read (committed,
    /// compared, searched): what was read may mix two versions, so nothing came of it.
    #[error("{path}: changed while it was being read ({what}): nothing was {undone}; try again once whatever writes it has finished")]
    InputChanged {
        /// The file.
        path: PathBuf,
        /// How it changed.
        what: String,
        /// What did not happen: `stored`, `compared`, ...
        undone: &'static str,
    },
    /// A tensor the caller holds in memory was written while it was committed (an optimizer
    /// step on another thread): the chunks may mix two versions and disagree with the hash, so
    /// nothing was stored.
    #[error("tensor \"{tensor}\" was written while it was being committed: nothing was stored; commit a copy of it, or commit once whatever writes it (an optimizer step on another thread?) has finished")]
    TensorChanged {
        /// The tensor's name.
        tensor: String,
    },
    /// A safetensors file failed validation.
    #[error("{path}: not a valid safetensors file: {problem}")]
    BadSafetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: Box<SafetensorsProblem>,
    },
    /// A checkpoint directory that cannot be committed as one snapshot (no safetensors file in
    /// it, a tensor in two shards, a shard index naming what is not there).
    #[error("{dir}: {problem}")]
    BadCheckpointDir {
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A tensor handed to the library is inconsistent.
    #[error("tensor {}: {problem}", shown_name(.tensor))]
    BadTensor {
        /// Tensor name.
        tensor: String,
        /// What is wrong.
        problem: Box<SafetensorsProblem>,
    },

    // ---- repository ----
    /// No repository where one was expected.
    #[error("no snapstore repository at {0} (run `snapstore init` first)")]
    NoRepository(PathBuf),
    /// No `.snapstore` in a directory or any above it (no `--repo` given).
    #[error("no snapstore repository (.snapstore) in {0} or any directory above it (run `snapstore init` first, or pass --repo)")]
    NoRepositoryAbove(PathBuf),
    /// `init` on a directory that already holds a repository.
    #[error("a snapstore repository already exists at {0}")]
    RepositoryExists(PathBuf),
    /// The repository was written by a newer snapstore.
    #[error(
        "repository {path} has format version {found}; this snapstore reads up to {supported}"
    )]
    FormatTooNew {
        /// Repository directory.
        path: PathBuf,
        /// Version on disk.
        found: u32,
        /// Highest version this build reads.
        supported: u32,
    },
    /// Another process held the index lock for too long.
    #[error("repository {path} is busy: another snapstore process held its index for {waited_ms} ms; retry")]
    Busy {
        /// Repository directory.
        path: PathBuf,
        /// How long we waited.
        waited_ms: u64,
    },
    /// A command that changes the repository, run by a user who can only read it.
    #[error("{path}: permission denied: this user can only read the repository, and this command changes it")]
    ReadOnly {
        /// The index directory that could not be opened for writing.
        path: PathBuf,
    },
    /// A change asked of a handle that holds the index open for reading
    /// ([`crate::Repo::holding_index`]).
    #[error("{path}: this handle holds the repository index open for reading; make the change through a handle that does not (Repo::holding_index)")]
    IndexHeld {
        /// Repository directory.
        path: PathBuf,
    },
    /// The sled index failed.
    #[error("repository index: {0} (if the index is damaged, `snapstore fsck --rebuild-index` rebuilds it from the packs and refs.log)")]
    Index(#[from] sled::Error),
    /// The index refers to something the object store lacks, or holds garbage.
    #[error("repository index is inconsistent: {0} (run `snapstore fsck --rebuild-index`)")]
    IndexInconsistent(String),

    // ---- refs ----
    /// A ref that names no snapshot.
    #[error("unknown ref {0:?}")]
    UnknownRef(String),
    /// A snapshot id prefix that matches more than one snapshot.
    #[error("ref {prefix:?} is ambiguous: it matches {count} snapshots ({}{}): give more digits", .first.join(", "), if *count > first.len() { ", ..." } else { "" })]
    AmbiguousRef {
        /// The prefix given.
        prefix: String,
        /// How many snapshots it matches.
        count: usize,
        /// The first few it matches, as 12-digit ids in order.
        first: Vec<String>,
    },
    /// A branch or tag name that cannot be used.
    #[error("invalid ref name {0:?}: use at most 200 letters, digits, '.', '_', '-' and '/' (no '..', no leading '/' or '-')")]
    BadRefName(String),
    /// A new branch or tag name another name would shadow, or that would shadow one.
    #[error("cannot name a {kind} {name:?}: {problem}")]
    RefShadows {
        /// `branch` or `tag`.
        kind: &'static str,
        /// The name.
        name: String,
        /// What it clashes with.
        problem: String,
    },
    /// Creating a tag or branch that exists.
    #[error("ref {0:?} already exists")]
    RefExists(String),
    /// `switch` to a branch that does not exist.
    #[error("no branch {name:?} (branches: {known}); `snapstore switch -c {name}` creates it")]
    UnknownBranch {
        /// The name given.
        name: String,
        /// Existing branches (the first ten), comma-separated.
        known: String,
    },
    /// Deleting the branch HEAD names.
    #[error("cannot delete branch {0:?}: HEAD is on it (switch to another branch first)")]
    DeleteCurrentBranch(String),
    /// The branch has no snapshot yet.
    #[error("branch {0:?} has no snapshots yet")]
    EmptyBranch(String),

    // ---- objects ----
    /// An object is missing from every pack.
    #[error("object {id} is missing from the repository")]
    MissingObject {
        /// Object id (hex).
        id: String,
    },
    /// An object's bytes do not hash to its id, or cannot be decoded.
    #[error("object {id} in {pack} is damaged: {problem}")]
    CorruptObject {
        /// Object id (hex).
        id: String,
        /// Pack file holding it.
        pack: String,
        /// What is wrong.
        problem: String,
    },
    /// A tensor asked for needs a damaged object (its own chunk, or one of its delta chain's).
    #[error(
        "tensor {tensor:?} of snapshot {snapshot} cannot be read: {damage}; the snapshot's \
             other tensors can (checkout --tensor NAME; Python: names=[...]), and `snapstore \
             fsck` names every snapshot the damage breaks"
    )]
    DamagedTensor {
        /// The tensor.
        tensor: String,
        /// Its snapshot (12 hex digits).
        snapshot: String,
        /// The damage found.
        damage: Box<Error>,
    },
    /// A pack file cannot be read.
    #[error("pack {pack} is damaged: {problem}")]
    CorruptPack {
        /// Pack file.
        pack: String,
        /// What is wrong.
        problem: String,
    },
    /// Checkout produced bytes that do not match the manifest's hash.
    #[error("tensor {tensor:?} of snapshot {snapshot} decoded to bytes whose blake3 does not match the manifest")]
    HashMismatch {
        /// Tensor name.
        tensor: String,
        /// Snapshot id.
        snapshot: String,
    },
    /// A tensor the snapshot does not have.
    #[error("snapshot {snapshot} has no tensor {tensor:?}")]
    TensorNotFound {
        /// Tensor name.
        tensor: String,
        /// Snapshot id.
        snapshot: String,
    },
    /// A stored chunk or manifest could not be decoded.
    #[error("cannot decode {what}: {problem}")]
    Decode {
        /// What was being decoded.
        what: String,
        /// Why it failed.
        problem: String,
    },

    // ---- remotes ----
    /// `remote add` with a URL snapstore cannot use.
    #[error("invalid remote URL {url:?}: {problem}")]
    BadRemoteUrl {
        /// The URL given.
        url: String,
        /// Why it cannot be used.
        problem: String,
    },
    /// A remote name that is not configured.
    #[error(
        "no remote named {name:?} (remotes: {known}); `snapstore remote add {name} URL` adds it"
    )]
    UnknownRemote {
        /// The name given.
        name: String,
        /// Configured remotes, comma-separated.
        known: String,
    },
    /// `remote add` with a name already in use.
    #[error("remote {0:?} already exists (`snapstore remote remove {0}` first)")]
    RemoteExists(String),
    /// Talking to a remote failed (network, permissions, a missing bucket, ...).
    #[error("remote {url}: {}{problem}", if object.is_empty() { String::new() } else { format!("{object}: ") })]
    RemoteIo {
        /// The remote's URL.
        url: String,
        /// The object (path inside the remote) the request was about.
        object: String,
        /// What the store answered.
        problem: String,
    },
    /// An object read from a remote is not what its name or record promises.
    #[error("remote {url}: object {object} is damaged: {problem}")]
    RemoteCorrupt {
        /// The remote's URL.
        url: String,
        /// The object (path inside the remote, and the object id where there is one).
        object: String,
        /// What is wrong.
        problem: String,
    },
    /// A remote whose store does not do conditional writes: its refs cannot move by
    /// compare-and-swap, so snapstore will not move them.
    #[error("remote {url} does not support conditional writes ({problem}); snapstore moves remote refs only by compare-and-swap (If-None-Match / If-Match), so it pushes nothing there")]
    RemoteNoConditionalWrites {
        /// The remote's URL.
        url: String,
        /// What the store did or said.
        problem: String,
    },
    /// A push that would drop snapshots from a remote branch.
    #[error("push to {url} refused: {branch} on the remote ({remote}) is not an ancestor of what you push ({local}); it would drop {dropped} snapshot(s) from the remote branch. Pull first, or push --force to drop them")]
    NonFastForward {
        /// The remote's URL.
        url: String,
        /// Branch or tag on the remote.
        branch: String,
        /// The remote's snapshot (short id).
        remote: String,
        /// The snapshot pushed (short id).
        local: String,
        /// Snapshots the remote branch would no longer reach.
        dropped: usize,
    },
    /// A push that would move a tag the remote already has elsewhere.
    #[error("push to {url} refused: tag {tag} already exists on the remote (at {remote}), and you push it at {local}; tags do not move: push --force to move it, or use a new tag name")]
    RemoteTagExists {
        /// The remote's URL.
        url: String,
        /// The tag.
        tag: String,
        /// The remote's snapshot (short id).
        remote: String,
        /// The snapshot pushed (short id).
        local: String,
    },
    /// A directory remote's ref lock held for too long (another push, or one that was killed).
    #[error("remote {url}: ref lock {lock} has been held for {waited_ms} ms: another push is running, or one was killed (then remove the file)")]
    RemoteRefLocked {
        /// The remote's URL.
        url: String,
        /// The lock file.
        lock: String,
        /// How long we waited.
        waited_ms: u64,
    },
    /// A remote ref that moved between the read a delete was judged on and the delete.
    #[error("remote {url}: {key} is at {found}, not at {expected} as last read here; nothing was deleted. Fetch, look, and delete again if it should still go")]
    RemoteRefMoved {
        /// The remote's URL.
        url: String,
        /// The ref (`heads/NAME`, `tags/NAME`).
        key: String,
        /// The snapshot it was read at (short id).
        expected: String,
        /// What it points to now (short id, or "nothing").
        found: String,
    },
    /// A pull or push between a local and a remote branch that share no snapshot.
    #[error("{branch} here ({local}) and on {url} ({remote}) share no snapshot: they are separate histories, and neither is put on top of the other. To keep both, fetch and name theirs as a branch of its own (snapstore fetch, then snapstore branch NAME REMOTE/{branch}); to replace the remote's, push --force")]
    UnrelatedHistories {
        /// The remote's URL.
        url: String,
        /// The branch.
        branch: String,
        /// The local snapshot (short id).
        local: String,
        /// The remote's snapshot (short id).
        remote: String,
    },
    /// A ref the remote does not have.
    #[error("remote {url} has no branch, tag or snapshot {spec:?}")]
    UnknownRemoteRef {
        /// The remote's URL.
        url: String,
        /// The ref asked for.
        spec: String,
    },
    /// A local ref that another process moved while a push or pull was updating it.
    #[error("local ref {key} moved to {found} while this command ran; nothing of it was lost, run the command again")]
    LocalRefMoved {
        /// The ref (`heads/NAME`).
        key: String,
        /// What it points to now (short id, or "nothing").
        found: String,
    },
    /// The remote holds no snapstore layout, or a newer one.
    #[error("remote {url}: {problem}")]
    RemoteLayout {
        /// The remote's URL.
        url: String,
        /// What is wrong.
        problem: String,
    },

    /// A commit or checkout stopped by its caller ([`crate::Repo::with_interrupt`]).
    #[error("interrupted: nothing was stored or changed")]
    Interrupted,
    /// A `gc` running beside a commit removed an object the commit reuses, each time it tried.
    #[error("a gc running beside this commit removed object {object} that it reuses (tried {attempts} times): nothing was committed; commit again once the gc has finished")]
    RemovedUnderCommit {
        /// The object, as hex.
        object: String,
        /// How many times the commit was planned and coded.
        attempts: usize,
    },

    /// A `gc` running beside a commit removed the commit's own new pack before it was recorded
    /// (a `--grace` shorter than the commit takes), each time it tried.
    #[error("a gc running beside this commit removed its new pack {pack} before it was recorded (tried {attempts} times; a gc --grace shorter than a commit takes?): nothing was committed; commit again")]
    PackRemovedUnderCommit {
        /// The pack's name.
        pack: String,
        /// How many times the commit was planned and coded.
        attempts: usize,
    },

    // ---- arguments ----
    /// A command-line or API argument is invalid.
    #[error("invalid {what}: {problem}")]
    InvalidArgument {
        /// The argument.
        what: &'static str,
        /// Why.
        problem: String,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error: source,
        }
    }

    /// An invalid argument.
    pub fn invalid(what: &'static str, problem: impl Into<String>) -> Self {
        Error::InvalidArgument {
            what,
            problem: problem.into(),
        }
    }

    /// A chunk the codec could not decode (or code): the codec's error, with what it was
    /// working on. The message is the codec's own, behind `cannot decode {what}: `.
    /// (Any displayable error, so this module imports nothing from the codec.)
    pub(crate) fn codec(what: impl Into<String>, problem: impl std::fmt::Display) -> Self {
        Error::decode(what, problem.to_string())
    }

    /// A decode failure.
    pub fn decode(what: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Decode {
            what: what.into(),
            problem: problem.into(),
        }
    }
}

/// Result with the crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A tensor name for a message: quoted, cut at 80 characters (a 5,000-byte name, refused for
/// its length, was printed whole).
fn shown_name(name: &str) -> String {
    let cut: String = name.chars().take(80).collect();
    if cut.len() < name.len() {
        format!("{cut:?}...")
    } else {
        format!("{cut:?}")
    }
}
