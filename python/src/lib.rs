//! `snapstore._native`: the Rust half of the Python package. It converts types, releases the GIL
//! while the library codes, and maps errors; `py_src/snapstore/*.py` turns tensors into the raw
//! views taken here and back. The library (`snapstore`) stays the one implementation.

mod buffer;
mod errors;
mod evaluator;
mod inputs;
mod interrupt;
mod repo;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<repo::PyRepo>()?;
    m.add_class::<buffer::Buffer>()?;
    m.add_function(wrap_pyfunction!(repo::checkout_remote, m)?)?;
    m.add_function(wrap_pyfunction!(_stage_profile, m)?)?;
    m.add_function(wrap_pyfunction!(repo::remote_gc, m)?)?;
    m.add("DTYPES", snapstore::ALL_DTYPES.map(|d| d.name()).to_vec())?;
    m.add("FORMAT_VERSION", snapstore::FORMAT_VERSION)?;
    Ok(())
}

/// For benchmarks: turns the library's stage timers on (`snapstore::profile`) and returns their
/// table so far as Markdown, zeroing them when `reset`. Not a stable API.
#[pyfunction]
#[pyo3(signature = (reset = false))]
fn _stage_profile(reset: bool) -> String {
    snapstore::profile::enable();
    let table = snapstore::profile::read().to_string();
    if reset {
        snapstore::profile::reset();
    }
    table
}
