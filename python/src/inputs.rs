//! Tensors coming in from Python as raw views: the library borrows their bytes in place.

use pyo3::prelude::*;
use snapstore::{Dtype, Error, TensorInput};

/// One tensor as `snapstore/_tensors.py` describes it: name, safetensors dtype name, shape, the
/// object owning the bytes, the address of its first byte and its length in bytes.
pub type RawTensor = (String, String, Vec<u64>, Py<PyAny>, usize, usize);

/// Borrows the bytes of `raw` for as long as `raw` lives.
///
/// The owners travel inside `raw`, so the memory stays allocated while the library reads it.
/// The caller vouches that each address and length describe the owner's contiguous host
/// buffer (`host_views` in `py_src/snapstore/_tensors.py` computes them); this module is not
/// public API.
pub fn borrow(raw: &[RawTensor]) -> Result<Vec<TensorInput<'_>>, Error> {
    raw.iter()
        .map(|(name, dtype, shape, _owner, address, len)| {
            let dtype: Dtype = dtype
                .parse()
                .map_err(|e| Error::invalid("dtype", format!("tensor {name:?}: {e}")))?;
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
