"""State_dicts in and out: every dtype, exact when lossless, within the bound when lossy."""

import copy
import sys

import numpy as np
import pytest
import torch

import snapstore

FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
FLOAT8 = [getattr(torch, n) for n in
          ("float8_e5m2", "float8_e4m3fn", "float8_e8m0fnu", "float8_e4m3fnuz", "float8_e5m2fnuz")
          if hasattr(torch, n)]
INTS = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64] + [
    getattr(torch, n) for n in ("uint16", "uint32", "uint64") if hasattr(torch, n)]


def random_bits(dtype, shape, seed):
    """Every bit pattern is a valid value of dtype (NaN, inf, -0.0, subnormals included)."""
    g = torch.Generator().manual_seed(seed)
    size = torch.empty((), dtype=dtype).element_size()
    raw = torch.randint(0, 256, (int(np.prod(shape)) * size,), dtype=torch.uint8, generator=g)
    return raw.view(dtype).reshape(shape)


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(
        a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


def test_every_torch_dtype_round_trips_bit_exact(repo):
    sd = {f"t.{str(d).split('.')[-1]}": random_bits(d, (7, 5), i)
          for i, d in enumerate(FLOATS + FLOAT8 + INTS)}
    sd["flag"] = torch.rand(33) > 0.5
    sd["complex"] = torch.randn(4, 3, dtype=torch.complex64)
    sd["scalar"] = torch.tensor(7, dtype=torch.int64)
    sd["empty"] = torch.zeros(0, 3)
    report = repo.commit(sd, message="all dtypes")
    assert report.tensors == len(sd) and report.parent is None
    back = repo.checkout()
    assert set(back) == set(sd)  # in safetensors order, as load_file gives them
    for name, t in sd.items():
        assert same_bits(back[name], t), name
    assert back.snapshot == report.snapshot


def test_bf16_lossless_is_bit_exact_through_a_chain(repo):
    w = torch.randn(256, 64).to(torch.bfloat16)
    for step in range(3):
        w = (w.float() + 0.01 * torch.randn_like(w.float())).to(torch.bfloat16)
        repo.commit({"w": w}, message=f"step {step}")
        assert same_bits(repo.checkout()["w"], w)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("eps", [1e-3, 1e-2])
def test_relative_bound_holds(repo, dtype, eps):
    base = torch.randn(4096)
    for step in range(3):
        w = (base + 0.001 * step * torch.randn(4096)).to(dtype)
        repo.commit({"w": w}, bound=f"rel:{eps}")
        got = repo.checkout()["w"].double()
        want = w.double()
        finite = torch.isfinite(want)
        assert torch.all((got[finite] - want[finite]).abs() <= eps * want[finite].abs())


def test_absolute_bound_holds(repo):
    w = torch.randn(10000)
    repo.commit({"w": w}, bound="abs:0.001")
    assert (repo.checkout()["w"] - w).abs().max().item() <= 0.001


def test_lossy_chain_is_smaller_than_lossless(tmp_path):
    base = torch.randn(64, 1024)
    sizes = {}
    for bound in (None, "rel:0.01"):
        with snapstore.Repo.init(tmp_path / str(bound)) as r:
            for step in range(4):
                r.commit({"w": base + 1e-3 * step * torch.randn_like(base)}, bound=bound)
            sizes[bound] = r.stats()["stored_bytes"]
    assert sizes["rel:0.01"] < sizes[None]


def test_non_contiguous_and_views(repo):
    m = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    sd = {"t": m.t(), "slice": m[::2, 1::3], "expanded": torch.ones(3, 1).expand(3, 4),
          "neg": torch.randn(3, 3, dtype=torch.complex64).conj()}
    repo.commit(sd)
    back = repo.checkout()
    for k, v in sd.items():
        assert torch.equal(back[k], v.resolve_conj()), k
        assert back[k].is_contiguous()


def test_numpy_arrays_round_trip(repo):
    sd = {"f32": np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32),
          "i16_be": np.arange(10, dtype=">i2"),
          "fortran": np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4)),
          "b": np.array([True, False, True]),
          "scalar": np.array(3.5, dtype=np.float32),
          "strided": np.arange(20, dtype=np.int32)[::3]}
    repo.commit(sd)
    back = repo.checkout(framework="np")
    for k, v in sd.items():
        assert np.array_equal(back[k], v), k
        assert back[k].shape == v.shape
    assert back["i16_be"].dtype == np.int16
    torch_back = repo.checkout(framework="pt")
    assert torch.equal(torch_back["f32"], torch.from_numpy(sd["f32"]))


def test_checkout_owns_writable_memory(repo):
    repo.commit({"w": torch.zeros(4)})
    a = repo.checkout()["w"]
    b = repo.checkout()["w"]
    a += 1  # writable, and not shared with another checkout
    assert torch.equal(b, torch.zeros(4)) and torch.equal(a, torch.ones(4))


def test_names_meta_metadata_and_selection(repo):
    sd = {"layer.0.weight": torch.randn(3, 2), "layer.0.bias": torch.randn(3)}
    r = repo.commit(sd, message="m1", meta={"epoch": 3, "acc": 0.5},
                    metadata={"format": "pt"})
    back = repo.checkout(names=["layer.0.bias"])
    assert list(back) == ["layer.0.bias"]
    assert back.meta == {"epoch": "3", "acc": "0.5"}
    assert back.metadata == {"format": "pt"}
    full = repo.checkout(r.snapshot[:10])
    assert set(full) == set(sd) and full["layer.0.weight"].shape == (3, 2)


def test_a_checkout_torch_saves_as_a_dict_that_loads_with_defaults(repo, tmp_path, monkeypatch):
    sd = {"w": torch.randn(3, 2), "b": torch.randn(3)}
    repo.commit(sd, meta={"epoch": 1})
    out = repo.checkout()
    path = tmp_path / "sd.pt"
    torch.save(out, path)
    loaded = torch.load(path)  # weights_only, torch's default: no class of snapstore's
    assert isinstance(loaded, dict) and not isinstance(loaded, snapstore.StateDict)
    assert list(loaded) == list(out) and all(torch.equal(loaded[k], sd[k]) for k in sd)
    for name in ("snapstore", "snapstore._repo"):
        monkeypatch.setitem(sys.modules, name, None)  # the file loads without snapstore
    assert list(torch.load(path, weights_only=False)) == list(out)
    for kept in (copy.copy(out), copy.deepcopy(out)):
        assert type(kept) is snapstore.StateDict and list(kept) == list(out)
        assert (kept.snapshot, kept.meta, kept.metadata) == (out.snapshot, out.meta, out.metadata)
        assert all(torch.equal(kept[k], sd[k]) for k in sd)
    assert copy.deepcopy(out)["w"].data_ptr() != out["w"].data_ptr()


def test_module_state_dict_loads_back(repo):
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8))
    repo.commit(model)
    other = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8))
    other.load_state_dict(repo.checkout())
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), k


def test_requires_grad_parameters_commit(repo):
    p = torch.nn.Parameter(torch.randn(3))
    repo.commit({"p": p})
    assert torch.equal(repo.checkout()["p"], p.detach())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensors_commit_and_check_out_to_device(repo):
    w = torch.randn(100, device="cuda")
    repo.commit({"w": w})
    back = repo.checkout(device="cuda")["w"]
    assert back.device.type == "cuda" and torch.equal(back, w)


def test_contiguous_host_tensors_are_read_in_place():
    """No copy on the way in: the view handed to the library is the tensor's own memory."""
    from snapstore._tensors import host_views

    bf16 = torch.randn(64, 64).to(torch.bfloat16)
    arr = np.ones((3, 3), dtype=np.float32)
    (t_view, a_view, nc_view), framework = host_views(
        {"bf16": bf16, "np": arr, "nc": bf16.t()})
    assert t_view[3].data_ptr() == t_view[4] == bf16.data_ptr() and t_view[5] == 64 * 64 * 2
    assert t_view[1] == "BF16"
    assert a_view[3] is arr and a_view[4] == arr.ctypes.data
    assert nc_view[4] != bf16.data_ptr()  # a transposed view is made contiguous: a copy
    assert framework == "pt"


@pytest.mark.parametrize("tip,checkout", [(0, 0), (1 << 30, 1 << 30), (None, 4096)])
def test_cache_sizes_change_no_result(tmp_path, tip, checkout):
    """A lossy run through handles whose caches hold nothing, everything or a little checks out
    the same tensors as through the default handle."""
    g = torch.Generator().manual_seed(7)
    base = torch.randn(256, 512, generator=g)
    steps = [{"w": base + 1e-3 * k * torch.randn(256, 512, generator=g)} for k in range(5)]
    seen = {}
    for name, kwargs in (("default", {}), ("sized", {"tip_cache_bytes": tip,
                                                     "checkout_cache_bytes": checkout})):
        with snapstore.Repo.init(tmp_path / name, **kwargs) as r:
            for sd in steps:
                r.commit(sd, bound="rel:0.01")
        with snapstore.Repo(tmp_path / name, **kwargs) as r:
            seen[name] = [r.checkout(f"HEAD~{k}")["w"] for k in range(5)]
    for a, b in zip(seen["default"], seen["sized"]):
        assert same_bits(a, b)


@pytest.mark.parametrize("bad", [-1, 1.5, "64M", True])
def test_a_bad_cache_size_is_refused(tmp_path, bad):
    with pytest.raises(snapstore.InvalidInputError, match="cache size"):
        snapstore.Repo.init(tmp_path / "r", checkout_cache_bytes=bad)
    assert not (tmp_path / "r").exists()


F4_X2 = getattr(torch, "float4_e2m1fn_x2", None)


@pytest.mark.skipif(F4_X2 is None, reason="this torch has no float4_e2m1fn_x2")
def test_packed_float4_is_stored_as_safetensors_f4(repo):
    """torch's float4_e2m1fn_x2 holds two MXFP4 values per element; safetensors' F4 counts
    values, so the stored last dimension is twice torch's (as safetensors' own save_file
    writes it), and a checkout gives torch's shape back, in place too."""
    import json

    raw = torch.randint(0, 256, (3, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    packed = raw.view(F4_X2)
    sd = {"a": packed, "t": packed.t(), "empty": torch.empty(0, 4, dtype=F4_X2)}
    repo.commit(sd, bound="rel:0.01")
    header = json.loads(repo.show()["manifest"]["header"])
    assert header["a"]["dtype"] == "F4" and header["a"]["shape"] == [3, 10]
    assert header["t"]["shape"] == [5, 6] and header["empty"]["shape"] == [0, 8]
    back = repo.checkout()
    for name, t in sd.items():
        assert back[name].dtype == F4_X2 and back[name].shape == t.shape, name
        assert torch.equal(back[name].contiguous().view(torch.uint8), t.contiguous().view(torch.uint8)), name
    into = {"a": torch.empty(3, 5, dtype=F4_X2), "t": torch.empty(3, 5, dtype=F4_X2).t(),
            "empty": torch.empty(0, 4, dtype=F4_X2)}
    repo.checkout(into=into)
    assert torch.equal(into["t"].contiguous().view(torch.uint8), packed.t().contiguous().view(torch.uint8))
    with pytest.raises(snapstore.InvalidInputError, match="0-d .*float4_e2m1fn_x2.*reshape it"):
        repo.commit({"z": torch.zeros((), dtype=torch.uint8).view(F4_X2)})


@pytest.mark.skipif(F4_X2 is None, reason="this torch has no float4_e2m1fn_x2")
def test_an_f4_tensor_with_an_odd_last_dimension_is_refused_by_name():
    """An F4 tensor from a file written elsewhere whose last dimension is odd has no torch
    shape (two values per element): the checkout says so instead of reshaping it wrongly."""
    from snapstore._tensors import to_tensor

    assert to_tensor("w", "F4", [2, 2], bytearray(b"\x5a\xa5"), "pt").shape == (2, 1)
    with pytest.raises(snapstore.InvalidInputError,
                       match=r"tensor 'w': an F4 tensor of shape \[2, 1\].*even last dimension"):
        to_tensor("w", "F4", [2, 1], bytearray(b"\x5a"), "pt")
