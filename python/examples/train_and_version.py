"""Train a small CNN, commit every epoch under an automatically searched error bound, print
the history and the bytes saved.

    pip install ./python torch safetensors
    python python/examples/train_and_version.py [--repo runs/.snapstore] [--epochs 8]

Data: the cnn-digits test set of ../shared/bench when present (360 digits, 1x32x32), else a
synthetic ten-class image set of the same shape.
"""

import argparse
import os
import shutil
from pathlib import Path

import torch
from torch import nn

import snapstore

BENCH = Path(__file__).resolve().parents[2] / ".." / "shared" / "bench" / "cnn-digits"


def load_data():
    testset = BENCH / "testset.safetensors"
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


def make_model():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(512, 10))


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repo", default="runs/.snapstore")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--max-loss", type=float, default=0.01, help="accuracy a bound may cost")
    args = p.parse_args()

    torch.manual_seed(0)
    (xt, yt), (xv, yv) = load_data()
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    probe = make_model()  # the evaluator scores candidates here, leaving `model` alone

    def evaluate(state_dict):
        probe.load_state_dict(state_dict)
        return accuracy(probe, xv, yv)

    if os.path.exists(args.repo):
        shutil.rmtree(args.repo)
    with snapstore.Repo.init(args.repo) as repo:
        for epoch in range(args.epochs):
            model.train()
            perm = torch.randperm(len(xt))
            for i in range(0, len(xt), 32):
                batch = perm[i:i + 32]
                opt.zero_grad()
                nn.functional.cross_entropy(model(xt[batch]), yt[batch]).backward()
                opt.step()
            acc = accuracy(model, xv, yv)
            r = repo.commit(model.state_dict(), message=f"epoch {epoch}", bound="auto",
                            evaluate=evaluate, max_loss=args.max_loss, research_every=4,
                            meta={"epoch": epoch, "accuracy": f"{acc:.4f}"})
            how = "searched" if r.searched else "reused"
            print(f"epoch {epoch}: accuracy {acc:.4f}  {r.bound:<14} ({how})  "
                  f"{r.logical_bytes:>9,} -> {r.stored_bytes:>8,} bytes ({r.ratio:.1f}x)")

        print("\nhistory (newest first):")
        for e in repo.log():
            b = e["bound"]  # {"kind": "rel", "eps": 0.01} or {"kind": "lossless"}, as the CLI's --json
            spec = f"{b['kind']}:{b['eps']:g}" if "eps" in b else b["kind"]
            print(f"  {e['id'][:10]}  {e['message']:<9} acc {e['meta']['accuracy']}  "
                  f"bound {spec:<14} {e['stored_bytes']:>8,} bytes")
        s = repo.stats()
        print(f"\n{s['snapshots']} snapshots: {s['logical_bytes']:,} bytes of tensors stored in "
              f"{s['stored_bytes']:,} ({s['ratio']:.1f}x, {s['logical_bytes'] - s['stored_bytes']:,} "
              "bytes saved)")

        best = max(repo.log(), key=lambda e: float(e["meta"]["accuracy"]))
        model.load_state_dict(repo.checkout(best["id"]))
        print(f"restored {best['message']}: accuracy {accuracy(model, xv, yv):.4f} "
              f"(recorded {best['meta']['accuracy']})")


if __name__ == "__main__":
    main()
