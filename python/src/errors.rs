//! Library errors as the Python exception hierarchy of `py_src/snapstore/errors.py`, with the
//! CLI's messages.

use pyo3::prelude::*;
use snapstore::Error;

/// The `snapstore.errors` class an error is raised as.
fn class_of(e: &Error) -> &'static str {
    match e {
        Error::BadSafetensors { .. }
        | Error::BadTensor { .. }
        | Error::RepositoryExists(_)
        | Error::BadRefName(_)
        | Error::RefExists(_)
        | Error::RefShadows { .. }
        | Error::DeleteCurrentBranch(_)
        | Error::AmbiguousRef { .. }
        | Error::BadRemoteUrl { .. }
        | Error::RemoteExists(_)
        | Error::ForkedProcess { .. } => "InvalidInputError",
        Error::InvalidArgument { what, .. } if *what == "evaluator" => "EvaluatorError",
        Error::InvalidArgument { .. } => "InvalidInputError",
        Error::NoRepository(_)
        | Error::NoRepositoryAbove(_)
        | Error::UnknownBranch { .. }
        | Error::UnknownRef(_)
        | Error::EmptyBranch(_)
        | Error::TensorNotFound { .. }
        | Error::UnknownRemote { .. }
        | Error::UnknownRemoteRef { .. } => "NotFoundError",
        Error::Busy { .. }
        | Error::IndexHeld { .. }
        | Error::LocalRefMoved { .. }
        | Error::InputChanged { .. }
        | Error::TensorChanged { .. }
        | Error::RemovedUnderCommit { .. }
        | Error::PackRemovedUnderCommit { .. } => "BusyError",
        Error::MissingObject { .. }
        | Error::CorruptObject { .. }
        | Error::CorruptPack { .. }
        | Error::HashMismatch { .. }
        | Error::Decode { .. }
        | Error::Index(_)
        | Error::IndexInconsistent(_)
        | Error::RemoteCorrupt { .. } => "CorruptionError",
        Error::NonFastForward { .. }
        | Error::RemoteRefMoved { .. }
        | Error::RemoteTagExists { .. } => "PushRejectedError",
        Error::RemoteIo { .. }
        | Error::RemoteNoConditionalWrites { .. }
        | Error::RemoteRefLocked { .. }
        | Error::RemoteLayout { .. }
        | Error::UnrelatedHistories { .. } => "RemoteError",
        Error::Io { .. } | Error::ReadOnly { .. } => "StorageIOError",
        Error::FormatTooNew { .. } | Error::Interrupted => "Error",
    }
}

/// Raises `e` as its `snapstore.errors` class with the message the CLI prints.
pub fn to_py(py: Python<'_>, e: Error) -> PyErr {
    raise(py, class_of(&e), e.to_string())
}

/// An instance of `snapstore.errors.<class>` carrying `message`, as a `PyErr`.
pub fn raise(py: Python<'_>, class: &str, message: String) -> PyErr {
    let made = py
        .import("snapstore.errors")
        .and_then(|m| m.getattr(class))
        .and_then(|c| c.call1((message,)));
    match made {
        Ok(instance) => PyErr::from_value(instance),
        Err(err) => err,
    }
}
