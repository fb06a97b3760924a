"""Tensors to raw host views for the native module, and checked-out bytes back to tensors.

Nothing here copies a tensor that is already a contiguous little-endian host tensor; the
exceptions (a CUDA tensor, a non-contiguous one, a big-endian array) are copied once.
"""

from __future__ import annotations

import bisect
import numbers
import sys
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from ._checks import shown
from .errors import InvalidInputError

try:  # torch is optional: numpy arrays work without it.
    import torch
except ImportError:  # pragma: no cover - exercised only without torch
    torch = None  # type: ignore[assignment]

RawTensor = Tuple[str, str, List[int], Any, int, int]


def _torch_dtypes() -> Dict[Any, str]:
    if torch is None:
        return {}
    names = {
        "bool": "BOOL",
        "uint8": "U8",
        "int8": "I8",
        "int16": "I16",
        "uint16": "U16",
        "int32": "I32",
        "uint32": "U32",
        "int64": "I64",
        "uint64": "U64",
        "float16": "F16",
        "bfloat16": "BF16",
        "float32": "F32",
        "float64": "F64",
        "float8_e5m2": "F8_E5M2",
        "float8_e4m3fn": "F8_E4M3",
        "float8_e8m0fnu": "F8_E8M0",
        "float8_e4m3fnuz": "F8_E4M3FNUZ",
        "float8_e5m2fnuz": "F8_E5M2FNUZ",
        "complex64": "C64",
    }
    # Older torch lacks some of these (uint16..uint64 came in 2.3, float8_e8m0fnu in 2.7).
    return {getattr(torch, n): s for n, s in names.items() if hasattr(torch, n)}


TORCH_TO_ST = _torch_dtypes()
# torch packs two MXFP4 values in each element of this dtype (torch 2.8+); safetensors' F4
# counts values, so its last dimension is twice torch's, as safetensors' own torch loader has it.
_F4_X2 = getattr(torch, "float4_e2m1fn_x2", None) if torch is not None else None
if _F4_X2 is not None:
    TORCH_TO_ST[_F4_X2] = "F4"
ST_TO_TORCH = {s: d for d, s in TORCH_TO_ST.items()}

# numpy names; bfloat16 and the float8 types are ml_dtypes' (numpy has none of its own).
NUMPY_TO_ST = {
    "bool": "BOOL",
    "uint8": "U8",
    "int8": "I8",
    "int16": "I16",
    "uint16": "U16",
    "int32": "I32",
    "uint32": "U32",
    "int64": "I64",
    "uint64": "U64",
    "float16": "F16",
    "float32": "F32",
    "float64": "F64",
    "complex64": "C64",
    "bfloat16": "BF16",
    "float8_e5m2": "F8_E5M2",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e8m0fnu": "F8_E8M0",
    "float8_e4m3fnuz": "F8_E4M3FNUZ",
    "float8_e5m2fnuz": "F8_E5M2FNUZ",
}
ST_TO_NUMPY = {s: n for n, s in NUMPY_TO_ST.items()}
# The safetensors dtypes numpy has no type for: ml_dtypes (a dependency) supplies them.
_ML_DTYPES = {"BF16", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ"}


def is_torch(value: Any) -> bool:
    return torch is not None and isinstance(value, torch.Tensor)


def _torch_st(name: str, t: "torch.Tensor") -> str:
    """The safetensors dtype of dense torch tensor ``t``, which must hold data."""
    dtype = TORCH_TO_ST.get(t.dtype)
    if dtype is None:
        raise InvalidInputError(f"tensor {name!r} has dtype {t.dtype}, which safetensors cannot hold")
    if t.device.type == "meta":
        raise InvalidInputError(f"tensor {name!r} is on the meta device and has no data")
    return dtype


def _numpy_st(name: str, a: np.ndarray) -> str:
    """The safetensors dtype of array ``a``."""
    dtype = NUMPY_TO_ST.get(a.dtype.name)
    if dtype is None:
        raise InvalidInputError(f"tensor {name!r} has numpy dtype {a.dtype}, which safetensors cannot hold")
    return dtype


def _big_endian(a: np.ndarray) -> bool:
    return a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and sys.byteorder == "big")


def _st_shape(name: str, t: "torch.Tensor") -> List[int]:
    """The safetensors shape of ``t``: torch's, but counting MXFP4 values, two per element."""
    shape = list(t.shape)
    if t.dtype == _F4_X2 and _F4_X2 is not None:
        if not shape:
            raise InvalidInputError(f"tensor {name!r} is a 0-d {t.dtype}: its two packed values "
                                    "need a dimension to be stored as F4; reshape it to (1,)")
        shape[-1] *= 2
    return shape


def _torch_raw(name: str, dtype: str, t: "torch.Tensor") -> RawTensor:
    """The raw view of contiguous host tensor ``t``."""
    return (name, dtype, _st_shape(name, t), t, t.data_ptr(), t.numel() * t.element_size())


def _refuse_nested(name: str, t: "torch.Tensor") -> None:
    # A nested tensor has no one shape: torch raises an internal error when asked for one.
    if t.is_nested:
        raise InvalidInputError(f"tensor {name!r} is a nested tensor, which has no single "
                                "shape: commit each of its t.unbind() tensors under a name")


def _torch_view(name: str, t: "torch.Tensor") -> RawTensor:
    _refuse_nested(name, t)
    if t.layout != torch.strided:
        raise InvalidInputError(
            f"tensor {name!r} is sparse ({t.layout}); commit t.to_dense() instead")
    if t.is_quantized:
        raise InvalidInputError(
            f"tensor {name!r} is quantized ({t.dtype}); commit t.dequantize() or its int_repr()")
    dtype = _torch_st(name, t)
    t = t.detach()
    if t.device.type != "cpu":
        t = t.to("cpu")  # the one copy a device tensor needs
    t = t.resolve_conj().resolve_neg().contiguous()
    return _torch_raw(name, dtype, t)


def _numpy_view(name: str, a: np.ndarray) -> RawTensor:
    dtype = _numpy_st(name, a)
    if _big_endian(a):
        a = a.astype(a.dtype.newbyteorder("<"))
    shape = list(a.shape)  # before the copy: ascontiguousarray turns a 0-d array into 1-d
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    return (name, dtype, shape, a, a.__array_interface__["data"][0], a.nbytes)


def host_views(state_dict: Any) -> Tuple[List[RawTensor], str]:
    """Raw views of every tensor of ``state_dict`` (a mapping, or a module with
    ``state_dict()``), and the framework they came from (``"pt"`` or ``"np"``)."""
    state_dict = state_dict_of(state_dict, "state_dict")
    if isinstance(state_dict.get("state"), Mapping) and "param_groups" in state_dict:
        raise InvalidInputError(
            "state_dict looks like an optimizer's ('state' and 'param_groups'): commit takes a "
            f"flat mapping of names to tensors. {_NESTED_HINT}")
    views: List[RawTensor] = []
    frameworks = set()
    for name, value in state_dict.items():
        if not isinstance(name, str):
            raise InvalidInputError(f"tensor names must be strings, not {type(name).__name__} ({name!r})")
        if is_torch(value):
            views.append(_torch_view(name, value))
            frameworks.add("pt")
        elif isinstance(value, np.ndarray):
            views.append(_numpy_view(name, value))
            frameworks.add("np")
        else:
            raise InvalidInputError(
                f"tensor {name!r} is a {type(value).__name__}, not a torch.Tensor or "
                f"numpy.ndarray{_not_a_tensor_hint(value)}")
    return views, ("pt" if "pt" in frameworks else "np")


_NESTED_HINT = ("Nested state (an optimizer's state_dict, {'model': ..., 'optim': ...}) is "
                "saved with snapstore.dcp and torch.distributed.checkpoint")


def _not_a_tensor_hint(value: Any) -> str:
    """What to do instead of committing ``value`` as a tensor, for the common mistakes."""
    if isinstance(value, (Mapping, list, tuple)):
        return f": commit takes a flat mapping of names to tensors. {_NESTED_HINT}"
    if isinstance(value, (numbers.Number, str)):
        return ": numbers and strings go in meta="
    return ""


def state_dict_of(value: Any, what: str) -> Mapping:
    """``value`` as a mapping of names to tensors (a module gives its ``state_dict()``)."""
    if not isinstance(value, Mapping) and callable(getattr(value, "state_dict", None)):
        value = value.state_dict()
    if not isinstance(value, Mapping):
        raise InvalidInputError(
            f"{what} must be a mapping of names to tensors, not {type(value).__name__}")
    return value


def _writable_view(name: str, value: Any) -> Tuple[Optional[RawTensor], Any]:
    """A raw view the native checkout may write ``value``'s bytes through, or ``None`` and a
    contiguous host tensor of the same dtype and shape to check out into and copy from (a
    device tensor, a non-contiguous one, a big-endian array)."""
    if is_torch(value):
        _refuse_nested(name, value)
        if value.layout != torch.strided or value.is_quantized:
            raise InvalidInputError(f"tensor {name!r} is {value.layout}"
                                    f"{' and quantized' if value.is_quantized else ''}: "
                                    "a checkout writes only dense tensors")
        st = _torch_st(name, value)
        t = value.detach()
        if _is_expanded(t):
            raise InvalidInputError(f"tensor {name!r} is expanded (a dimension of stride 0): "
                                    "a checkout cannot write one value to each of its elements")
        if (t.device.type == "cpu" and t.is_contiguous() and not t.is_conj()
                and not t.is_neg()):
            return _torch_raw(name, st, t), None
        return None, _staging_buffer(value)
    if isinstance(value, np.ndarray):
        st = _numpy_st(name, value)
        if not value.flags.writeable:
            raise InvalidInputError(f"tensor {name!r} is a read-only array: a checkout cannot "
                                    "write into it")
        if value.flags.c_contiguous and not _big_endian(value):
            address = value.__array_interface__["data"][0]
            return (name, st, list(value.shape), value, address, value.nbytes), None
        return None, _staging_buffer(value)
    raise InvalidInputError(
        f"tensor {name!r} is a {type(value).__name__}, not a torch.Tensor or numpy.ndarray")


def check_framework(framework: str) -> None:
    """Refuses, before any work, a framework ``to_tensor`` would refuse on each tensor."""
    if framework not in ("pt", "np"):
        raise InvalidInputError(f"framework must be 'pt' or 'np', not {framework!r}")
    if framework == "pt" and torch is None:
        raise InvalidInputError("framework='pt' needs torch installed")


def check_device(device: Any, framework: str) -> None:
    """Refuses, before anything is decoded, a ``device`` torch does not know or cannot use
    here (before, ``"gpu"`` or ``"cuda"`` on a machine without one failed after decoding)."""
    if device == "cpu":
        return
    if framework == "np":
        raise InvalidInputError(f"device={device!r} needs framework='pt': numpy arrays live on the CPU")
    if torch is None:
        raise InvalidInputError("framework='pt' needs torch installed")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise InvalidInputError(f"device={device!r} is not a torch device: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"device={device!r}: torch finds no CUDA device on this machine")


def _is_expanded(t: Any) -> bool:
    """Whether a dimension of ``t`` repeats its elements (stride 0: ``expand``), which torch's
    ``copy_`` refuses: refused here before anything is written instead of part way."""
    return any(st == 0 and n > 1 for st, n in zip(t.stride(), t.shape))


def _staging_buffer(value: Any) -> Any:
    """A contiguous little-endian host tensor of ``value``'s dtype and shape."""
    if is_torch(value):
        return torch.empty(value.shape, dtype=value.dtype)
    return np.empty(value.shape, dtype=value.dtype.newbyteorder("<"))


def checkout_targets(into: Mapping) -> Tuple[List[RawTensor], List[Tuple[Any, Any]]]:
    """Raw views for a checkout to write ``into``'s tensors through, and the (tensor, staging
    buffer) pairs of those it writes into a buffer of their own, to be copied over after:
    tensors it cannot write in place, and each tensor sharing memory with one already taken
    (tied weights), so that no two views overlap."""
    views: List[Tuple[str, Any, Optional[RawTensor], Any]] = []
    for name, value in into.items():
        if not isinstance(name, str):
            raise InvalidInputError(f"tensor names must be strings, not {type(name).__name__} ({name!r})")
        views.append((name, value) + _writable_view(name, value))
    spans = [None if view is None else (view[4], view[4] + view[5]) for _, _, view, _ in views]
    in_place = _first_disjoint(spans)
    targets: List[RawTensor] = []
    staged: List[Tuple[Any, Any]] = []
    for i, (name, value, view, stage) in enumerate(views):
        if view is not None and i in in_place:
            targets.append(view)
            continue
        if stage is None:
            stage = _staging_buffer(value)
        target_view, _ = _writable_view(name, stage)
        targets.append(target_view)
        staged.append((value, stage))
    return targets, staged


def _first_disjoint(spans: List[Optional[Tuple[int, int]]]) -> set:
    """The indices of ``spans`` (byte ranges, or None) that overlap no range of a lower index
    in the set: in order, each range is taken unless it overlaps one already taken (an empty
    range is taken unless it lies inside one, and blocks nothing).

    Sorting by address first splits the ranges into runs that chain-overlap; only inside a run
    (tied weights: usually two) is the order walked, keeping the taken ranges sorted, so 10,000
    tensors cost O(n log n), not O(n^2)."""
    order = sorted((i for i, s in enumerate(spans) if s is not None), key=lambda i: spans[i])
    runs: List[List[int]] = []
    reach = -1
    for i in order:
        start, end = spans[i]
        if runs and start < reach:
            runs[-1].append(i)
        else:
            runs.append([i])
        reach = max(reach, end) if len(runs[-1]) > 1 else end
    taken = set()
    for run in runs:
        if len(run) == 1:
            taken.add(run[0])
            continue
        starts: List[int] = []  # the taken ranges of this run: disjoint, sorted by start
        ends: List[int] = []
        for i in sorted(run):
            start, end = spans[i]
            k = bisect.bisect_left(starts, end)  # taken ranges starting before this one ends
            if k and ends[k - 1] > start:
                continue
            taken.add(i)
            if end > start:
                starts.insert(k, start)
                ends.insert(k, end)
    return taken


def mark_written(targets: List[RawTensor]) -> None:
    """Tells autograd that the torch tensors of ``targets`` were written in place, as ``copy_``
    does: a backward through a graph that saved one of them then raises, as after
    ``load_state_dict``, instead of computing gradients from the new values."""
    written = [view[3] for view in targets if is_torch(view[3])]
    if written:
        # A counter bump each, no pass over the data (torch 2.8, the oldest supported, takes a list).
        torch.autograd.graph.increment_version(written)


def copy_staged(staged: List[Tuple[Any, Any]]) -> None:
    """Copies each staging buffer into its tensor (to its device)."""
    for target, stage in staged:
        if is_torch(target):
            with torch.no_grad():
                target.copy_(stage)
        else:
            np.copyto(target, stage, casting="equiv")


def _numpy_dtype(name: str, st: str) -> np.dtype:
    """The numpy dtype of tensor ``name`` of safetensors dtype ``st``. Without ml_dtypes,
    bfloat16 and float8 are refused: the same-width integers holding their bits would commit
    back as U16/U8, silently changing the tensor's dtype."""
    np_name = ST_TO_NUMPY.get(st)
    if np_name is None:
        raise InvalidInputError(f"tensor {name!r} has dtype {st}, which has no numpy equivalent")
    if st not in _ML_DTYPES:
        return np.dtype(np_name)
    try:
        import ml_dtypes
        return np.dtype(getattr(ml_dtypes, np_name))
    except (ImportError, AttributeError):
        raise InvalidInputError(
            f"tensor {name!r} is {st}, which numpy holds only with ml_dtypes {np_name}: "
            "pip install ml_dtypes (a dependency of snapstore), or check out with "
            "framework='pt'") from None


def to_tensor(name: str, st: str, shape: List[int], data: Any, framework: str,
              device: str = "cpu") -> Any:
    """Tensor ``name``: a tensor over ``data`` (an object exposing bytes through ``__array_interface__`` or the
    buffer protocol) without copying it: the tensor keeps ``data`` alive."""
    raw = np.asarray(data) if hasattr(data, "__array_interface__") else np.frombuffer(data, np.uint8)
    if framework == "np":
        dtype = _numpy_dtype(name, st)
        if raw.size == 0:
            return np.zeros(shape, dtype=dtype)
        return raw.view(dtype).reshape(shape)
    if framework != "pt":
        raise InvalidInputError(f"framework must be 'pt' or 'np', not {framework!r}")
    if torch is None:
        raise InvalidInputError("framework='pt' needs torch installed")
    dtype = ST_TO_TORCH.get(st)
    if dtype is None:
        raise InvalidInputError(f"tensor {name!r} has dtype {st}, which has no torch "
                                f"equivalent in torch {torch.__version__}")
    if st == "F4":
        if not shape or shape[-1] % 2:
            raise InvalidInputError(f"tensor {name!r}: an F4 tensor of shape {shape} has no "
                                    "torch equivalent: "
                                    f"{dtype} packs two values along an even last dimension")
        shape = shape[:-1] + [shape[-1] // 2]
    if raw.size == 0:
        t = torch.empty(shape, dtype=dtype)  # no elements to fill (fill has no float4 kernel)
    else:
        t = torch.from_numpy(raw).view(dtype).reshape(shape)
    return t if device == "cpu" else t.to(device)


def state_dict_from(items: List[Tuple[str, str, List[int], Any]], framework: str,
                    device: str = "cpu") -> Dict[str, Any]:
    return {name: to_tensor(name, st, shape, data, framework, device) for name, st, shape, data in items}


def python_evaluator(evaluate: Callable[[Dict[str, Any]], float], framework: str
                     ) -> Callable[[List[Tuple[str, str, List[int], Any]]], float]:
    """The user's ``evaluate(state_dict) -> accuracy`` as the native search calls it."""
    def call(items: List[Tuple[str, str, List[int], Any]]) -> float:
        return _accuracy(evaluate(state_dict_from(items, framework)))
    return call


def _accuracy(value: Any) -> float:
    """An evaluator's result as a float: a real number (a numpy real scalar too), or a numpy
    array or torch tensor of one element of a real dtype. A bool or a string is refused, though
    ``float()`` takes them: ``acc > 0.9`` or ``"0.9"`` would pass as an accuracy."""
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    if is_torch(value):
        if value.numel() == 1 and value.dtype != torch.bool and not value.dtype.is_complex:
            return float(value.item())
    elif isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "iuf":
        return float(value.item())
    raise TypeError(f"evaluate returned {shown(value)}: it must return the accuracy as a real "
                    "number (int, float, a numpy real scalar, or an array or tensor of one "
                    "element of a real dtype)")


def meta_strings(meta: Optional[Mapping[str, Any]], what: str) -> Dict[str, str]:
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise InvalidInputError(f"{what} must be a mapping, not {type(meta).__name__}")
    out = {}
    for k, v in meta.items():
        if not isinstance(k, str):
            raise InvalidInputError(f"{what} keys must be strings, not {k!r}")
        if getattr(v, "ndim", None) == 0 and hasattr(v, "item"):
            v = v.item()  # a 0-d tensor or array (a loss): its value, not "tensor(0.5000)"
        out[k] = str(v)
    return out
