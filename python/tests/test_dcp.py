"""torch.distributed.checkpoint save/load through snapstore, in one process."""

import pytest
import torch
from torch import nn

import snapstore

dcp = pytest.importorskip("torch.distributed.checkpoint")
import snapstore.dcp  # noqa: E402  (needs torch.distributed)


def model():
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Linear(16, 4))


def test_each_save_is_a_snapshot_and_load_restores(repo):
    torch.manual_seed(0)
    m = model()
    opt = torch.optim.Adam(m.parameters())
    m(torch.randn(4, 8)).sum().backward()
    opt.step()
    state = {"model": m.state_dict(), "optim": opt.state_dict(), "step": 7}
    w = snapstore.dcp.StorageWriter(repo, message="save 1", meta={"step": 7})
    dcp.save(state, storage_writer=w)
    assert w.report is not None and repo.log()[0]["message"] == "save 1"
    dcp.save(state, storage_writer=snapstore.dcp.StorageWriter(repo, bound="rel:0.01"))
    assert len(repo.log()) == 2 and repo.log()[0]["bound"] == {"kind": "rel", "eps": 0.01}

    fresh = model()
    fresh_opt = torch.optim.Adam(fresh.parameters())
    fresh(torch.randn(4, 8)).sum().backward()
    fresh_opt.step()  # creates the optimizer state tensors that load fills
    target = {"model": fresh.state_dict(), "optim": fresh_opt.state_dict(), "step": 0}
    dcp.load(target, storage_reader=snapstore.dcp.StorageReader(repo, "HEAD~1"))
    for k, v in m.state_dict().items():
        assert torch.equal(target["model"][k], v), k
    assert target["step"] == 7
    exp = opt.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(target["optim"]["state"][0]["exp_avg"], exp)


def test_lossy_save_keeps_the_bound(repo):
    m = model()
    dcp.save({"model": m.state_dict()},
             storage_writer=snapstore.dcp.StorageWriter(repo, bound="rel:0.01"))
    target = {"model": model().state_dict()}
    dcp.load(target, storage_reader=snapstore.dcp.StorageReader(repo))
    for k, v in m.state_dict().items():
        got = target["model"][k]
        if v.is_floating_point():
            assert ((got - v).abs() <= 0.01 * v.abs()).all(), k
        else:
            assert torch.equal(got, v), k


def test_a_lossy_save_keeps_adams_step_exact(repo):
    # Adam's step is a float scalar tensor: under rel:0.01 a step of 6 came back as 6.0098.
    m = model()
    opt = torch.optim.Adam(m.parameters())
    for _ in range(3):
        m(torch.randn(4, 8)).sum().backward()
        opt.step()
    opt.state_dict()["state"][0]["step"].fill_(1000.0)
    dcp.save({"optim": opt.state_dict()},
             storage_writer=snapstore.dcp.StorageWriter(repo, bound="rel:0.01"))
    fresh_opt = torch.optim.Adam(m.parameters())
    m(torch.randn(4, 8)).sum().backward()
    fresh_opt.step()
    target = {"optim": fresh_opt.state_dict()}
    dcp.load(target, storage_reader=snapstore.dcp.StorageReader(repo))
    for i, st in opt.state_dict()["state"].items():
        assert torch.equal(target["optim"]["state"][i]["step"], st["step"]), i
        got, want = target["optim"]["state"][i]["exp_avg"], st["exp_avg"]
        assert ((got - want).abs() <= 0.01 * want.abs()).all(), i


def test_writer_refuses_auto():
    with pytest.raises(snapstore.InvalidInputError, match="evaluator"):
        snapstore.dcp.StorageWriter(None, bound="auto")
