"""``snapstore.Repo``: a typed Python face over the Rust library."""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import _checks, _native
from ._memory import release_free_memory
from ._tensors import (check_device, check_framework, checkout_targets, copy_staged, host_views,
                       mark_written, meta_strings, python_evaluator, state_dict_of, to_tensor)
from .errors import InvalidInputError, NotFoundError

PathLike = Union[str, bytes, "os.PathLike[str]"]
Evaluate = Callable[[Dict[str, Any]], float]


@dataclass(frozen=True)
class CommitReport:
    """What a commit did: the fields of ``snapstore commit --json`` (for ``bound="auto"``,
    also ``searched``, ``research_every``, ``commits_since_search``, ``search`` and
    ``recheck``, the search reports as dicts)."""

    snapshot: str
    parent: Optional[str]
    branch: str
    #: The bound the snapshot was committed under: the one asked for, else the branch's
    #: configured bound (:meth:`Repo.config`), else ``"lossless"``.
    bound: str
    tensors: int
    logical_bytes: int
    stored_bytes: int
    deduplicated: int
    deltas: int
    keyframes: int
    seconds: float
    searched: Optional[bool] = None
    research_every: Optional[int] = None
    commits_since_search: Optional[int] = None
    search: Optional[Dict[str, Any]] = None
    recheck: Optional[Dict[str, Any]] = None
    #: Files of a committed checkpoint directory the snapshot does not keep (see
    #: :meth:`Repo.commit_path`); a subdirectory ends in ``/``.
    left_out: List[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """Logical bytes / bytes this commit added (inf when everything was deduplicated)."""
        return self.logical_bytes / self.stored_bytes if self.stored_bytes else float("inf")

    def to_dict(self) -> Dict[str, Any]:
        """The report as the CLI's JSON object."""
        return {k: v for k, v in self.__dict__.items()}


class StateDict(dict):
    """A checked-out state_dict: a plain ``dict`` of name -> tensor (``model.load_state_dict``
    takes it) that also carries the snapshot id, its meta and its safetensors metadata.

    It pickles (``torch.save``) as the ``OrderedDict`` of its tensors that ``model.state_dict()``
    pickles as, without those attributes; ``copy.copy`` and ``copy.deepcopy`` keep them."""

    snapshot: str
    meta: Dict[str, str]
    metadata: Optional[Dict[str, str]]
    #: After ``checkout(into=..., strict=False)``: the names ``into`` holds and the snapshot
    #: does not, and those the snapshot holds and ``into`` does not (as ``load_state_dict``
    #: reports them); empty otherwise.
    missing_keys: List[str]
    unexpected_keys: List[str]

    @classmethod
    def of(cls, items: Any, snapshot: str, metadata: Optional[Mapping[str, str]],
           meta: Mapping[str, str], missing_keys: Sequence[str] = (),
           unexpected_keys: Sequence[str] = ()) -> "StateDict":
        """The tensors ``items`` (name, tensor pairs) of snapshot ``snapshot``."""
        out = cls(items)
        out.snapshot = snapshot
        out.meta = dict(meta)
        out.metadata = None if metadata is None else dict(metadata)
        out.missing_keys = list(missing_keys)
        out.unexpected_keys = list(unexpected_keys)
        return out

    def __reduce_ex__(self, protocol: int) -> Any:
        # torch.load's default unpickler (weights_only) builds no class of ours, nor a plain
        # dict, but does build an OrderedDict; the file then loads without snapstore too.
        return OrderedDict, (list(self.items()),)

    # copy would otherwise take __reduce_ex__'s OrderedDict: a copy stays a StateDict.
    def __copy__(self) -> "StateDict":
        out = type(self)(self)
        out.__dict__.update(self.__dict__)
        return out

    def __deepcopy__(self, memo: Dict[int, Any]) -> "StateDict":
        out = type(self)()
        memo[id(self)] = out
        out.update((name, copy.deepcopy(t, memo)) for name, t in self.items())
        out.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return out


def _cache_sizes(tip: Optional[int], checkout: Optional[int]) -> Any:
    """The cache sizes in bytes as given, checked: ``None`` keeps the library's default."""
    return tuple(_checks.whole(n, f"{what} (a cache size in bytes)", 0, _checks.USIZE_MAX)
                 for n, what in ((tip, "tip_cache_bytes"), (checkout, "checkout_cache_bytes")))


def _bounds(bounds: Optional[Sequence[float]]) -> Optional[List[float]]:
    if bounds is None:
        return None
    if isinstance(bounds, (str, bytes)) or not hasattr(bounds, "__iter__"):
        raise InvalidInputError(f"bounds must be a list of numbers, not {_checks.shown(bounds)}")
    return [_checks.real(b, "each of bounds") for b in bounds]


def _auto_settings(evaluate: Optional[Evaluate], framework: str, max_loss: float, alpha: float,
                   bounds: Optional[Sequence[float]], research_every: Optional[int]
                   ) -> Tuple[Callable[..., float], Tuple[float, float, Optional[List[float]],
                                                           Optional[int]]]:
    """A ``bound="auto"`` commit's evaluator and settings, checked, as the native call takes
    them."""
    if evaluate is None:
        raise InvalidInputError('bound="auto" needs evaluate=callable(state_dict) -> accuracy')
    return python_evaluator(evaluate, framework), (
        _checks.real(max_loss, "max_loss"), _checks.real(alpha, "alpha"), _bounds(bounds),
        _checks.whole(research_every, "research_every", 1, _checks.U32_MAX))


class Repo:
    """A snapstore repository: every commit of a state_dict is a snapshot, coded against its
    parent exactly or within an error bound.

    Open one with ``Repo(path)`` (or create it with ``Repo.init(path)``); use it as a context
    manager or call ``close()``. A Repo may be shared between threads; the GIL is released while
    tensors are coded, so other Python threads (a training loop) keep running.

    A handle keeps the reconstruction of its last commit (``tip_cache_bytes``), so the next
    commit need not decode its parent's delta chain, and the chunks of its last checkout
    (``checkout_cache_bytes``), so checking out the next snapshot of a run need not decode its
    chain. Each defaults to an eighth of the machine's memory (or of the cgroup's limit), at
    least 64 MiB: a model that fits is kept whole, a copy of it in memory while the handle is
    open (a commit larger than the tip cache is not kept; a checkout larger than its cache keeps
    a part). 0 keeps nothing.
    """

    def __init__(
        self,
        path: PathLike,
        *,
        tip_cache_bytes: Optional[int] = None,
        checkout_cache_bytes: Optional[int] = None,
        _native_repo: Optional[Any] = None,
    ) -> None:
        if _native_repo is None:
            _native_repo = _native.Repo.open(
                _checks.path(path), False, *_cache_sizes(tip_cache_bytes, checkout_cache_bytes))
        self._repo = _native_repo
        # Kept past close(): the path is what reopens the repository after a ``with`` block.
        self._path = os.fspath(_native_repo.path)

    @classmethod
    def init(
        cls,
        path: PathLike,
        *,
        tip_cache_bytes: Optional[int] = None,
        checkout_cache_bytes: Optional[int] = None,
    ) -> "Repo":
        """Creates a repository in ``path`` (a directory that may exist but must not hold one)
        and opens it, with the caches sized as in ``Repo(path, ...)``. Raises
        ``InvalidInputError`` if one exists there."""
        native = _native.Repo.open(
            _checks.path(path), True, *_cache_sizes(tip_cache_bytes, checkout_cache_bytes))
        return cls(path, _native_repo=native)

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Closes the handle; later calls raise ``ClosedRepositoryError``. Idempotent. The
        memory of its caches is handed back to the OS (with glibc: ``malloc_trim``) unless
        another thread is still working on the handle."""
        was_open = not self._repo.closed
        self._repo.close()
        if was_open:
            release_free_memory()

    @property
    def closed(self) -> bool:
        return bool(self._repo.closed)

    @property
    def path(self) -> str:
        """The repository's directory (also after ``close()``, to open it again)."""
        return self._path

    def __enter__(self) -> "Repo":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<snapstore.Repo {self.path!r}{' closed' if self.closed else ''}>"

    def __reduce_ex__(self, protocol: int) -> Any:
        # An open handle, like a file object: copy.copy used to share it (closing the copy
        # closed the original) and pickle failed naming a native class.
        raise TypeError(
            f"a snapstore.Repo ({self.path!r}) is an open handle and cannot be copied or "
            "pickled: open another with snapstore.Repo(path), and give another process the path")

    # -- commit and search ------------------------------------------------------------------

    def commit(
        self,
        state_dict: Mapping[str, Any],
        message: str = "",
        bound: Optional[str] = None,
        meta: Optional[Mapping[str, Any]] = None,
        branch: Optional[str] = None,
        evaluate: Optional[Evaluate] = None,
        *,
        metadata: Optional[Mapping[str, str]] = None,
        max_loss: float = 0.002,
        alpha: float = 0.5,
        bounds: Optional[Sequence[float]] = None,
        research_every: Optional[int] = None,
    ) -> CommitReport:
        """Stores ``state_dict`` as a new snapshot on ``branch`` (default: HEAD's branch).

        ``state_dict`` maps names to torch tensors (every dtype safetensors has: bool, the
        integer types, float16, bfloat16, float32/64, the float8 types, complex64) or numpy
        arrays; a module's ``state_dict()`` is taken when a module is given. Contiguous CPU
        tensors are read in place, without a copy. Non-contiguous tensors are made contiguous
        and CUDA (or other device) tensors are copied to the host once, before coding. Sparse,
        quantized and nested tensors are refused, naming the tensor, and so is nested state
        such as an optimizer's state_dict (``snapstore.dcp`` saves that). Do not modify the tensors from
        another thread while the commit runs.

        ``bound``: ``None`` (the branch's configured bound, see :meth:`config`, else lossless;
        the report's ``bound`` says which was used), ``"lossless"``,
        ``"rel:EPS"`` (every element within ``EPS * |x|``), ``"abs:EPS"``, or ``"auto"``: the
        bound is searched with ``evaluate`` (see :meth:`search`; ``max_loss``, ``alpha``,
        ``bounds`` and ``research_every`` tune it) and remembered for the branch. If the
        evaluator raises or returns NaN, nothing is committed and ``EvaluatorError`` is raised
        (``KeyboardInterrupt`` and ``SystemExit`` pass through unchanged).

        ``meta``: key/value pairs stored with the snapshot (values become strings; a 0-d tensor
        or array its value);
        ``metadata``: the safetensors ``__metadata__`` a file checkout would carry.
        """
        message = _checks.text(message, "message")
        branch = _checks.text(branch, "branch", optional=True)
        views, framework = host_views(state_dict)
        meta_s = meta_strings(meta, "meta")
        metadata_s = meta_strings(metadata, "metadata") if metadata is not None else None
        if bound == "auto":
            raw = self._repo.commit_auto(views, metadata_s, message, meta_s, branch, *_auto_settings(
                evaluate, framework, max_loss, alpha, bounds, research_every))
        else:
            if evaluate is not None:
                raise InvalidInputError('evaluate= is used only with bound="auto"')
            if bound is not None and not isinstance(bound, str):
                raise InvalidInputError(f"bound must be a string such as 'rel:0.01', not {bound!r}")
            raw = self._repo.commit(views, metadata_s, message, bound, meta_s, branch)
        return self._reported(CommitReport(**json.loads(raw)), branch)

    def _reported(self, report: CommitReport, branch: Optional[str]) -> CommitReport:
        """``report``, after a warning where ``branch`` named a branch that did not exist
        while others did: a typo of one starts a history of its own (a full keyframe)."""
        if branch is not None and report.parent is None:
            others = [b for b, _ in self._repo.list_refs()[0] if b != report.branch]
            if others:
                warnings.warn(
                    f"branch {report.branch!r} did not exist; snapshot {report.snapshot[:12]} "
                    f"starts it, with no parent (branches here: {_listed(others)}). "
                    f"repo.branch(name) branches from HEAD instead.", stacklevel=3)
        return report

    def commit_path(
        self,
        path: PathLike,
        message: str = "",
        bound: Optional[str] = None,
        meta: Optional[Mapping[str, Any]] = None,
        branch: Optional[str] = None,
        evaluate: Optional[Evaluate] = None,
        *,
        kind: str = "auto",
        max_loss: float = 0.002,
        alpha: float = 0.5,
        bounds: Optional[Sequence[float]] = None,
        research_every: Optional[int] = None,
        framework: str = "pt",
    ) -> CommitReport:
        """Stores what ``path`` holds as a new snapshot, as ``snapstore commit PATH`` does: a
        safetensors file (its header kept, so :meth:`checkout_to` writes it back byte for byte
        when lossless); a checkpoint directory, as ``model.save_pretrained(path)`` writes one
        (its ``*.safetensors`` shards and its JSON files up to 1 MiB, such as ``config.json``
        and the shard index; ``left_out`` in the report names what else was there); or a frame
        sequence (a directory of PNGs, a ``.npy``). ``bound``, ``meta`` and ``branch`` as in
        :meth:`commit`. ``bound="auto"`` (a checkpoint only) searches the bound with
        ``evaluate(candidate_state_dict) -> accuracy`` as :meth:`commit` does, every tensor of
        the file or of all the directory's shards in one state_dict (``framework="pt"``: torch
        tensors, ``"np"``: numpy arrays). ``kind`` (``"tensors"`` or ``"frames"``, as
        ``--kind``) decides for a directory holding safetensors files and more PNGs, which
        ``"auto"`` refuses. A file or directory that cannot be committed raises
        ``InvalidInputError`` (or ``StorageIOError``) naming it, and nothing is stored."""
        message = _checks.text(message, "message")
        branch = _checks.text(branch, "branch", optional=True)
        if bound is not None and not isinstance(bound, str):
            raise InvalidInputError(f"bound must be a string such as 'rel:0.01', not {bound!r}")
        if kind not in ("auto", "tensors", "frames"):
            raise InvalidInputError(f"kind must be 'auto', 'tensors' or 'frames', not {kind!r}")
        meta_s = meta_strings(meta, "meta")
        if bound == "auto":
            check_framework(framework)
            raw = self._repo.commit_path_auto(_checks.path(path), message, meta_s, branch, kind,
                                              *_auto_settings(evaluate, framework, max_loss,
                                                              alpha, bounds, research_every))
        else:
            if evaluate is not None:
                raise InvalidInputError('evaluate= is used only with bound="auto"')
            raw = self._repo.commit_path(_checks.path(path), message, bound, meta_s, branch, kind)
        return self._reported(CommitReport(**json.loads(raw)), branch)

    def search(
        self,
        state_dict: Mapping[str, Any],
        evaluate: Evaluate,
        max_loss: float = 0.002,
        alpha: float = 0.5,
        bounds: Optional[Sequence[float]] = None,
        *,
        parent: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Chooses the relative bound for committing ``state_dict`` on top of ``parent``
        (default: HEAD) without writing anything (Delta-DNN's search).

        ``evaluate(candidate_state_dict) -> accuracy`` is called on the original tensors and on
        candidates exactly as a commit under each bound would store them; the candidate is a
        fresh state_dict of the same framework as the input, which the callable may keep. The
        choice maximises ``alpha * ratio/best_ratio + (1 - alpha) * (1 - loss/max_loss)`` among
        bounds losing at most ``max_loss`` accuracy; lossless when none does. ``bounds`` lists
        the candidate relative bounds (default: 16 log-spaced from 1e-4 to 0.2).

        Returns the report of ``snapstore search --json`` as a dict (``chosen``, ``candidates``,
        ``baseline_accuracy``, ``evaluations``, ...). A failing or non-finite evaluator raises
        ``EvaluatorError``, with the callable's exception as ``__cause__``; its
        ``KeyboardInterrupt`` or ``SystemExit`` is raised unchanged.
        """
        if not callable(evaluate):
            raise InvalidInputError("evaluate must be a callable(state_dict) -> accuracy")
        views, framework = host_views(state_dict)
        raw = self._repo.search(views, python_evaluator(evaluate, framework),
                                _checks.real(max_loss, "max_loss"), _checks.real(alpha, "alpha"),
                                _bounds(bounds), _checks.text(parent, "parent", optional=True))
        return json.loads(raw)

    # -- checkout ---------------------------------------------------------------------------

    def checkout(
        self,
        ref: str = "HEAD",
        names: Optional[Sequence[str]] = None,
        framework: str = "pt",
        device: str = "cpu",
        into: Any = None,
        strict: bool = True,
    ) -> StateDict:
        """The tensors of snapshot ``ref`` (HEAD, HEAD~N, a branch, a tag or an id prefix), or
        only ``names``, as a dict for ``model.load_state_dict`` (in the order a safetensors
        file lays them out, as ``safetensors.torch.load_file`` returns them).

        ``into`` (a module, or a mapping of names to torch tensors or numpy arrays) checks the
        snapshot out into those tensors instead, in place, as ``load_state_dict`` would copy
        it: an evaluation loop allocates nothing, and each byte is written once. Contiguous
        host tensors are written directly; others (on a device, strided, tied to one already
        written) through a host buffer and a copy. Each must have its tensor's dtype and shape.
        With ``strict`` the snapshot and ``into`` must hold the same names; without, the names
        both hold are checked out and the others left alone: the result's ``missing_keys``
        (in ``into`` only) and ``unexpected_keys`` (in the snapshot only) list the others, and
        no name in common raises ``InvalidInputError``. Returns ``into``'s tensors. On
        any error, nothing has been written if it names a mismatch, and what the tensors hold
        is unspecified if it is raised while decoding (``CorruptionError``).

        ``framework="pt"`` gives torch tensors, ``"np"`` numpy arrays (bfloat16 and float8 as
        ml_dtypes types; without ml_dtypes installed, they raise ``InvalidInputError``). The
        tensors own the decoded buffers: no copy is made after decoding
        (on the CPU). ``device`` other than ``"cpu"`` moves each tensor there. Every tensor is
        checked against the blake3 hash recorded at commit; a mismatch raises
        ``CorruptionError`` naming the tensor.
        """
        ref = _checks.text(ref, "ref")
        if into is not None:
            if names is not None:
                raise InvalidInputError("give names or into, not both: into names the tensors")
            return self._checkout_into(ref, state_dict_of(into, "into"), strict)
        if framework not in ("pt", "np"):
            raise InvalidInputError(f"framework must be 'pt' or 'np', not {framework!r}")
        check_device(device, framework)
        names = None if names is None else _checks.names(names, "names")
        snapshot, metadata, meta, items = self._repo.checkout(ref, names)
        return StateDict.of(
            ((name, to_tensor(name, st, shape, buf, framework, device))
             for name, st, shape, buf in items),
            snapshot, metadata, meta)

    def checkout_to(self, path: PathLike, ref: str = "HEAD",
                    names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
        """Writes snapshot ``ref`` (or only the tensors ``names``) as a safetensors file at
        ``path``, replaced atomically; a snapshot of a checkpoint directory is written as that
        directory (see ``snapstore checkout``: each file byte for byte when lossless, and a
        directory holding shards the snapshot lacks is refused). A symbolic link at ``path`` is
        replaced by the file, never written through (a hub cache's link leads to a blob other
        revisions share); the report's ``replaced_link`` says what it named. A file replaced
        keeps its permissions. Returns ``snapstore checkout --json``'s report (``path``,
        ``tensors``, ``bytes``, ...)."""
        names = None if names is None else _checks.names(names, "names")
        return json.loads(self._repo.checkout_to(_checks.text(ref, "ref"), _checks.path(path),
                                                 names))

    def _checkout_into(self, ref: str, into: Mapping, strict: bool) -> StateDict:
        snapshot, held = self._repo.tensor_names(ref)
        held_set = set(held)
        wanted = set(into)
        absent = [n for n in into if n not in held_set]
        unwanted = [n for n in held if n not in wanted]
        if strict and (absent or unwanted):
            raise InvalidInputError(
                f"snapshot {snapshot[:12]} does not hold the tensors into does"
                + (f"; missing from the snapshot: {_listed(absent)}" if absent else "")
                + (f"; missing from into: {_listed(unwanted)}" if unwanted else "")
                + " (strict=False checks out the tensors both hold)"
                + _prefix_hint(held, list(into)))
        if (absent or unwanted) and len(absent) == len(into):
            raise InvalidInputError(
                f"snapshot {snapshot[:12]} and into have no tensor name in common, so "
                f"strict=False would load nothing: the snapshot holds {_listed(held, 4)}; "
                f"into holds {_listed(absent, 4)}" + _prefix_hint(held, absent))
        chosen = {n: t for n, t in into.items() if n in held_set}
        targets, staged = checkout_targets(chosen)
        try:
            # By id: a commit between the two calls cannot move what ref names.
            snapshot, metadata, meta = self._repo.checkout_into(snapshot, targets)
        finally:
            mark_written(targets)  # a decode error may leave them written in part
        copy_staged(staged)
        return StateDict.of(chosen.items(), snapshot, metadata, meta, absent, unwanted)

    # -- history ----------------------------------------------------------------------------

    def log(self, ref: Optional[str] = None, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        """Snapshots reachable from ``ref`` (default HEAD), newest first: the dicts of
        ``snapstore log --json`` (id, parents, message, time, branch, meta, bound, tensors,
        logical_bytes, stored_bytes)."""
        return json.loads(self._repo.log(_checks.text(ref, "ref", optional=True),
                                         _checks.whole(limit, "limit", 0, _checks.USIZE_MAX)))

    def show(self, ref: str = "HEAD") -> Dict[str, Any]:
        """``{"id", "logical_bytes", "stored_bytes", "manifest"}`` of ``ref``, as
        ``snapstore show --json``."""
        return json.loads(self._repo.show(_checks.text(ref, "ref")))

    def diff(self, a: str, b: str) -> List[Dict[str, Any]]:
        """Per-tensor differences between snapshots ``a`` and ``b`` (name, status, elements,
        max_abs, max_rel, changed_fraction), as ``snapstore diff --json``: for a tensor on one
        side only, or whose dtype or shape changed, ``max_abs`` and ``max_rel`` are ``None``."""
        return json.loads(self._repo.diff(_checks.text(a, "a"), _checks.text(b, "b")))

    def stats(self) -> Dict[str, Any]:
        """Repository totals, as ``snapstore stats --json``."""
        return json.loads(self._repo.stats())

    def gc(self, *, dry_run: bool = False, grace: int = 3600) -> Dict[str, Any]:
        """Removes the objects no branch, tag or remote-tracking ref reaches (a deleted branch's,
        say), keeping packs younger than ``grace`` seconds (a commit in flight writes one);
        with ``dry_run`` only reports them. Returns ``snapstore gc --json``'s report."""
        return json.loads(self._repo.gc(bool(dry_run), _checks.whole(
            grace, "grace", 0, _checks.USIZE_MAX, optional=False)))

    def fsck(self, *, quick: bool = False) -> Dict[str, Any]:
        """Re-hashes every object and, unless ``quick``, decodes every tensor against its
        blake3. Returns the ``report`` of ``snapstore fsck --json`` (``problems`` names each
        damaged object and what it breaks; ``unreferenced_snapshots`` what no ref reaches) with
        ``clean`` added beside its fields (the CLI nests it: ``{clean, report}``). Raises nothing
        for damage: check ``clean``."""
        report = json.loads(self._repo.fsck(bool(quick)))
        return {"clean": not report["problems"], **report}

    # -- refs -------------------------------------------------------------------------------

    def tag(self, name: Optional[str] = None, ref: str = "HEAD", *, delete: bool = False
            ) -> Union[Dict[str, str], str, None]:
        """With no name: ``{tag: snapshot id}``. With a name: creates the tag at ``ref`` and
        returns its snapshot id, or deletes it (``delete=True``)."""
        if name is None:
            return dict(self._repo.list_refs()[1])
        name = _checks.text(name, "name")
        if delete:
            self._repo.delete_ref(f"tags/{name}")
            return None
        return self._repo.create_tag(name, _checks.text(ref, "ref"))

    def branch(self, name: Optional[str] = None, ref: Optional[str] = None, *,
               delete: bool = False) -> Union[Dict[str, str], str, None]:
        """With no name: ``{branch: snapshot id}``. With a name: creates the branch at ``ref``
        (default HEAD) and returns its snapshot id, or deletes it (``delete=True``). A branch
        starts at a snapshot: in an empty repository this raises ``NotFoundError``, and
        ``commit(state_dict, branch=name)`` starts the branch instead."""
        if name is None:
            return dict(self._repo.list_refs()[0])
        name = _checks.text(name, "name")
        if delete:
            self._repo.delete_ref(f"heads/{name}")
            return None
        made = self._repo.create_branch(name, _checks.text(ref, "ref", optional=True))
        if made is None:  # the library creates no branch without a snapshot to point at
            raise NotFoundError(
                f"no snapshot yet to start branch {name!r} at: "
                f"repo.commit(state_dict, branch={name!r}) starts it with its first snapshot")
        return made

    @property
    def head(self) -> str:
        """The branch HEAD names."""
        return self._repo.head_branch()

    def switch(self, branch: str, *, create: bool = False) -> None:
        """Makes HEAD name ``branch``; with ``create``, first creates it at HEAD's snapshot
        (``snapstore switch -c``; raises ``InvalidInputError`` if it exists). A missing branch
        raises ``NotFoundError``."""
        self._repo.switch_branch(_checks.text(branch, "branch"), bool(create))

    def config(self, key: str, value: Union[str, int, None] = None, *,
               branch: Optional[str] = None) -> Union[str, int]:
        """Reads a setting, or sets it first, as ``snapstore config`` does, and returns the
        value in force: ``"bound"``, the bound a commit on ``branch`` (default HEAD's) uses when
        not given one (``"lossless"`` until set; ``"rel:0.01"``, ``"abs:EPS"``), or
        ``"keyframe_every"``, the keyframe interval (an int, 1 or more)."""
        key = _checks.text(key, "key")
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise InvalidInputError(f"value must be a string or an int, not {value!r}")
            value = str(value)
        now = self._repo.config(key, value, _checks.text(branch, "branch", optional=True))
        return int(now) if key == "keyframe_every" else now

    # -- remotes ----------------------------------------------------------------------------

    def add_remote(self, name: str, url: str, *, endpoint: Optional[str] = None,
                   region: Optional[str] = None) -> str:
        """Remembers remote ``name``: ``s3://bucket/prefix`` (any S3-compatible ``endpoint``;
        credentials from the AWS environment variables or ``~/.aws/credentials``) or a
        directory. Returns the URL as stored. Sends no request."""
        return self._repo.add_remote(_checks.text(name, "name"), _checks.path(url, "url"),
                                     endpoint, region)

    def remotes(self) -> Dict[str, Dict[str, Any]]:
        """``{name: {"url", "endpoint", "region"}}`` of the configured remotes."""
        return json.loads(self._repo.remotes())

    def remove_remote(self, name: str) -> str:
        """Forgets remote ``name`` and its remote-tracking refs (the remote itself is not
        touched). Returns its URL."""
        return self._repo.remove_remote(_checks.text(name, "name"))

    def push(self, remote: str = "origin", refs: Union[str, Sequence[str], None] = None, *,
             force: bool = False, rebase: bool = True) -> Dict[str, Any]:
        """Uploads what ``remote`` (a name or a URL) lacks and moves its branches or tags
        (``refs``; default HEAD's branch) by compare-and-swap. If the remote branch moved on,
        the local snapshots are re-parented on top of it (``rebase=False`` refuses instead);
        a push that would drop remote snapshots raises ``PushRejectedError`` unless ``force``.
        Ctrl-C stops it within 50 ms: no remote ref moves, an unfinished S3 multipart upload is
        aborted, and the next push skips the packs already up.
        Returns ``snapstore push --json``'s report."""
        return json.loads(self._repo.push(remote, _checks.names(refs, "refs"), force, not rebase))

    def delete_remote_ref(self, name: str, remote: str = "origin") -> Dict[str, Any]:
        """Deletes branch or tag ``name`` on ``remote`` by compare-and-swap (``snapstore push
        --delete``): raises ``PushRejectedError`` when the remote ref is not where this
        repository last saw it. Returns ``{"remote", "ref", "old"}`` (``old`` is None where
        the remote ref was damaged)."""
        return json.loads(self._repo.delete_remote_ref(remote, name))

    def remote_fsck(self, remote: str = "origin", *, deep: bool = False, repair: bool = False
                    ) -> Dict[str, Any]:
        """Checks that every snapshot a branch or tag of ``remote`` reaches has its record and
        every pack those need is there (``deep``: downloaded and verified, every byte); with
        ``repair``, first puts back what this repository holds of what is missing or damaged.
        Returns ``snapstore remote fsck --json``'s report (``clean``, ``problems``,
        ``repaired``); raises nothing for damage."""
        return json.loads(self._repo.remote_fsck(_checks.text(remote, "remote"), bool(deep),
                                                 bool(repair)))

    def fetch(self, remote: str = "origin", refs: Union[str, Sequence[str], None] = None
              ) -> Dict[str, Any]:
        """Downloads what ``refs`` (default: all) of ``remote`` need; local branches stay.
        Ctrl-C stops it (and ``pull``) within 50 ms; the next fetch skips the packs already
        down."""
        return json.loads(self._repo.fetch(remote, _checks.names(refs, "refs")))

    def pull(self, remote: str = "origin", branch: Optional[str] = None) -> Dict[str, Any]:
        """Fetches ``branch`` (default HEAD's) and moves the local branch to it."""
        return json.loads(self._repo.pull(remote, branch))

    @classmethod
    def clone(cls, url: str, path: PathLike, *, endpoint: Optional[str] = None,
              region: Optional[str] = None,
              progress: Optional[Callable[[str, int, int], None]] = None) -> "Repo":
        """Makes a repository at ``path`` from the remote at ``url`` (remembered as
        ``origin``) and opens it. ``progress(task, done, total)`` is called as pack bytes
        arrive (``task`` is ``"fetch"``); an exception it raises is reported as unraisable and
        stops further calls, not the clone."""
        native, _report = _native.Repo.clone_remote(
            _checks.path(url, "url"), _checks.path(path), endpoint, region, progress)
        return cls(path, _native_repo=native)


def checkout_remote(url: str, ref: str, path: PathLike, names: Optional[Sequence[str]] = None,
                    *, endpoint: Optional[str] = None, region: Optional[str] = None
                    ) -> Dict[str, Any]:
    """Writes ``ref`` (``HEAD``, a branch, tag, snapshot id or unique id prefix, optionally
    ``~N``, as local checkout reads one) of the remote at ``url``, or only the
    tensors ``names``, as a safetensors file at ``path`` without cloning: only the chunks those
    tensors need are downloaded, each verified. Returns ``snapstore remote checkout --json``'s
    report (``downloaded_bytes``, ``requests``, ...)."""
    return json.loads(_native.checkout_remote(_checks.path(url, "url"), _checks.text(ref, "ref"),
                                              _checks.path(path),
                                              list(names) if names is not None else None,
                                              endpoint, region))


def remote_gc(url: str, *, dry_run: bool = False, grace: int = 3600,
              endpoint: Optional[str] = None, region: Optional[str] = None) -> Dict[str, Any]:
    """Removes from the remote at ``url`` the snapshot records and packs no remote branch or
    tag reaches and that are older than ``grace`` seconds (a push in flight owns younger ones);
    with ``dry_run`` only reports them. Returns ``snapstore remote gc --json``'s report
    (``removed_snapshots``, ``removed_packs``, ``young_packs``, ...)."""
    return json.loads(_native.remote_gc(_checks.path(url, "url"), dry_run,
                                        _checks.whole(grace, "grace", 0, _checks.USIZE_MAX,
                                                      optional=False),
                                        endpoint, region))


def _listed(names: Sequence[str], most: int = 8) -> str:
    """``names`` quoted, the first ``most`` of them and how many more."""
    if not names:
        return "nothing"
    shown = ", ".join(repr(n) for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


# Prefixes that wrappers add to every name: DDP and DataParallel, torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _prefix_hint(held: Sequence[str], into: Sequence[str]) -> str:
    """A hint when the snapshot's names and ``into``'s differ by a wrapper's prefix."""
    held_set, into_set = set(held), set(into)
    for prefix in _WRAPPER_PREFIXES:
        if any(n.startswith(prefix) and n[len(prefix):] in into_set for n in held):
            return (f" (the snapshot's names start with {prefix!r}: check out "
                    f"into={{{prefix!r} + k: v for k, v in model.state_dict().items()}})")
        if any(n.startswith(prefix) and n[len(prefix):] in held_set for n in into):
            return (f" (into's names start with {prefix!r}: check out "
                    f"into={{k.removeprefix({prefix!r}): v for k, v in "
                    "model.state_dict().items()}, or into the unwrapped model)")
    return ""
