"""Bad input is refused with a message naming what is wrong, and leaves nothing behind."""

import numpy as np
import pytest
import torch

import snapstore
from snapstore import errors


def test_hierarchy():
    for cls in (errors.InvalidInputError, errors.NotFoundError, errors.BusyError,
                errors.CorruptionError, errors.EvaluatorError, errors.ClosedRepositoryError,
                errors.StorageIOError):
        assert issubclass(cls, snapstore.Error)
    assert issubclass(errors.InvalidInputError, ValueError)
    assert issubclass(errors.NotFoundError, LookupError)


def test_open_missing_repository(tmp_path):
    with pytest.raises(snapstore.NotFoundError,
                       match=r"no snapstore repository at .* \(snapstore\.Repo\.init\(path\) makes one\)$"):
        snapstore.Repo(tmp_path / "nope")


def test_init_twice(tmp_path):
    snapstore.Repo.init(tmp_path / "r").close()
    with pytest.raises(snapstore.InvalidInputError, match="already exists"):
        snapstore.Repo.init(tmp_path / "r")


def test_unknown_ref(repo):
    repo.commit({"w": torch.zeros(2)})
    with pytest.raises(snapstore.NotFoundError, match='unknown ref "nope"'):
        repo.checkout("nope")
    with pytest.raises(snapstore.NotFoundError, match="no tensor"):
        repo.checkout(names=["missing"])


def test_empty_branch(repo):
    with pytest.raises(snapstore.NotFoundError, match="no snapshots yet"):
        repo.checkout()


@pytest.mark.parametrize("value, needle", [
    (torch.zeros(3).to_sparse(), "sparse"),
    (torch.quantize_per_tensor(torch.rand(4), 0.1, 0, torch.quint8), "quantized"),
    ([1.0, 2.0], "is a list, not a torch.Tensor"),
    (np.array(["a", "b"]), "numpy dtype <U1"),
    (torch.zeros(2, device="meta"), "meta device"),
])
def test_unsupported_tensors_are_named(repo, value, needle):
    with pytest.raises(snapstore.InvalidInputError, match=needle) as e:
        repo.commit({"ok": torch.zeros(1), "bad.tensor": value})
    assert "bad.tensor" in str(e.value)
    with pytest.raises(snapstore.NotFoundError):
        repo.checkout()


def test_wrong_types(repo):
    with pytest.raises(snapstore.InvalidInputError, match="mapping"):
        repo.commit([torch.zeros(1)])
    with pytest.raises(snapstore.InvalidInputError, match="names must be strings"):
        repo.commit({1: torch.zeros(1)})
    with pytest.raises(snapstore.InvalidInputError, match="framework"):
        repo.checkout(framework="jax")
    with pytest.raises(TypeError):
        repo.commit({"w": torch.zeros(1)}, message=5)


@pytest.mark.parametrize("bound, needle", [
    ("rel:2", "relative bound must lie in"),
    ("abs:-1", "absolute bound must be positive"),
    ("fuzzy", "use lossless, rel:EPS or abs:EPS"),
    (0.01, "bound must be a string"),
])
def test_bad_bounds(repo, bound, needle):
    with pytest.raises(snapstore.InvalidInputError, match=needle):
        repo.commit({"w": torch.zeros(4)}, bound=bound)


def test_auto_needs_an_evaluator(repo):
    with pytest.raises(snapstore.InvalidInputError, match="needs evaluate"):
        repo.commit({"w": torch.zeros(4)}, bound="auto")


def test_closed_repository(tmp_path):
    with snapstore.Repo.init(tmp_path / "r") as r:
        r.commit({"w": torch.zeros(2)})
    assert r.closed
    with pytest.raises(snapstore.ClosedRepositoryError, match="closed"):
        r.checkout()
    with pytest.raises(snapstore.ClosedRepositoryError):
        r.commit({"w": torch.zeros(2)})
    r.close()  # idempotent
    # The path outlives the handle: it is what opens the repository again.
    assert repr(r) == f"<snapstore.Repo {r.path!r} closed>"
    with snapstore.Repo(r.path) as again:
        assert len(again.log()) == 1 and repr(again) == f"<snapstore.Repo {r.path!r}>"


def test_bad_ref_names_and_duplicates(repo):
    repo.commit({"w": torch.zeros(2)})
    with pytest.raises(snapstore.InvalidInputError, match="invalid ref name"):
        repo.tag("../x")
    repo.tag("v1")
    with pytest.raises(snapstore.InvalidInputError, match="already exists"):
        repo.tag("v1")


def test_numpy_and_torch_mixed(repo):
    # Mixed frameworks are allowed; the checkout framework is the caller's choice.
    repo.commit({"a": torch.ones(2), "b": np.ones(2, dtype=np.float32)})
    back = repo.checkout()
    assert torch.equal(back["a"], back["b"])


def test_damaged_pack_is_a_corruption_error_naming_it(repo):
    import pathlib

    repo.commit({"w": torch.randn(4096)})
    (pack,) = pathlib.Path(repo.path, "packs").glob("*.pack")
    data = bytearray(pack.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside the tensor's chunk
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))
    with pytest.raises(snapstore.CorruptionError, match="is damaged") as e:
        repo.checkout()
    assert pack.stem in str(e.value)


def test_tiny_relative_bound_is_refused_when_parsed(repo):
    # Finer than f64 can step: an input error, not a decode failure of the first chunk.
    with pytest.raises(snapstore.InvalidInputError, match="2\\^-53"):
        repo.commit({"w": torch.ones(8)}, bound="rel:1e-20")
    assert repo.log() == []


def test_a_relative_path_keeps_naming_its_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = snapstore.Repo.init("r")
    first.commit({"w": torch.zeros(4)})
    # A launcher changes directory; there "r" names another repository.
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    other = snapstore.Repo.init("r")
    first.commit({"w": torch.ones(4)}, message="second")
    assert [e["message"] for e in first.log()] == ["second", ""]
    assert other.log() == []
    assert first.path == str(tmp_path / "r")


def _open_in_child(path, queue):
    try:
        snapstore.Repo(path).log()
        queue.put("opened")
    except snapstore.InvalidInputError as e:
        queue.put(str(e))


def test_a_forked_child_is_told_to_spawn(tmp_path):
    # sled's threads do not survive fork(): a child of a process that opened a repository used
    # to wait for ever on its first open.
    import multiprocessing as mp
    with snapstore.Repo.init(tmp_path / "r") as r:
        r.commit({"w": torch.zeros(4)})
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_open_in_child, args=(str(tmp_path / "r"), queue))
    child.start()
    child.join(60)
    assert not child.is_alive(), "the forked child hung"
    assert "spawn" in queue.get(timeout=5)
    # The spawn start method works.
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_open_in_child, args=(str(tmp_path / "r"), queue))
    child.start()
    child.join(120)
    assert queue.get(timeout=5) == "opened"
