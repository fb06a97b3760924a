//! Library errors as the Python exception hierarchy of `py_src/snapstore/errors.py`, with the
//! CLI's messages.

use pyo3::prelude::*;
use snapstore::Error;

/// The `snapstore.errors` class an error is raised as.
fn class_of(e: &Error) -> &'static str {
    match e {
        Error::BadSafetensors { .. }
        | Error::BadCheckpointDir { .. }
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
        | Error::DamagedTensor { .. }
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

/// Raises `e` as its `snapstore.errors` class with the message the CLI prints, its hint
/// naming the Python call where the CLI's names a command.
pub fn to_py(py: Python<'_>, e: Error) -> PyErr {
    raise(py, class_of(&e), python_message(&e))
}

/// The library's message with a command-line hint put in Python's words: a Python user may not
/// have the command installed, and `push --force` is `push(force=True)` here.
fn python_message(e: &Error) -> String {
    let message = e.to_string();
    let (cli, python) = match e {
        Error::NoRepository(_) => (
            "(run `snapstore init` first)".to_string(),
            "(snapstore.Repo.init(path) makes one)".to_string(),
        ),
        Error::UnknownBranch { name, .. } => (
            format!("`snapstore switch -c {name}` creates it"),
            format!("repo.switch({name:?}, create=True) creates it"),
        ),
        Error::UnknownRemote { name, .. } => (
            format!("`snapstore remote add {name} URL` adds it"),
            format!("repo.add_remote({name:?}, url) adds it"),
        ),
        Error::RemoteExists(name) => (
            format!("(`snapstore remote remove {name}` first)"),
            format!("(repo.remove_remote({name:?}) first)"),
        ),
        Error::NonFastForward { .. } => (
            "Pull first, or push --force to drop them".to_string(),
            "Pull first (repo.pull()), or push(force=True) to drop them".to_string(),
        ),
        Error::RemoteTagExists { .. } => (
            "push --force to move it".to_string(),
            "push(force=True) to move it".to_string(),
        ),
        Error::UnrelatedHistories { branch, .. } => (
            format!(
                "(snapstore fetch, then snapstore branch NAME REMOTE/{branch}); to replace the \
                 remote's, push --force"
            ),
            format!(
                "(repo.fetch(), then repo.branch(NAME, \"REMOTE/{branch}\")); to replace the \
                 remote's, push(force=True)"
            ),
        ),
        _ => return message,
    };
    message.replacen(&cli, &python, 1)
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
