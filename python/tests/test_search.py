"""The bound search with a Python callable as the evaluator."""

import math
import re

import numpy as np
import pytest
import torch

import snapstore

BOUNDS = [1e-3, 1e-2, 5e-2]


def weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(128, 64, generator=g), "b": torch.randn(64, generator=g)}


def closeness(reference, scale):
    """An 'accuracy' that drops as the candidate moves away from the reference."""
    def evaluate(sd):
        err = max(((sd[k] - reference[k]).abs() / reference[k].abs().clamp_min(1e-6)).max().item()
                  for k in reference)
        return 1.0 - err * scale
    return evaluate


def test_search_calls_the_callable_with_candidates_and_writes_nothing(repo):
    sd = weights()
    seen = []

    def evaluate(candidate):
        assert set(candidate) == {"w", "b"} and candidate["w"].shape == (128, 64)
        assert candidate["w"].dtype == torch.float32
        seen.append(candidate)  # keeping a candidate is allowed
        return closeness(sd, 0.0)(candidate)

    report = repo.search(sd, evaluate=evaluate, bounds=BOUNDS)
    assert report["evaluations"] == len(seen) >= 2
    assert report["chosen"]["bound"] == 5e-2  # no loss at any bound: the largest wins
    assert [c["bound"] for c in report["candidates"]] == BOUNDS
    assert torch.equal(seen[0]["w"], sd["w"])  # the baseline is the original
    with pytest.raises(snapstore.NotFoundError):
        repo.checkout()


def test_search_respects_max_loss(repo):
    sd = weights()
    # alpha=1 scores the ratio alone: the largest bound within max_loss wins.
    report = repo.search(sd, evaluate=closeness(sd, 1.0), max_loss=0.02, alpha=1.0, bounds=BOUNDS)
    chosen = report["chosen"]
    assert chosen["spec"] == "rel:0.01" and chosen["loss"] <= 0.02
    rows = {c["bound"]: c for c in report["candidates"]}
    assert rows[0.05]["admissible"] is False and rows[0.05]["loss"] > 0.02
    # alpha=0 scores kept accuracy alone: the smallest bound wins.
    report = repo.search(sd, evaluate=closeness(sd, 1.0), max_loss=0.02, alpha=0.0, bounds=BOUNDS)
    assert report["chosen"]["spec"] == "rel:0.001"


def test_commit_auto_commits_under_the_chosen_bound(repo):
    sd = weights()
    r = repo.commit(sd, bound="auto", evaluate=closeness(sd, 1.0), max_loss=0.02, alpha=1.0,
                    bounds=BOUNDS)
    assert r.searched and r.bound == "rel:0.01"
    assert r.search["chosen"]["spec"] == "rel:0.01"
    log = repo.log()
    assert log[0]["bound"] == {"kind": "rel", "eps": 0.01} and log[0]["meta"]["search.bound"] == "rel:0.01"
    back = repo.checkout()
    assert ((back["w"] - sd["w"]).abs() <= 0.01 * sd["w"].abs()).all()


@pytest.mark.parametrize("result", [float("nan"), float("inf"), "boom"])
def test_failing_or_nan_evaluator_commits_nothing(repo, result):
    calls = []

    def evaluate(sd):
        calls.append(1)
        if result == "boom":
            raise RuntimeError("evaluation exploded")
        return result

    with pytest.raises(snapstore.EvaluatorError) as e:
        repo.commit(weights(), bound="auto", evaluate=evaluate, bounds=BOUNDS)
    assert calls
    if result == "boom":
        assert isinstance(e.value.__cause__, RuntimeError)
        assert "evaluation exploded" in str(e.value)
    else:
        assert "not a finite accuracy" in str(e.value)
    with pytest.raises(snapstore.NotFoundError):
        repo.checkout()
    assert repo.stats()["snapshots"] == 0


def test_evaluator_failing_late_commits_nothing(repo):
    repo.commit(weights(0))
    n = []

    def evaluate(sd):
        n.append(1)
        if len(n) == 2:  # the baseline passed; the first candidate fails
            raise ValueError("second call fails")
        return 0.9

    with pytest.raises(snapstore.EvaluatorError, match="second call fails"):
        repo.commit(weights(1), bound="auto", evaluate=evaluate, bounds=BOUNDS)
    assert len(repo.log()) == 1


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), SystemExit(3)], ids=repr)
def test_interrupt_or_exit_in_the_evaluator_is_raised_unwrapped(repo, stop):
    def evaluate(sd):
        raise stop

    with pytest.raises(type(stop)) as e:
        repo.commit(weights(), bound="auto", evaluate=evaluate, bounds=BOUNDS)
    assert e.value is stop
    with pytest.raises(type(stop)) as e:
        repo.search(weights(), evaluate=evaluate, bounds=BOUNDS)
    assert e.value is stop
    assert repo.stats()["snapshots"] == 0


def test_non_number_result_is_an_evaluator_error(repo):
    with pytest.raises(snapstore.EvaluatorError):
        repo.search(weights(), evaluate=lambda sd: "high", bounds=BOUNDS)


@pytest.mark.parametrize("result", [
    "0.9", True, np.bool_(True), torch.tensor(True), np.array([True]),
    torch.tensor([0.9, 0.8]), torch.tensor(0.5 + 1j)], ids=repr)
def test_a_bool_string_or_array_accuracy_is_refused(repo, result):
    """float() takes "0.9" and True: ``return acc > 0.9`` would make every bound lose
    nothing, and the largest would win."""
    shown = f"{result!r} ({type(result).__name__})"
    with pytest.raises(snapstore.EvaluatorError,
                       match=re.escape(f"evaluate returned {shown}: it must return the accuracy "
                                       "as a real number (int, float, a numpy real scalar, or an "
                                       "array or tensor of one element of a real dtype)")) as e:
        repo.commit(weights(), bound="auto", evaluate=lambda sd: result, bounds=BOUNDS)
    assert isinstance(e.value.__cause__, TypeError)
    assert repo.stats()["snapshots"] == 0


@pytest.mark.parametrize("result", [
    1, 0.9, np.float32(0.9), np.int64(1), np.array(0.9), np.array([0.9]),
    torch.tensor(0.9), torch.tensor([0.9]), torch.tensor(1, dtype=torch.int32),
    torch.tensor(0.9, requires_grad=True)], ids=repr)
def test_a_real_number_accuracy_is_taken(repo, result):
    report = repo.search(weights(), evaluate=lambda sd: result, bounds=BOUNDS)
    assert report["baseline_accuracy"] == pytest.approx(float(result.item() if hasattr(
        result, "item") else result))


def test_numpy_state_dict_gives_numpy_candidates(repo):
    sd = {k: v.numpy() for k, v in weights().items()}
    kinds = set()

    def evaluate(c):
        kinds.add(type(c["w"]).__name__)
        return 1.0

    repo.search(sd, evaluate=evaluate, bounds=BOUNDS)
    assert kinds == {"ndarray"}


def test_research_every_reuses_the_bound(repo):
    calls = []

    def evaluate(sd):
        calls.append(1)
        return 1.0

    first = repo.commit(weights(0), bound="auto", evaluate=evaluate, bounds=BOUNDS,
                        research_every=3)
    n = len(calls)
    second = repo.commit(weights(1), bound="auto", evaluate=evaluate, bounds=BOUNDS)
    assert first.searched and not second.searched
    assert second.bound == first.bound and len(calls) - n == 2  # the recheck only
    assert not math.isnan(second.ratio)


@pytest.mark.parametrize("how", ["commit", "search"])
def test_an_evaluator_loading_candidates_into_the_committed_model_is_refused(repo, how):
    """The obvious code with one model, `model.load_state_dict(candidate)` in the evaluator,
    overwrites the very tensors being searched: refused at the first candidate, naming the
    tensor, with nothing stored (before, the last candidate was committed as the model)."""
    model = torch.nn.Linear(64, 32)
    sd = model.state_dict()

    def evaluate(candidate):
        model.load_state_dict(candidate)
        return 1.0

    with pytest.raises(snapstore.EvaluatorError,
                       match="^invalid evaluator: evaluating rel:[0-9.e-]+: the model being "
                             "committed now holds this candidate's values, not its own: the "
                             'evaluator wrote them into tensor "(weight|bias)"'):
        if how == "commit":
            repo.commit(sd, bound="auto", evaluate=evaluate, bounds=BOUNDS)
        else:
            repo.search(sd, evaluate=evaluate, bounds=BOUNDS)
    assert repo.stats()["snapshots"] == 0


def test_an_evaluator_on_a_separate_model_is_not_refused(repo):
    model, probe = torch.nn.Linear(64, 32), torch.nn.Linear(64, 32)

    def evaluate(candidate):
        probe.load_state_dict(candidate)
        return 1.0

    r = repo.commit(model.state_dict(), bound="auto", evaluate=evaluate, bounds=BOUNDS)
    assert r.searched


@pytest.mark.parametrize("bounds", [[1e-20], [1e-16, 1e-2], [0.0], [1.5]])
def test_candidate_bounds_no_quantizer_can_step_are_refused_as_arguments(repo, bounds):
    """A candidate finer than f64 can step was reported as a damaged repository
    (CorruptionError: invalid error bound), while rel:1e-20 as a bound was refused as input."""
    with pytest.raises(snapstore.InvalidInputError, match="candidates"):
        repo.search(weights(), evaluate=lambda sd: 1.0, bounds=bounds)
    with pytest.raises(snapstore.InvalidInputError, match="candidates"):
        repo.commit(weights(), bound="auto", evaluate=lambda sd: 1.0, bounds=bounds)
    assert repo.stats()["snapshots"] == 0
