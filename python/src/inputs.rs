//! Tensors coming in from Python as raw views: the library borrows their bytes in place.

use pyo3::prelude::*;
use snapstore::{Dtype, Error, TensorInput, TensorTarget};

/// One tensor as `snapstore/_tensors.py` describes it: name, safetensors dtype name, shape, the
/// object owning the bytes, the address of its first byte and its length in bytes.
pub type RawTensor = (String, String, Vec<u64>, Py<PyAny>, usize, usize);

/// The dtype `name` gives for tensor `tensor`.
fn dtype_of(tensor: &str, name: &str) -> Result<Dtype, Error> {
    name.parse()
        .map_err(|e| Error::invalid("dtype", format!("tensor {tensor:?}: {e}")))
}

/// Borrows the bytes of `raw` for as long as `raw` lives.
///
/// The owners travel inside `raw`, so the memory stays allocated while the library reads it.
/// The caller vouches that each address and length describe the owner's contiguous host
/// buffer (`host_views` in `py_src/snapstore/_tensors.py` computes them); this module is not
/// public API.
pub fn borrow(raw: &[RawTensor]) -> Result<Vec<TensorInput<'_>>, Error> {
    raw.iter()
        .map(|(name, dtype, shape, _owner, address, len)| {
            let dtype = dtype_of(name, dtype)?;
            let data: &[u8] = if *len == 0 {
                &[]
            } else if *address == 0 {
                return Err(Error::invalid(
                    "tensor",
                    format!("tensor {name:?} has a null data pointer"),
                ));
            } else {
                // SAFETY: see the function docs: the owner is alive in `raw` and the view was
                // computed from it; the library only reads it.
                unsafe { std::slice::from_raw_parts(*address as *const u8, *len) }
            };
            Ok(TensorInput {
                name: name.clone(),
                dtype,
                shape: shape.clone(),
                data,
            })
        })
        .collect()
}

/// Borrows the bytes of `raw` mutably, as buffers a checkout writes into.
///
/// As [`borrow`], and more: the caller vouches that each buffer is writable and that no two
/// overlap (`checkout` in `py_src/snapstore/_repo.py` stages a tensor sharing memory with another
/// through a buffer of its own), so the slices alias nothing.
pub fn borrow_mut(raw: &[RawTensor]) -> Result<Vec<TensorTarget<'_>>, Error> {
    raw.iter()
        .map(|(name, dtype, shape, _owner, address, len)| {
            let dtype = dtype_of(name, dtype)?;
            let data: &mut [u8] = if *len == 0 {
                &mut []
            } else if *address == 0 {
                return Err(Error::invalid(
                    "tensor",
                    format!("tensor {name:?} has a null data pointer"),
                ));
            } else {
                // SAFETY: see the function docs: the owner is alive in `raw`, the view was
                // computed from it, it is writable and no other target overlaps it.
                unsafe { std::slice::from_raw_parts_mut(*address as *mut u8, *len) }
            };
            Ok(TensorTarget {
                name: name.clone(),
                dtype,
                shape: shape.clone(),
                data,
            })
        })
        .collect()
}
