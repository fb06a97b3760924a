"""log, show, diff, tag, branch and stats return the CLI's JSON fields as plain objects."""

import json
import os
import shutil
import subprocess

import pytest
import torch

import snapstore


def two_commits(repo):
    a = repo.commit({"w": torch.zeros(10), "b": torch.ones(3)}, message="first", meta={"epoch": 1})
    w = torch.zeros(10)
    w[0] = 1.0
    b = repo.commit({"w": w, "b": torch.ones(3)}, message="second", meta={"epoch": 2})
    return a, b


def test_commit_report_fields(repo):
    a, b = two_commits(repo)
    assert b.parent == a.snapshot and b.branch == "main"
    assert b.tensors == 2 and b.logical_bytes == 52 and b.deduplicated == 1
    assert b.ratio == b.logical_bytes / b.stored_bytes
    assert set(b.to_dict()) >= {"snapshot", "parent", "branch", "tensors", "logical_bytes",
                               "stored_bytes", "deduplicated", "deltas", "keyframes", "seconds"}


def test_log_show_diff_stats(repo):
    a, b = two_commits(repo)
    log = repo.log()
    assert [e["message"] for e in log] == ["second", "first"]
    assert log[0]["id"] == b.snapshot and log[0]["parents"] == [a.snapshot]
    assert log[1]["meta"] == {"epoch": "1"} and log[0]["bound"] == {"kind": "lossless"}
    assert len(repo.log(limit=1)) == 1 and repo.log("HEAD~1")[0]["id"] == a.snapshot
    shown = repo.show("HEAD")
    assert shown["id"] == b.snapshot
    assert {t["name"] for t in shown["manifest"]["tensors"]} == {"w", "b"}
    rows = {r["name"]: r for r in repo.diff("HEAD~1", "HEAD")}
    assert rows["w"]["max_abs"] == 1.0 and rows["w"]["changed_fraction"] == pytest.approx(0.1)
    assert rows["b"]["max_abs"] == 0.0
    stats = repo.stats()
    assert stats["snapshots"] == 2 and stats["branches"] == 1 and stats["tags"] == 0


def test_tags_and_branches(repo):
    a, b = two_commits(repo)
    assert repo.tag("v1", "HEAD~1") == a.snapshot
    assert repo.tag() == {"v1": a.snapshot}
    assert repo.checkout("v1")["w"].sum().item() == 0
    repo.tag("v1", delete=True)
    assert repo.tag() == {}
    assert repo.branch("exp", "HEAD~1") == a.snapshot
    assert repo.branch() == {"main": b.snapshot, "exp": a.snapshot}
    r = repo.commit({"w": torch.full((10,), 2.0)}, branch="exp")
    assert r.parent == a.snapshot and repo.head == "main"
    repo.switch("exp")
    assert repo.head == "exp" and repo.checkout()["w"][0].item() == 2.0
    repo.switch("main")
    repo.branch("exp", delete=True)
    assert set(repo.branch()) == {"main"}


def test_a_0d_tensor_or_array_in_meta_is_stored_as_its_value(repo):
    import numpy as np
    repo.commit({"w": torch.ones(2)}, meta={"loss": torch.tensor(0.5), "acc": np.float32(0.25),
                                           "step": np.array(7), "epoch": 3, "vec": [1, 2]})
    assert repo.log()[0]["meta"] == {"loss": "0.5", "acc": "0.25", "step": "7", "epoch": "3",
                                     "vec": "[1, 2]"}


def test_the_report_names_the_bound_in_force_and_config_sets_it(repo):
    assert repo.commit({"w": torch.ones(8)}).bound == "lossless"
    assert repo.config("bound") == "lossless" and repo.config("keyframe_every") == 32
    assert repo.config("bound", "rel:0.05") == "rel:0.05"
    r = repo.commit({"w": torch.full((8,), 1.5)})
    assert r.bound == "rel:0.05" and repo.log()[0]["bound"] == {"kind": "rel", "eps": 0.05}
    assert repo.commit({"w": torch.full((8,), 2.5)}, bound="abs:0.1").bound == "abs:0.1"
    assert repo.config("bound", branch="other") == "lossless"  # per branch
    assert repo.config("keyframe_every", 4) == 4
    for key, value, message in [("keyframe_every", 0, "at least 1"),
                                ("keyframe_every", "x", "positive integer"),
                                ("bound", "rel:-1", "rel"), ("colour", "red", "unknown setting"),
                                ("bound", 0.01, None)]:
        with pytest.raises(snapstore.InvalidInputError, match=message):
            repo.config(key, value)
    assert repo.config("bound") == "rel:0.05" and repo.config("keyframe_every") == 4


def test_a_commit_that_starts_a_branch_beside_others_warns(repo):
    first = repo.commit({"w": torch.ones(4)}, branch="main")  # the repository's first: quiet
    assert first.parent is None
    with pytest.warns(UserWarning, match=r"^branch 'mian' did not exist; snapshot \w{12} starts "
                                         r"it, with no parent \(branches here: 'main'\)"):
        r = repo.commit({"w": torch.ones(4)}, branch="mian")
    assert r.parent is None and repo.head == "main"


def test_a_branch_of_an_empty_repository_is_refused_with_what_starts_one(repo):
    with pytest.raises(snapstore.NotFoundError,
                       match=r"^no snapshot yet to start branch 'exp' at: "
                             r"repo.commit\(state_dict, branch='exp'\) starts it with its "
                             r"first snapshot$"):
        repo.branch("exp")
    assert repo.branch() == {}
    r = repo.commit({"w": torch.zeros(2)}, branch="exp")  # what the message says
    assert repo.branch() == {"exp": r.snapshot}
    repo.switch("exp")


def test_switch_to_a_missing_branch_names_the_python_call_that_creates_it(repo):
    r = repo.commit({"w": torch.zeros(2)})
    with pytest.raises(snapstore.NotFoundError,
                       match=r"^no branch \"exp\" \(branches: main\); "
                             r"repo.switch\(\"exp\", create=True\) creates it$"):
        repo.switch("exp")
    repo.switch("exp", create=True)  # what the message says
    assert repo.head == "exp" and repo.branch() == {"main": r.snapshot, "exp": r.snapshot}
    with pytest.raises(snapstore.InvalidInputError, match="already exists"):
        repo.switch("exp", create=True)


CLI = shutil.which("snapstore") or os.path.join(
    os.path.dirname(__file__), "..", "..", "target", "release", "snapstore")


@pytest.mark.skipif(not os.path.exists(CLI), reason="the snapstore CLI is not built")
def test_same_fields_and_messages_as_the_cli(repo):
    two_commits(repo)

    def cli(*args):
        return subprocess.run([CLI, "--repo", repo.path, *args], capture_output=True, text=True)

    assert json.loads(cli("log", "--json").stdout) == repo.log()
    assert json.loads(cli("stats", "--json").stdout) == repo.stats()
    assert json.loads(cli("diff", "HEAD~1", "HEAD", "--json").stdout) == repo.diff("HEAD~1", "HEAD")
    assert json.loads(cli("show", "--json").stdout) == repo.show()
    err = cli("checkout", "nope", "-o", os.path.join(repo.path, "x.safetensors")).stderr
    with pytest.raises(snapstore.NotFoundError) as e:
        repo.checkout("nope")
    assert str(e.value) in err


def test_gc_reclaims_a_deleted_branch_and_fsck_reports(repo):
    """A Python user can reclaim a deleted branch's bytes and check the repository without the
    CLI (before, neither gc nor fsck was in the package)."""
    g = torch.Generator().manual_seed(3)
    repo.commit({"w": torch.randn(256, 256, generator=g)})
    repo.switch("exp", create=True)
    repo.commit({"w": torch.randn(256, 256, generator=g)}, message="on exp")
    repo.switch("main")
    repo.branch("exp", delete=True)
    report = repo.fsck()
    assert report["clean"] and report["snapshots"] == 1
    assert [u["message"] for u in report["unreferenced_snapshots"]] == ["on exp"]
    assert repo.gc(dry_run=True, grace=0)["removed_objects"] > 0
    before = repo.stats()["disk_bytes"]
    removed = repo.gc(grace=0)
    assert removed["removed_objects"] > 0 and removed["freed_bytes"] > 0
    assert repo.stats()["disk_bytes"] < before
    assert repo.fsck(quick=True)["unreferenced_snapshots"] == []
    with pytest.raises(snapstore.InvalidInputError, match="grace"):
        repo.gc(grace=-1)


def test_remove_remote(repo, tmp_path):
    repo.add_remote("origin", str(tmp_path / "remote"))
    assert repo.remove_remote("origin") == str(tmp_path / "remote")
    assert repo.remotes() == {}
    with pytest.raises(snapstore.NotFoundError):
        repo.remove_remote("origin")
