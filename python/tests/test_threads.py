"""The GIL is released while coding: threads commit at once, and Python keeps running."""

import threading
import time

import torch

import snapstore


def test_two_threads_commit_to_two_repositories(tmp_path):
    repos = [snapstore.Repo.init(tmp_path / f"r{i}") for i in range(2)]
    data = [{"w": torch.randn(256, 1024) * (i + 1)} for i in range(2)]
    errors = []

    def work(i):
        try:
            for step in range(3):
                repos[i].commit({"w": data[i]["w"] + step}, bound="rel:0.01")
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, r in enumerate(repos):
        assert len(r.log()) == 3
        back = r.checkout()["w"]
        want = data[i]["w"] + 2
        assert ((back - want).abs() <= 0.01 * want.abs()).all()
        r.close()


def test_python_runs_while_a_commit_codes(repo):
    """A counting thread advances during a large commit (it would not if the GIL were held)."""
    big = {"w": torch.randn(16 << 20)}  # 64 MiB
    counter = [0]
    stop = threading.Event()

    def count():
        while not stop.is_set():
            counter[0] += 1
            time.sleep(0)

    t = threading.Thread(target=count)
    t.start()
    try:
        time.sleep(0.05)
        before = counter[0]
        started = time.perf_counter()
        repo.commit(big, bound="rel:0.01")
        elapsed = time.perf_counter() - started
        during = counter[0] - before
    finally:
        stop.set()
        t.join()
    # A native call holding the GIL would stop the counter for the whole commit.
    assert during > 100, (during, elapsed)


def test_one_repository_shared_by_threads(repo):
    def work(i):
        repo.commit({"w": torch.full((1000,), float(i))}, message=str(i))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(e["message"] for e in repo.log()) == ["0", "1", "2", "3"]


def test_a_tensor_written_while_it_is_committed_fails_the_commit(repo):
    """A training thread stepping the weights in place during a commit: the commit raises
    BusyError naming the tensor and stores nothing (before, a lossless commit landed with chunks
    that disagreed with its hash, so neither it nor the deltas after it could be checked out)."""
    w = torch.randn(16 << 20)  # 64 MiB: each commit overlaps many steps
    repo.commit({"w": w})
    stop = threading.Event()

    def train():
        while not stop.is_set():
            w.mul_(1.0001)

    trainer = threading.Thread(target=train)
    trainer.start()
    refused = 0
    try:
        for bound in (None, "rel:0.01", None):
            try:
                repo.commit({"w": w}, bound=bound)
            except snapstore.BusyError as e:
                assert 'tensor "w" was written while it was being committed' in str(e)
                refused += 1
    finally:
        stop.set()
        trainer.join()
    assert refused >= 1
    repo.commit({"w": w})  # training stopped: the next commit lands
    assert torch.equal(repo.checkout()["w"], w)
    for entry in repo.log():
        repo.checkout(entry["id"])
