"""bfloat16 and float8 through numpy: ml_dtypes types, or a refusal, never integer bit views
that a later commit would store as U16/U8."""

import sys

import numpy as np
import pytest
import torch

import snapstore

from test_roundtrip import FLOAT8, random_bits, same_bits

NARROW = [torch.bfloat16] + FLOAT8


def narrow_state_dict():
    sd = {f"t{i}": random_bits(dt, (3, 4), i) for i, dt in enumerate(NARROW)}
    sd["f32"] = torch.randn(5)
    return sd


def manifest_dtypes(repo):
    return {t["name"]: t["dtype"] for t in repo.show()["manifest"]["tensors"]}


def test_a_numpy_checkout_commits_back_with_its_dtypes(repo):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    sd = narrow_state_dict()
    repo.commit(sd)
    before = manifest_dtypes(repo)
    arrays = repo.checkout(framework="np")
    assert arrays["t0"].dtype == np.dtype(ml_dtypes.bfloat16)
    r = repo.commit(dict(arrays), message="through numpy")
    assert manifest_dtypes(repo) == before
    assert r.deduplicated == len(sd)  # the same bytes under the same dtypes
    back = repo.checkout()
    for name, t in sd.items():
        assert same_bits(back[name], t), name


def test_without_ml_dtypes_a_numpy_checkout_of_bfloat16_or_float8_is_refused(repo, monkeypatch):
    sd = narrow_state_dict()
    repo.commit(sd)
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)  # import ml_dtypes now fails
    with pytest.raises(snapstore.InvalidInputError,
                       match=r"tensor 't0' is BF16, which numpy holds only with ml_dtypes "
                             r"bfloat16: pip install ml_dtypes \(a dependency of snapstore\), "
                             r"or check out with framework='pt'"):
        repo.checkout(framework="np")
    for i in range(1, len(NARROW)):
        with pytest.raises(snapstore.InvalidInputError, match=f"tensor 't{i}' is F8_"):
            repo.checkout(names=[f"t{i}"], framework="np")
    # What numpy can hold still checks out, and torch takes every dtype.
    assert repo.checkout(names=["f32"], framework="np")["f32"].dtype == np.float32
    back = repo.checkout()
    assert all(same_bits(back[n], t) for n, t in sd.items())
