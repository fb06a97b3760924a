"""Arguments of the wrong type or range, and state that is not a flat mapping of tensors, are
refused with an InvalidInputError naming them (not a builtin TypeError or OverflowError)."""

import pathlib

import pytest
import torch

import snapstore

SD = {"w": torch.zeros(4)}


def search_kwargs():
    return dict(bound="auto", evaluate=lambda sd: 1.0, bounds=[0.01])


BAD_CALLS = [
    (lambda r: r.commit(SD, message=None), r"^message must be a string, not None \(NoneType\)$"),
    (lambda r: r.commit(SD, branch=3), r"^branch must be a string or None, not 3 \(int\)$"),
    (lambda r: r.checkout(None), r"^ref must be a string, not None \(NoneType\)$"),
    (lambda r: r.checkout(None, into=SD), r"^ref must be a string"),
    (lambda r: r.log(limit=-1),
     r"^limit must be a whole number from 0 to 18446744073709551615, not -1 \(int\)$"),
    (lambda r: r.log(limit=2.5), r"^limit must be a whole number .*, not 2.5 \(float\)$"),
    (lambda r: r.commit(SD, research_every=-1, **search_kwargs()),
     r"^research_every must be a whole number from 1 to 4294967295, not -1 \(int\)$"),
    (lambda r: r.commit(SD, research_every=2**40, **search_kwargs()), r"^research_every must"),
    (lambda r: r.commit(SD, max_loss="x", **search_kwargs()),
     r"^max_loss must be a number, not 'x' \(str\)$"),
    (lambda r: r.search(SD, lambda sd: 1.0, alpha=None), r"^alpha must be a number, not None"),
    (lambda r: r.search(SD, lambda sd: 1.0, bounds=0.1),
     r"^bounds must be a list of numbers, not 0.1 \(float\)$"),
    (lambda r: r.search(SD, lambda sd: 1.0, bounds=["0.1"]), r"^each of bounds must be a number"),
    (lambda r: r.branch(5), r"^name must be a string, not 5 \(int\)$"),
    (lambda r: r.tag("v1", ref=None), r"^ref must be a string, not None"),
    (lambda r: r.switch(None), r"^branch must be a string, not None"),
    (lambda r: r.diff("HEAD", 1), r"^b must be a string, not 1 \(int\)$"),
]


@pytest.mark.parametrize("call, message", BAD_CALLS)
def test_a_wrong_argument_is_named(repo, call, message):
    repo.commit(SD)
    with pytest.raises(snapstore.InvalidInputError, match=message):
        call(repo)
    assert len(repo.log()) == 1


def test_numbers_of_numpy_or_torch_are_taken(repo):
    import numpy as np

    report = repo.search(SD, lambda sd: 1.0, max_loss=np.float32(0.01), alpha=torch.tensor(0.5),
                         bounds=np.logspace(-3, -1, 3))
    assert len(report["candidates"]) == 3


@pytest.mark.parametrize("size", [2**64, 2**70, -1])
def test_a_cache_size_out_of_range_is_named(tmp_path, size):
    with pytest.raises(snapstore.InvalidInputError,
                       match=r"^tip_cache_bytes \(a cache size in bytes\) must be a whole number "
                             r"from 0 to 18446744073709551615, not "):
        snapstore.Repo.init(tmp_path / "r", tip_cache_bytes=size)


def test_paths_may_be_bytes_or_path_like(tmp_path):
    snapstore.Repo.init(bytes(tmp_path / "r")).close()
    with snapstore.Repo(pathlib.Path(tmp_path / "r")) as repo:
        repo.commit(SD)
    with snapstore.Repo(bytes(tmp_path / "r")) as repo:
        assert repo.path == str(tmp_path / "r") and len(repo.log()) == 1
    with pytest.raises(snapstore.InvalidInputError,
                       match=r"^path must be a str, bytes or os.PathLike, not 7 \(int\)$"):
        snapstore.Repo(7)


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")
@pytest.mark.parametrize("layout", [torch.strided, torch.jagged], ids=str)
def test_a_nested_tensor_is_refused_by_name(repo, layout):
    nested = torch.nested.nested_tensor([torch.zeros(2), torch.zeros(3)], layout=layout)
    message = (r"^tensor 'n' is a nested tensor, which has no single shape: commit each of its "
               r"t.unbind\(\) tensors under a name$")
    with pytest.raises(snapstore.InvalidInputError, match=message):
        repo.commit({"w": torch.zeros(1), "n": nested})
    repo.commit({"n": torch.zeros(2)})
    with pytest.raises(snapstore.InvalidInputError, match=message):
        repo.checkout(into={"n": nested})


def test_an_optimizer_state_dict_points_at_dcp(repo):
    w = torch.nn.Parameter(torch.randn(3))
    opt = torch.optim.Adam([w])
    w.sum().backward()
    opt.step()
    message = (r"^state_dict looks like an optimizer's \('state' and 'param_groups'\): commit "
               r"takes a flat mapping of names to tensors. Nested state \(an optimizer's "
               r"state_dict, \{'model': ..., 'optim': ...\}\) is saved with snapstore.dcp and "
               r"torch.distributed.checkpoint$")
    for given in (opt.state_dict(), opt):
        with pytest.raises(snapstore.InvalidInputError, match=message):
            repo.commit(given)
    with pytest.raises(snapstore.InvalidInputError,
                       match=r"^tensor 'model' is a dict, not a torch.Tensor or numpy.ndarray: "
                             r"commit takes a flat mapping of names to tensors. Nested state"):
        repo.commit({"model": {"w": w}})
    with pytest.raises(snapstore.InvalidInputError,
                       match=r"^tensor 'epoch' is a int, not a torch.Tensor or numpy.ndarray: "
                             r"numbers and strings go in meta=$"):
        repo.commit({"w": w, "epoch": 3})


@pytest.mark.parametrize("device", ["gpu", "cuda:x", 3.5])
def test_checkout_refuses_an_unknown_device_before_decoding(repo, device):
    repo.commit({"w": torch.ones(4)})
    with pytest.raises(snapstore.InvalidInputError, match="device"):
        repo.checkout(device=device)


def test_checkout_refuses_a_device_torch_cannot_use_here(repo):
    repo.commit({"w": torch.ones(4)})
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(snapstore.InvalidInputError, match="no CUDA device"):
        repo.checkout(device="cuda")
    with pytest.raises(snapstore.InvalidInputError, match="framework='pt'"):
        repo.checkout(device="cuda", framework="np")


def test_checkout_names_must_be_strings(repo):
    repo.commit({"w": torch.ones(4)})
    with pytest.raises(snapstore.InvalidInputError, match="names must be"):
        repo.checkout(names=[b"w"])
    assert list(repo.checkout(names="w")) == ["w"]


@pytest.mark.parametrize("how", ["copy", "deepcopy", "pickle"])
def test_a_repo_handle_is_neither_copied_nor_pickled(repo, how):
    """copy.copy shared the native handle (closing the copy closed the original) and pickle
    failed naming a native class: both now say to open another handle from the path."""
    import copy
    import pickle

    call = {"copy": copy.copy, "deepcopy": copy.deepcopy, "pickle": pickle.dumps}[how]
    with pytest.raises(TypeError, match=r"open another with snapstore.Repo\(path\)"):
        call(repo)
    assert not repo.closed
