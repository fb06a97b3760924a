//! Checked-out tensor bytes handed to Python without a copy.

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The bytes of one checked-out tensor, owned by Rust. numpy (and through it torch) views them
/// via `__array_interface__`; the view keeps this object, and so the bytes, alive.
#[pyclass(module = "snapstore._native")]
pub struct Buffer {
    data: Vec<u8>,
}

impl Buffer {
    pub fn new(data: Vec<u8>) -> Buffer {
        Buffer { data }
    }
}

#[pymethods]
impl Buffer {
    fn __len__(&self) -> usize {
        self.data.len()
    }

    /// A writable one-dimensional uint8 array over the bytes (numpy's array interface, v3).
    #[getter]
    fn __array_interface__<'py>(
        mut slf: PyRefMut<'py, Self>,
        py: Python<'py>,
    ) -> PyResult<Bound<'py, PyDict>> {
        // The pointer comes from a unique borrow and Rust never reads the bytes again, so
        // Python writing through it aliases nothing.
        let address = slf.data.as_mut_ptr() as usize;
        let d = PyDict::new(py);
        d.set_item("shape", (slf.data.len(),))?;
        d.set_item("typestr", "|u1")?;
        d.set_item("data", (address, false))?;
        d.set_item("version", 3)?;
        Ok(d)
    }
}
