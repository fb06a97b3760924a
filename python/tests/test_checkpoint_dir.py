"""Committing what a trainer saved on disk: a safetensors file, or a checkpoint directory as
``save_pretrained`` writes one (shards, their index, config.json), as one snapshot."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from snapstore.errors import InvalidInputError, StorageIOError


def epoch_state(epoch):
    torch.manual_seed(0)
    base = {f"layers.{i}.weight": torch.randn(32, 16) for i in range(4)}
    base["embed.weight"] = torch.randn(50, 8).to(torch.bfloat16)
    torch.manual_seed(epoch + 1)
    return {k: (v.float() + 1e-3 * epoch * torch.randn(v.shape)).to(v.dtype)
            for k, v in base.items()}


def save_sharded(state, path, shards):
    """The layout of ``save_pretrained``: numbered shards, their index, a config.json."""
    path.mkdir(parents=True, exist_ok=True)
    names = list(state)
    per = -(-len(names) // shards)
    weight_map = {}
    for k in range(shards):
        file = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: state[n] for n in names[k * per:(k + 1) * per]}
        save_file(part, str(path / file), metadata={"format": "pt"})
        weight_map.update({n: file for n in part})
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (path / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (path / "config.json").write_text('{"model_type": "toy"}')
    return path


def kept_files(path):
    return sorted(p.name for p in path.iterdir() if p.name != "optimizer.pt")


def test_a_checkpoint_directory_is_one_snapshot_and_comes_back_whole(repo, tmp_path):
    dirs = []
    for epoch, shards in enumerate([2, 3]):
        d = save_sharded(epoch_state(epoch), tmp_path / f"checkpoint-{epoch}", shards)
        (d / "optimizer.pt").write_bytes(b"not kept")
        r = repo.commit_path(d, message=f"epoch {epoch}", bound="rel:0.01")
        assert r.left_out == ["optimizer.pt"] and r.tensors == 5
        if epoch:
            assert r.deltas == 5, r  # each tensor against its parent, across the reshard
        dirs.append((d, r.snapshot))
    for d, snapshot in dirs:
        out = tmp_path / f"out-{snapshot}"
        report = repo.checkout_to(out, snapshot)
        assert report["tensors"] == 5 and report["path"] == str(out)
        assert kept_files(out) == kept_files(d)
        for name in ("config.json", "model.safetensors.index.json"):
            assert (out / name).read_bytes() == (d / name).read_bytes()
    # The tensors, as a state_dict, within the bound.
    state = repo.checkout("HEAD")
    for name, t in epoch_state(1).items():
        got = state[name]
        assert got.dtype == t.dtype
        assert torch.all((got.float() - t.float()).abs() <= 0.01 * t.float().abs() + 1e-30)


def test_a_file_commits_by_path_and_checks_out_byte_for_byte(repo, tmp_path):
    path = tmp_path / "epoch_0.safetensors"
    save_file(epoch_state(0), str(path), metadata={"epoch": "0"})
    r = repo.commit_path(str(path), "epoch 0", meta={"epoch": 0})
    assert r.left_out == [] and r.tensors == 5
    out = tmp_path / "deploy.safetensors"
    repo.checkout_to(out)
    assert out.read_bytes() == path.read_bytes()
    one = tmp_path / "one.safetensors"
    assert repo.checkout_to(one, "HEAD", names="embed.weight")["tensors"] == 1


def test_what_cannot_be_committed_or_written_is_refused_by_name(repo, tmp_path):
    good = save_sharded(epoch_state(0), tmp_path / "good", 2)
    repo.commit_path(good)
    twice = save_sharded(epoch_state(1), tmp_path / "twice", 2)
    save_file({"layers.0.weight": torch.zeros(2)}, str(twice / "extra.safetensors"))
    with pytest.raises(InvalidInputError, match=r"twice: tensor \"layers.0.weight\" is in both"):
        repo.commit_path(twice)
    with pytest.raises(StorageIOError, match="no-such-dir"):
        repo.commit_path(tmp_path / "no-such-dir" / "model.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match=r"empty: no \*.png file \(frames\) and no \*.safetensors"):
        repo.commit_path(tmp_path / "empty")
    with pytest.raises(InvalidInputError, match='bound="auto" needs evaluate='):
        repo.commit_path(good, bound="auto")
    with pytest.raises(InvalidInputError, match='evaluate= is used only with bound="auto"'):
        repo.commit_path(good, evaluate=lambda sd: 0.9)
    assert len(repo.log()) == 1
    # A directory holding another checkpoint's shards would mix the two.
    other = save_sharded(epoch_state(1), tmp_path / "other", 3)
    with pytest.raises(InvalidInputError, match="holds model-00001-of-00003.safetensors"):
        repo.checkout_to(other)


def test_bound_auto_searches_a_checkpoint_directory_as_one_state_dict(repo, tmp_path):
    """``commit_path(DIR, bound="auto")`` hands the evaluator every shard's tensors in one
    state_dict, first as saved, and stores the candidate it chose exactly as evaluated."""
    repo.commit_path(save_sharded(epoch_state(0), tmp_path / "c0", 2))
    d = save_sharded(epoch_state(1), tmp_path / "c1", 2)
    seen = []

    def evaluate(state):
        seen.append({k: v.clone() for k, v in state.items()})
        return 0.9  # no loss: the largest bound wins, at once

    r = repo.commit_path(d, "epoch 1", bound="auto", evaluate=evaluate, bounds=[0.01, 0.05])
    assert r.searched and r.bound == "rel:0.05" and r.left_out == [], r
    assert len(seen) == 2
    for name, t in epoch_state(1).items():
        assert torch.equal(seen[0][name], t), name
    stored = repo.checkout("HEAD")
    assert stored.keys() == seen[1].keys()
    for name, t in stored.items():
        assert torch.equal(t, seen[1][name]), name
    assert any(not torch.equal(t, seen[0][name]) for name, t in stored.items())

    kinds = []
    d2 = save_sharded(epoch_state(2), tmp_path / "c2", 3)
    repo.commit_path(d2, bound="auto", framework="np",
                     evaluate=lambda state: kinds.append(type(state["layers.0.weight"])) or 0.9)
    assert kinds and all(k.__module__ == "numpy" for k in kinds), kinds
    frames = tmp_path / "frames.npy"
    np.save(frames, np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(InvalidInputError, match=r'frames.npy: bound="auto" searches the bound of a '
                                                r'checkpoint'):
        repo.commit_path(frames, bound="auto", evaluate=lambda state: 0.9)
    with pytest.raises(InvalidInputError, match="framework must be 'pt' or 'np', not 'jax'"):
        repo.commit_path(d2, bound="auto", evaluate=lambda state: 0.9, framework="jax")
    assert len(repo.log()) == 3


def test_kind_decides_for_a_checkpoint_beside_more_pngs(repo, tmp_path):
    """A directory of one safetensors file and more PNGs waits for ``kind``, as ``--kind``."""
    ckpt = tmp_path / "samples"
    ckpt.mkdir()
    save_file(epoch_state(0), str(ckpt / "model.safetensors"))
    for i in range(3):
        (ckpt / f"sample_{i}.png").write_bytes(b"\x89PNG not decoded here")
    with pytest.raises(InvalidInputError, match=r'1 \*\.safetensors file\(s\) and 3 PNG frames: '
                                                r'--kind tensors \(Python: kind="tensors"\)'):
        repo.commit_path(ckpt)
    assert repo.log() == []
    r = repo.commit_path(ckpt, kind="tensors")
    assert r.left_out == [f"sample_{i}.png" for i in range(3)]
    with pytest.raises(InvalidInputError, match=r"kind must be 'auto', 'tensors' or 'frames', "
                                                r"not 'pictures'"):
        repo.commit_path(ckpt, kind="pictures")


def test_checkout_to_a_link_replaces_it_and_leaves_the_blob(repo, tmp_path):
    """A hub cache's snapshot file is a link to a blob other revisions share: the checkout
    replaces the link, the blob keeps its bytes, and the report names what the link named."""
    repo.commit(epoch_state(0))
    blob = tmp_path / "blobs" / "9f2c"
    blob.parent.mkdir()
    blob.write_bytes(b"another revision")
    link = tmp_path / "model.safetensors"
    link.symlink_to(blob)
    report = repo.checkout_to(link)
    assert report["replaced_link"] == str(blob)
    assert blob.read_bytes() == b"another revision" and not link.is_symlink()
    assert "replaced_link" not in repo.checkout_to(link)
