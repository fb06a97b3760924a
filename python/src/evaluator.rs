//! A Python callable as the library's search evaluator.

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyList};
use snapstore::CheckedOutTensor;

/// Calls a Python callable on each candidate. The callable receives a list of
/// `(name, dtype, shape, bytearray)`, a copy of the candidate's bytes that it may keep (the
/// library frees its own after the call); `python_evaluator` in `py_src/snapstore/_tensors.py`
/// wraps the user's function so that it sees a state_dict. The first Python exception is kept,
/// for `PyRepo::run_evaluated` to raise: as the cause of an `EvaluatorError`, or unchanged.
pub struct PyEvaluator {
    callable: Py<PyAny>,
    failure: Mutex<Option<PyErr>>,
}

impl PyEvaluator {
    pub fn new(callable: Py<PyAny>) -> PyEvaluator {
        PyEvaluator {
            callable,
            failure: Mutex::new(None),
        }
    }

    /// Evaluates one candidate, taking the GIL for the call only.
    pub fn call(&self, tensors: &[CheckedOutTensor]) -> Result<f64, String> {
        Python::attach(|py| {
            let result = candidate_list(py, tensors)
                .and_then(|items| self.callable.call1(py, (items,)))
                .and_then(|v| v.extract::<f64>(py));
            result.map_err(|err| {
                let message = err.to_string();
                let mut slot = self.failure.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert(err);
                message
            })
        })
    }

    /// The Python exception a failed call raised, if any.
    pub fn take_failure(&self) -> Option<PyErr> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

fn candidate_list<'py>(
    py: Python<'py>,
    tensors: &[CheckedOutTensor],
) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for t in tensors {
        let bytes = PyByteArray::new(py, &t.data);
        list.append((t.name.as_str(), t.dtype.name(), t.shape.clone(), bytes))?;
    }
    Ok(list)
}
