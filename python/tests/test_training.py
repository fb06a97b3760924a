"""A training loop: commit every epoch, search the bound once, check out the best epoch.

Uses the cnn-digits test set of ../shared/bench when it is there (SNAPSTORE_BENCH overrides),
else a synthetic ten-class image set of the same shape.
"""

import os
from pathlib import Path

import torch
from torch import nn

BENCH = Path(os.environ.get("SNAPSTORE_BENCH",
                            Path(__file__).resolve().parents[2] / ".." / "shared" / "bench"))


def dataset():
    testset = BENCH / "cnn-digits" / "testset.safetensors"
    if testset.exists():
        from safetensors.torch import load_file

        d = load_file(str(testset))
        x, y = d["X"], d["y"]
    else:
        g = torch.Generator().manual_seed(0)
        prototypes = torch.rand(10, 1, 32, 32, generator=g)
        y = torch.arange(360) % 10
        x = prototypes[y] + 0.3 * torch.randn(360, 1, 32, 32, generator=g)
    return (x[:280], y[:280]), (x[280:], y[280:])


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(256, 10))


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_train_commit_search_and_restore_the_best(repo):
    torch.manual_seed(0)
    (xt, yt), (xv, yv) = dataset()
    model = small_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    probe = small_cnn()

    def evaluate(sd):
        probe.load_state_dict(sd)
        return accuracy(probe, xv, yv)

    history = []
    for epoch in range(6):
        model.train()
        for i in range(0, len(xt), 32):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[i:i + 32]), yt[i:i + 32]).backward()
            opt.step()
        acc = accuracy(model, xv, yv)
        # Searches at the first commit only; later ones re-check the remembered bound on their
        # own weights (and search again if it loses too much).
        r = repo.commit(model.state_dict(), f"epoch {epoch}", bound="auto", evaluate=evaluate,
                        max_loss=0.02, research_every=100, meta={"epoch": epoch, "acc": acc})
        assert r.searched == (epoch == 0) or r.recheck["fell_back_to_lossless"]
        history.append((acc, r.snapshot))

    best_acc, best = max(history)
    assert best_acc > 0.3  # ten classes: chance is 0.1
    repo.tag("best", best)
    restored = small_cnn()
    restored.load_state_dict(repo.checkout("best"))
    # Every commit was checked to lose at most max_loss under its bound.
    assert accuracy(restored, xv, yv) >= best_acc - 0.02 - 1e-9
    log = repo.log()
    assert len(log) == 6 and log[0]["meta"]["epoch"] == "5"
    assert repo.stats()["stored_bytes"] < sum(e["logical_bytes"] for e in log)
