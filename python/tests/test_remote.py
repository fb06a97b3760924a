"""Remotes from Python: push, clone, pull and a partial remote checkout through a directory
remote, and (when ``SNAPSTORE_TEST_S3_PYTHON`` names a Python with moto[server], as .ci/run
sets it) through a real S3 server on 127.0.0.1."""

import os
import pathlib
import subprocess

import pytest
import torch

import snapstore


def state(seed, n=4):
    g = torch.Generator().manual_seed(seed)
    return {f"layer{i}.weight": torch.randn(256, 256, generator=g) for i in range(n)}


def drift(sd, scale=1e-3):
    return {k: v + scale * torch.randn_like(v) for k, v in sd.items()}


@pytest.fixture
def directory_remote(tmp_path):
    return {"url": str(tmp_path / "remote"), "endpoint": None}


@pytest.fixture(scope="module")
def s3_server():
    python = os.environ.get("SNAPSTORE_TEST_S3_PYTHON")
    if not python:
        pytest.skip("SNAPSTORE_TEST_S3_PYTHON is not set (.ci/run sets it to a Python with moto[server])")
    script = pathlib.Path(__file__).resolve().parents[2] / "tests" / "s3_server.py"
    proc = subprocess.Popen([python, str(script), "--bucket", "pytest"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), url
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield url
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    proc.stdin.close()
    proc.wait(timeout=10)


def round_trip(tmp_path, url, endpoint):
    with snapstore.Repo.init(tmp_path / "src") as src:
        sd0 = state(1)
        src.commit(sd0, message="e0")
        sd1 = drift(sd0)
        src.commit(sd1, message="e1", bound="rel:0.01")
        src.add_remote("origin", url, endpoint=endpoint)
        report = src.push()
        assert report["refs"][0]["status"] == "created"
        assert report["snapshots"] == 2 and report["bytes"] > 0
        with snapstore.Repo.clone(url, tmp_path / "dst", endpoint=endpoint) as dst:
            assert [e["id"] for e in dst.log()] == [e["id"] for e in src.log()]
            back0 = dst.checkout("HEAD~1")
            for k, v in sd0.items():
                assert torch.equal(back0[k], v), k
            back1 = dst.checkout("HEAD")
            for k, v in sd1.items():
                assert torch.equal(back1[k], src.checkout("HEAD")[k])
                assert ((back1[k] - v).abs() <= 0.01 * v.abs() * (1 + 1e-6)).all(), k
            assert dst.remotes()["origin"]["url"] == url
            src.commit(drift(sd1), message="e2")
            src.push()
            pulled = dst.pull()
            assert pulled["status"] == "fast-forward"
            assert dst.log()[0]["message"] == "e2"
        out = tmp_path / "one.safetensors"
        r = snapstore.checkout_remote(url, "main", out, names=["layer2.weight"], endpoint=endpoint)
        assert r["tensors"] == 1
        assert r["downloaded_bytes"] < report["bytes"] / 2
        from safetensors.torch import load_file
        assert torch.equal(load_file(out)["layer2.weight"], src.checkout("HEAD")["layer2.weight"])


def test_directory_remote_round_trip(tmp_path, directory_remote):
    round_trip(tmp_path, directory_remote["url"], None)


def test_s3_remote_round_trip(tmp_path, s3_server):
    round_trip(tmp_path, "s3://pytest/run1", s3_server)


def test_push_that_would_drop_snapshots_raises(tmp_path, directory_remote):
    url = directory_remote["url"]
    with snapstore.Repo.init(tmp_path / "a") as a:
        sd = state(2)
        a.commit(sd)
        a.add_remote("origin", url)
        a.push()
        with snapstore.Repo.clone(url, tmp_path / "b") as b:
            a.commit(drift(sd))
            a.push()
            # The hint in Python's words (it said `push --force`).
            with pytest.raises(snapstore.PushRejectedError,
                               match=r"drop 1 snapshot.*\(repo\.pull\(\)\), or push\(force=True\)"):
                b.push()
            assert b.push(force=True)["refs"][0]["status"] == "forced"


def test_refs_given_as_one_string_are_one_ref(tmp_path, directory_remote):
    """push(refs="main") pushed the refs "m", "a", "i", "n" (a string is a sequence)."""
    url = directory_remote["url"]
    with snapstore.Repo.init(tmp_path / "a") as a:
        a.commit(state(5))
        a.tag("v1")
        a.add_remote("origin", url)
        assert [r["ref"] for r in a.push(refs="main")["refs"]] == ["heads/main"]
        assert [r["ref"] for r in a.push(refs=("v1",))["refs"]] == ["tags/v1"]
        assert a.fetch(refs="main")
        with pytest.raises(snapstore.InvalidInputError, match="refs must be a string or a list"):
            a.push(refs=[b"main"])


def test_unrelated_histories_are_refused_as_a_remote_error(tmp_path, directory_remote):
    url = directory_remote["url"]
    with snapstore.Repo.init(tmp_path / "a") as a:
        a.commit(state(3))
        a.add_remote("origin", url)
        a.push()
    with snapstore.Repo.init(tmp_path / "c") as c:
        c.commit(state(4))
        c.add_remote("origin", url)
        ours = [e["id"] for e in c.log()]
        for call in (c.push, c.pull):
            with pytest.raises(snapstore.RemoteError, match="share no snapshot"):
                call()
            assert [e["id"] for e in c.log()] == ours


def test_remote_errors_name_the_remote(tmp_path):
    with snapstore.Repo.init(tmp_path / "r") as r:
        with pytest.raises(snapstore.NotFoundError, match="no remote named"):
            r.push("nowhere")
        with pytest.raises(snapstore.InvalidInputError, match="invalid remote URL"):
            r.add_remote("bad", "ftp://host/x")
    with pytest.raises(snapstore.RemoteError, match="holds no snapstore repository"):
        snapstore.Repo.clone(str(tmp_path / "empty"), tmp_path / "c")
    assert not (tmp_path / "c").exists()


def delete_and_gc(tmp_path, url, endpoint):
    with snapstore.Repo.init(tmp_path / "a") as a:
        sd = state(3)
        a.commit(sd, message="a0")
        a.add_remote("origin", url, endpoint=endpoint)
        a.push()
        a.branch("exp")
        a.push("origin", ["exp"])
        seen = []
        with snapstore.Repo.clone(url, tmp_path / "b", endpoint=endpoint,
                                  progress=lambda task, done, total: seen.append(
                                      (task, done, total))) as b:
            assert seen and seen[-1][0] == "fetch" and seen[-1][1] == seen[-1][2] > 0, seen
            a.commit(drift(sd), message="a1")
            a.push()
            # b last saw main at a0: its delete is refused; exp it may delete.
            with pytest.raises(snapstore.PushRejectedError, match="nothing was deleted"):
                b.delete_remote_ref("main")
            assert b.delete_remote_ref("exp")["ref"] == "heads/exp"
            # b force-pushes its own history: a0 and a1 no longer reached.
            b.commit(state(4), message="b1")
            b.push(force=True)
            report = snapstore.remote_gc(url, endpoint=endpoint, dry_run=True)
            assert report["removed_snapshots"] == [] and report["young_snapshots"] == 1, report
            report = snapstore.remote_gc(url, endpoint=endpoint, grace=0)
            assert report["removed_snapshots"] == [a.log()[0]["id"]], report
            assert report["live_snapshots"] == 2, report
        with snapstore.Repo.clone(url, tmp_path / "c", endpoint=endpoint) as c:
            assert [e["message"] for e in c.log()] == ["b1", "a0"]
            back = snapstore.checkout_remote(url, "HEAD~1", tmp_path / "old.safetensors",
                                             endpoint=endpoint)
            assert back["snapshot"] == c.log()[1]["id"]


def test_directory_remote_delete_and_gc(tmp_path, directory_remote):
    delete_and_gc(tmp_path, directory_remote["url"], None)


def test_s3_remote_delete_and_gc(tmp_path, s3_server):
    delete_and_gc(tmp_path, "s3://pytest/gc1", s3_server)


def test_remote_fsck_names_a_lost_pack_and_repair_puts_it_back(tmp_path, directory_remote):
    url = directory_remote["url"]
    with snapstore.Repo.init(tmp_path / "a") as a:
        a.commit(state(1))
        a.add_remote("origin", url)
        a.push()
        assert a.remote_fsck(deep=True)["clean"]
        packs = pathlib.Path(url) / "packs"
        lost = sorted(packs.iterdir())[0]
        lost.unlink()
        found = a.remote_fsck()
        assert not found["clean"]
        assert found["problems"][0]["object"] == f"packs/{lost.name}"
        assert found["problems"][0]["problem"] == "missing"
        repaired = a.remote_fsck(repair=True)
        assert repaired["clean"] and repaired["repaired"] == [f"packs/{lost.name}"]
        assert lost.exists()


def test_remote_hints_name_python_calls(repo, tmp_path):
    """Errors whose CLI message suggests a command suggest the Python call instead."""
    repo.add_remote("origin", str(tmp_path / "remote"))
    with pytest.raises(snapstore.InvalidInputError,
                       match=r'already exists \(repo\.remove_remote\("origin"\) first\)$'):
        repo.add_remote("origin", str(tmp_path / "other"))
    with pytest.raises(snapstore.NotFoundError,
                       match=r'no remote named "nope" .*; repo\.add_remote\("nope", url\) adds it$'):
        repo.push("nope")
