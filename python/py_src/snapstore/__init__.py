"""snapstore: versioned, error-bounded storage of PyTorch checkpoints.

>>> import snapstore
>>> repo = snapstore.Repo.init("runs/.snapstore")          # doctest: +SKIP
>>> repo.commit(model.state_dict(), message="epoch 1", bound="rel:0.01")  # doctest: +SKIP
>>> model.load_state_dict(repo.checkout("HEAD"))            # doctest: +SKIP
"""

from ._native import DTYPES, FORMAT_VERSION
from ._repo import CommitReport, Repo, StateDict, checkout_remote, remote_gc
from .errors import (
    BusyError,
    ClosedRepositoryError,
    CorruptionError,
    Error,
    EvaluatorError,
    InvalidInputError,
    NotFoundError,
    PushRejectedError,
    RemoteError,
    StorageIOError,
)

__all__ = [
    "Repo",
    "CommitReport",
    "StateDict",
    "DTYPES",
    "FORMAT_VERSION",
    "Error",
    "InvalidInputError",
    "NotFoundError",
    "BusyError",
    "CorruptionError",
    "EvaluatorError",
    "ClosedRepositoryError",
    "StorageIOError",
    "RemoteError",
    "PushRejectedError",
    "checkout_remote",
    "remote_gc",
]
__version__ = "0.1.0"
