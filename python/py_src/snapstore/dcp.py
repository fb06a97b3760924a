"""``torch.distributed.checkpoint`` storage backed by a snapstore repository.

Each ``dcp.save`` is one snapshot; ``dcp.load`` reads a snapshot back::

    import torch.distributed.checkpoint as dcp
    import snapstore, snapstore.dcp

    repo = snapstore.Repo("runs/.snapstore")
    dcp.save({"model": model.state_dict()},
             storage_writer=snapstore.dcp.StorageWriter(repo, bound="rel:0.01", message="step 100"))
    state = {"model": model.state_dict()}
    dcp.load(state, storage_reader=snapstore.dcp.StorageReader(repo, "HEAD"))
    model.load_state_dict(state["model"])

Single process only (no process group needed): the writer commits in ``finish``, which DCP
calls on the coordinator with every rank's write results but not their tensors. Multi-rank use
would need each rank's tensors to reach one committer (or a commit per rank on its own branch
plus a merge snapshot); that is not implemented, and a writer set up on a non-coordinator rank
refuses.

``StorageReader`` unpickles the DCP metadata a snapshot holds, as DCP unpickles its own
``.metadata`` file: a snapshot made by someone else can run code when loaded. Read only
repositories, and remotes, you trust.
"""

from __future__ import annotations

import io
import pickle
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import torch
from torch.distributed.checkpoint import StorageReader as _StorageReader
from torch.distributed.checkpoint import StorageWriter as _StorageWriter
from torch.distributed.checkpoint.metadata import Metadata, MetadataIndex
from torch.distributed.checkpoint.planner import (
    LoadItemType,
    LoadPlan,
    LoadPlanner,
    SavePlan,
    SavePlanner,
)
from torch.distributed.checkpoint.storage import WriteResult
from torch.futures import Future

from ._repo import CommitReport, Repo
from .errors import InvalidInputError

# Tensor names this module adds beside the state_dict's own.
METADATA_TENSOR = "__dcp__/metadata"
BYTES_PREFIX = "__dcp__/bytes/"


def _storage_name(index: MetadataIndex, whole: bool) -> str:
    """The snapshot tensor holding a write item: its fully qualified name, plus the chunk
    offset when the item is one shard of a larger tensor."""
    if whole or index.offset is None:
        return index.fqn
    return f"{index.fqn}@{','.join(str(int(o)) for o in index.offset)}"


def _done(value: Any) -> Future:
    fut: Future = Future()
    fut.set_result(value)
    return fut


class StorageWriter(_StorageWriter):
    """Commits each ``dcp.save`` as one snapshot of ``repo`` (see the module docs).

    ``bound``, ``message``, ``meta`` and ``branch`` are those of :meth:`snapstore.Repo.commit`
    (``bound="auto"`` is not available here: it needs an evaluator). The last commit's report
    is ``writer.report``.
    """

    def __init__(self, repo: Repo, bound: Optional[str] = None, message: str = "",
                 meta: Optional[Mapping[str, Any]] = None, branch: Optional[str] = None) -> None:
        super().__init__()
        if bound == "auto":
            raise InvalidInputError('bound="auto" needs an evaluator: use Repo.commit for it')
        self.repo = repo
        self.bound = bound
        self.message = message
        self.meta = dict(meta or {})
        self.branch = branch
        self.report: Optional[CommitReport] = None
        self._tensors: Dict[str, Any] = {}

    def reset(self, checkpoint_id: Any = None) -> None:
        self._tensors = {}

    def set_up_storage_writer(self, is_coordinator: bool, *args: Any, **kwargs: Any) -> None:
        if not is_coordinator:
            raise InvalidInputError("snapstore.dcp.StorageWriter works in a single process only")

    def prepare_local_plan(self, plan: SavePlan) -> SavePlan:
        return plan

    def prepare_global_plan(self, plans: List[SavePlan]) -> List[SavePlan]:
        return plans

    def write_data(self, plan: SavePlan, planner: SavePlanner) -> Future:
        results = []
        for item in plan.items:
            data = planner.resolve_data(item)
            if not isinstance(data, torch.Tensor):  # a BYTE_IO item: a stream of pickled bytes
                name = BYTES_PREFIX + item.index.fqn
                raw = data.getvalue() if isinstance(data, io.BytesIO) else data.read()
                self._tensors[name] = np.frombuffer(raw or b"", dtype=np.uint8).copy()
                size = len(raw or b"")
            else:
                td = item.tensor_data
                whole = td is None or (all(o == 0 for o in td.chunk.offsets)
                                       and list(td.chunk.sizes) == list(td.size))
                name = _storage_name(item.index, whole)
                tensor = data.detach()
                self._tensors[name] = tensor
                size = tensor.numel() * tensor.element_size()
            results.append(WriteResult(index=item.index, size_in_bytes=size, storage_data=name))
        return _done(results)

    def finish(self, metadata: Metadata, results: List[List[WriteResult]]) -> None:
        storage: Dict[MetadataIndex, str] = {}
        for rank_results in results:
            storage.update({r.index: r.storage_data for r in rank_results})
        metadata.storage_data = storage
        tensors = dict(self._tensors)
        tensors[METADATA_TENSOR] = np.frombuffer(pickle.dumps(metadata), dtype=np.uint8).copy()
        self.report = self.repo.commit(tensors, message=self.message, bound=self.bound,
                                       meta=self.meta, branch=self.branch)
        self._tensors = {}

    def storage_meta(self) -> Any:
        return None

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: Any) -> bool:
        return False


class StorageReader(_StorageReader):
    """Reads the snapshot ``ref`` of ``repo`` for ``dcp.load``. Only the tensors the load plan
    asks for are checked out."""

    def __init__(self, repo: Repo, ref: str = "HEAD") -> None:
        super().__init__()
        self.repo = repo
        self.ref = ref
        self._snapshot: Optional[str] = None

    def reset(self, checkpoint_id: Any = None) -> None:
        if checkpoint_id is not None:
            self.ref = str(checkpoint_id)
        self._snapshot = None

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        got = self.repo.checkout(self.ref, names=[METADATA_TENSOR], framework="np")
        self._snapshot = got.snapshot  # later reads use this snapshot even if the ref moves
        return pickle.loads(got[METADATA_TENSOR].tobytes())

    def set_up_storage_reader(self, metadata: Metadata, is_coordinator: bool, *args: Any,
                              **kwargs: Any) -> None:
        self._storage = metadata.storage_data

    def prepare_local_plan(self, plan: LoadPlan) -> LoadPlan:
        return plan

    def prepare_global_plan(self, plans: List[LoadPlan]) -> List[LoadPlan]:
        return plans

    def read_data(self, plan: LoadPlan, planner: LoadPlanner) -> Future:
        if self._snapshot is None:
            self.read_metadata()
        assert self._snapshot is not None
        names = sorted({self._storage[item.storage_index] for item in plan.items})
        stored = self.repo.checkout(self._snapshot, names=names)
        for item in plan.items:
            name = self._storage[item.storage_index]
            if item.type == LoadItemType.BYTE_IO:
                planner.load_bytes(item, io.BytesIO(stored[name].numpy().tobytes()))
                continue
            source = stored[name]
            for dim, (offset, length) in enumerate(zip(item.storage_offsets, item.lengths)):
                source = source.narrow(dim, offset, length)
            target = planner.resolve_tensor(item).detach()
            if target.size() != source.size():
                raise InvalidInputError(
                    f"tensor {item.dest_index.fqn!r}: stored chunk {tuple(source.size())} does not "
                    f"match the requested {tuple(target.size())}")
            target.copy_(source)
            planner.commit_tensor(item, target)
        return _done(None)

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: Any) -> bool:
        return False
