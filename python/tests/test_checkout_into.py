"""Checkouts into a model's own tensors, in place: what load_state_dict would copy, exactly."""

import numpy as np
import pytest
import torch

import snapstore
from snapstore.errors import InvalidInputError, NotFoundError

from test_roundtrip import FLOAT8, FLOATS, INTS, random_bits, same_bits


def model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.BatchNorm1d(32),
                               torch.nn.Linear(32, 4))


def snapshot_of(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def test_an_evaluation_loop_loads_each_snapshot_into_one_model(repo):
    states = []
    for epoch in range(4):
        state = snapshot_of(model(epoch))
        repo.commit(state, message=f"epoch {epoch}", bound="rel:0.01")
        states.append(state)
    m = model(99)
    pointers = {k: v.data_ptr() for k, v in m.state_dict().items()}
    for back in [3, 2, 1, 0, 2]:
        expected = repo.checkout(f"HEAD~{back}")
        loaded = repo.checkout(f"HEAD~{back}", into=m)
        assert loaded.snapshot == expected.snapshot
        assert list(loaded) == list(m.state_dict())
        for name, t in m.state_dict().items():
            assert same_bits(t, expected[name]), name
            assert t.data_ptr() == pointers[name], f"{name} was reallocated"
            assert loaded[name].data_ptr() == pointers[name]


def test_every_dtype_checks_out_into_place_bit_exact(repo):
    sd = {f"t.{str(d).split('.')[-1]}": random_bits(d, (7, 5), i)
          for i, d in enumerate(FLOATS + FLOAT8 + INTS)}
    sd["flag"] = torch.rand(33) > 0.5
    sd["scalar"] = torch.tensor(7, dtype=torch.int64)
    sd["empty"] = torch.zeros(0, 3)
    repo.commit(sd)
    into = {k: torch.zeros_like(v) for k, v in sd.items()}
    repo.checkout(into=into)
    for k in sd:
        assert same_bits(into[k], sd[k]), k


def test_numpy_arrays_and_strided_and_tied_tensors(repo):
    a = torch.randn(6, 4)
    repo.commit({"a": a, "b": a.clone() * 2, "c": torch.arange(12, dtype=torch.int32)})
    tied = torch.zeros(6, 4)
    strided = torch.zeros(4, 6).t()  # (6, 4), not contiguous
    assert not strided.is_contiguous()
    arr = np.zeros(12, dtype=np.int32)
    repo.checkout(into={"a": tied, "b": strided, "c": arr}, strict=True)
    assert torch.equal(tied, a) and torch.equal(strided, a * 2)
    assert np.array_equal(arr, np.arange(12, dtype=np.int32))
    # Two names for one tensor (tied weights): both written, the views never overlap.
    repo.commit({"w": a, "w_tied": a})
    shared = torch.zeros(6, 4)
    repo.checkout(into={"w": shared, "w_tied": shared})
    assert torch.equal(shared, a)


def test_mismatches_are_refused_before_anything_is_written(repo):
    snap = repo.commit({"w": torch.ones(3, 4), "b": torch.ones(4)}).snapshot
    cases = [
        ({"w": torch.zeros(3, 4)}, "missing from into: 'b'"),
        ({"w": torch.zeros(3, 4), "b": torch.zeros(4), "x": torch.zeros(1)},
         "missing from the snapshot: 'x'"),
        ({"w": torch.zeros(4, 3), "b": torch.zeros(4)},
         f"tensor \"w\" of snapshot {snap[:12]} is F32 [3, 4], but its buffer holds F32 [4, 3]"),
        ({"w": torch.zeros(3, 4, dtype=torch.float64), "b": torch.zeros(4)},
         "is F32 [3, 4], but its buffer holds F64 [3, 4]"),
        # One memory location per row: refused up front, not by copy_ after "b" was written.
        ({"b": torch.zeros(4), "w": torch.zeros(3, 1).expand(3, 4)}, "is expanded"),
    ]
    for into, message in cases:
        with pytest.raises(InvalidInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
            repo.checkout(into=into)
        assert all(torch.count_nonzero(t) == 0 for t in into.values()), message
    with pytest.raises(InvalidInputError, match="read-only"):
        ro = np.zeros((3, 4), dtype=np.float32)
        ro.flags.writeable = False
        repo.checkout(into={"w": ro, "b": np.zeros(4, np.float32)})
    with pytest.raises(InvalidInputError, match="names or into"):
        repo.checkout(names=["w"], into={"w": torch.zeros(3, 4)})
    with pytest.raises(NotFoundError):
        repo.checkout("HEAD~5", into={"w": torch.zeros(3, 4)})


def test_strict_false_loads_what_both_hold(repo):
    repo.commit({"w": torch.ones(3, 4), "extra": torch.ones(2)})
    into = {"w": torch.zeros(3, 4), "mine": torch.zeros(5)}
    out = repo.checkout(into=into, strict=False)
    assert list(out) == ["w"]
    assert torch.equal(into["w"], torch.ones(3, 4))
    assert torch.count_nonzero(into["mine"]) == 0
    # What load_state_dict(strict=False) would return.
    assert (out.missing_keys, out.unexpected_keys) == (["mine"], ["extra"])
    full = repo.checkout(into={"w": torch.zeros(3, 4), "extra": torch.zeros(2)})
    assert (full.missing_keys, full.unexpected_keys) == ([], [])
    assert (repo.checkout().missing_keys, repo.checkout().unexpected_keys) == ([], [])


def test_strict_false_with_no_name_in_common_is_refused(repo):
    snap = repo.commit({"a": torch.ones(2), "b": torch.ones(2)}).snapshot
    into = {"x": torch.zeros(2), "y": torch.zeros(2)}
    with pytest.raises(InvalidInputError,
                       match=f"snapshot {snap[:12]} and into have no tensor name in common, so "
                             "strict=False would load nothing: the snapshot holds 'a', 'b'; "
                             "into holds 'x', 'y'$"):
        repo.checkout(into=into, strict=False)
    assert all(torch.count_nonzero(t) == 0 for t in into.values())
    with pytest.raises(InvalidInputError, match="into holds nothing$"):
        repo.checkout(into={}, strict=False)


def test_a_wrapper_prefix_is_pointed_out(repo):
    """A snapshot of a DDP model (``module.``) into a plain one, and a plain snapshot into a
    torch.compile'd model (``_orig_mod.``): the message says how to map the names."""
    plain = model(0)
    repo.commit({"module." + k: v for k, v in plain.state_dict().items()})
    hint = (r"\(the snapshot's names start with 'module.': check out "
            r"into=\{'module.' \+ k: v for k, v in model.state_dict\(\).items\(\)\}\)$")
    for strict in (False, True):
        with pytest.raises(InvalidInputError, match=hint):
            repo.checkout(into=model(1), strict=strict)
    sd = model(1).state_dict()
    repo.checkout(into={"module." + k: v for k, v in sd.items()})  # the hint works
    assert all(torch.equal(sd[k], v) for k, v in plain.state_dict().items())

    repo.commit(plain.state_dict())
    compiled = {"_orig_mod." + k: v for k, v in model(2).state_dict().items()}
    with pytest.raises(InvalidInputError,
                       match=r"\(into's names start with '_orig_mod.': check out "
                             r"into=\{k.removeprefix\('_orig_mod.'\): v for k, v in "
                             r"model.state_dict\(\).items\(\)\}, or into the unwrapped model\)$"):
        repo.checkout(into=compiled, strict=False)


def test_tied_and_overlapping_targets_are_chosen_in_order():
    """The O(n log n) overlap check takes, in order, each range that overlaps none taken
    before it: what comparing each with every earlier one (the old O(n^2) walk) takes."""
    import random

    from snapstore._tensors import _first_disjoint

    def walk(spans):
        taken, kept = [], set()
        for i, span in enumerate(spans):
            if span is None:
                continue
            start, end = span
            if any(start < e and s < end for s, e in taken):
                continue
            kept.add(i)
            if end > start:
                taken.append(span)
        return kept

    rng = random.Random(7)
    for trial in range(300):
        spans = []
        for _ in range(rng.randint(0, 30)):
            start = rng.randint(0, 60)
            spans.append(None if rng.random() < 0.1 else (start, start + rng.randint(0, 12)))
        assert _first_disjoint(spans) == walk(spans), spans


def test_checkout_into_many_tensors_is_not_quadratic():
    """20,000 tensors: the old pairwise overlap check took 21 s here, the sorted one 0.4 s."""
    import time

    from snapstore._tensors import checkout_targets

    into = {f"l.{i}": torch.empty(4) for i in range(20000)}
    into["tied"] = into["l.7"]
    started = time.perf_counter()
    targets, staged = checkout_targets(into)
    assert time.perf_counter() - started < 5
    assert len(targets) == len(into) and [s[0] for s in staged] == [into["tied"]]


def test_writing_parameters_saved_for_backward_fails_backward_as_load_state_dict_does(repo):
    repo.commit({"w": torch.ones(2, 3), "b": torch.ones(2)})
    w, b = torch.nn.Parameter(torch.zeros(2, 3)), torch.nn.Parameter(torch.zeros(2))
    loss = (w * w).sum() + (b * b).sum()  # saves w and b, written in place below
    repo.checkout(into={"w": w, "b": b})
    assert torch.equal(w.detach(), torch.ones(2, 3))
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_tensors_are_loaded_through_the_host(repo):
    w = torch.randn(64, 32)
    repo.commit({"w": w})
    target = torch.zeros(64, 32, device="cuda")
    repo.checkout(into={"w": target})
    assert torch.equal(target.cpu(), w)
