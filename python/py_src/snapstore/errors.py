"""The exceptions snapstore raises. Messages are the command-line tool's."""

__all__ = [
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
]


class Error(Exception):
    """Base class of every snapstore error."""


class InvalidInputError(Error, ValueError, TypeError):
    """A bad argument: an unsupported tensor (sparse, quantized, an unknown dtype), a bad
    bound, a bad ref name, a ref or repository that already exists."""


class NotFoundError(Error, LookupError):
    """No repository at the path, an unknown ref, an empty branch, or a tensor the snapshot
    does not hold."""


class BusyError(Error):
    """Another process held the repository index too long; retry."""


class CorruptionError(Error):
    """A damaged or missing object, pack or index entry (``snapstore fsck`` says more)."""


class EvaluatorError(Error):
    """The search's evaluator failed or returned a non-finite accuracy; nothing was committed.
    ``__cause__`` holds the exception the callable raised, if it raised one."""


class ClosedRepositoryError(InvalidInputError):
    """The repository was closed (``Repo.close()`` or the end of a ``with`` block)."""


class StorageIOError(Error, OSError):
    """Reading or writing a file of the repository failed."""


class RemoteError(Error):
    """A remote failed: the store could not be reached or refused a request, holds no snapstore
    repository, or does not do the conditional writes its refs need; or a pull or push between
    a local and a remote branch that share no snapshot. The message names the remote's URL and
    the object."""


class PushRejectedError(RemoteError):
    """A push that would drop snapshots from the remote branch (pull first, or ``force=True``),
    or a remote ref delete refused because the ref moved since this repository saw it."""
