"""Peak memory and speed of the Python package against the Rust library, same tensors.

    python python/benches/bench_binding.py rss   [--size 1G] [--bound lossless]
    python python/benches/bench_binding.py speed [--size 1G] [--bound rel:0.01] [--repeat 3]
    python python/benches/bench_binding.py loop  --corpus DIR [--bound lossless] [--repeat 3]
    python python/benches/bench_binding.py chain --corpus DIR [--bound lossless] [--repeat 2]

``rss``: builds a state_dict of SIZE bytes of float32 tensors (64 MiB each) in this process,
resets the peak RSS (``/proc/self/clear_refs``) and commits it; then multiplies every weight by
``1 + 1e-3 * noise`` in place and commits again (a delta). For each commit it prints the peak
RSS, the RSS before it, and the RSS of the interpreter with torch and snapstore loaded before
any tensor existed (``baseline_rss``), so the peak can be read against SIZE with or without it.

``speed``: writes the two epochs as safetensors files, then per repetition commits both and
checks out the last one through ``snapstore.Repo`` (tensors loaded into memory first) and
through the library (``cargo run --release --example in_memory_timing``, the same steps in
Rust), the two interleaved, taking turns to go first, each after an ``os.sync()``; prints the best time of each, their ratio, and for commits the
binding's own overhead, worst of the runs: for a commit the wall time of ``Repo.commit`` less
the library's clock in the same call, for a checkout the time to wrap the decoded buffers as
torch tensors. With ``SNAPSTORE_PROFILE=1`` both sides print each step's stage table (thread
CPU and wall time per stage, ``snapstore::profile``) on stderr, to see which stage differs.

``loop``: an evaluation loop. Commits the checkpoints of DIR (its ``*.safetensors`` files that
hold the same tensors as the first one, in name order) into one repository, then makes REPEAT
pairs of passes, each checking out every snapshot oldest first into one state_dict of owned
tensors, taking turns: ``load_state_dict``'s way (``repo.checkout(ref)`` then ``copy_`` into
each tensor) and in place (``repo.checkout(ref, into=state_dict)``). Prints each pass's wall
time and its peak RSS above the RSS before it (``/proc/self/clear_refs``).

``chain``: a trainer and an evaluation loop through one handle, with the handle's caches at
64 MiB each (the library's default before 2026-12-06) and at its default, taking turns REPEAT
times: commits every checkpoint of DIR (as ``loop`` picks them, loaded into memory first) and
prints each commit's seconds, then checks out every snapshot oldest first and prints each
checkout's seconds, and the peak RSS of each phase above the RSS before it. With a model larger
than 64 MiB the first setting decodes each parent's delta chain again, one delta more every
commit; the second keeps the last snapshot decoded.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import snapstore
from snapstore._tensors import to_tensor

ROOT = Path(__file__).resolve().parents[2]
TENSOR = 64 << 20


def parse_size(s):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(s[:-1]) * units[s[-1]]) if s[-1] in units else int(s)


def epochs(size):
    g = torch.Generator().manual_seed(0)
    n = max(1, size // TENSOR)
    first = {f"layer{i}.weight": torch.randn(TENSOR // 4, generator=g) for i in range(n)}
    second = {k: v * (1 + 1e-3 * torch.randn(v.shape, generator=g)) for k, v in first.items()}
    return first, second


def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def rss(args):
    size = parse_size(args.size)
    baseline = status("VmRSS")  # the interpreter, torch and snapstore, before any tensor
    g = torch.Generator().manual_seed(0)
    sd = {f"layer{i}.weight": torch.randn(TENSOR // 4, generator=g)
          for i in range(max(1, size // TENSOR))}
    logical = sum(t.numel() * 4 for t in sd.values())
    with tempfile.TemporaryDirectory(dir=args.dir) as d, snapstore.Repo.init(Path(d) / "r") as repo:
        for label in ("keyframe", "delta"):
            if label == "delta":  # the next epoch, in place: one state_dict stays resident
                for t in sd.values():
                    t.mul_(1 + 1e-3 * torch.randn(t.shape, generator=g))
            before = status("VmRSS")
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # peak RSS := current RSS
            r = repo.commit(sd, bound=args.bound)
            peak = status("VmHWM")
            print(json.dumps({
                "commit": label, "bound": args.bound, "state_dict_bytes": logical,
                "baseline_rss": baseline, "rss_before": before, "peak_rss": peak,
                "commit_added": peak - before,
                "peak_over_size": round(peak / logical, 3),
                "peak_less_baseline_over_size": round((peak - baseline) / logical, 3),
                "seconds": round(r.seconds, 2), "stored_bytes": r.stored_bytes}))


def stage_table(step):
    """Under SNAPSTORE_PROFILE, the library's stage table for the step just done (on stderr,
    as examples/in_memory_timing.rs prints its own), then zeroed."""
    if os.environ.get("SNAPSTORE_PROFILE"):
        print(f"## python: {step}\n\n{snapstore._native._stage_profile(reset=True)}",
              file=sys.stderr)


def python_timing(files, bound, repo_dir):
    from safetensors.torch import load_file

    # Owned tensors in memory, as a trainer holds them (not mmap-backed).
    sds = [{k: v.clone() for k, v in load_file(str(f)).items()} for f in files]
    commits, inside = [], []
    with snapstore.Repo.init(repo_dir) as repo:
        for sd in sds:
            t = time.perf_counter()
            r = repo.commit(sd, bound=bound)
            commits.append(time.perf_counter() - t)
            inside.append(r.seconds)  # the library's own clock, inside the same call
            stage_table("commit")
        del sds
        t = time.perf_counter()
        out = repo.checkout()
        checkout = time.perf_counter() - t
        stage_table("checkout HEAD")
        assert sum(v.numel() * v.element_size() for v in out.values()) > 0
        del out
        # The binding's share of a checkout: turning the decoded buffers into tensors.
        _, _, _, items = repo._repo.checkout("HEAD", None)
        t = time.perf_counter()
        wrapped = {n: to_tensor(st, shape, buf, "pt") for n, st, shape, buf in items}
        wrap = time.perf_counter() - t
        del wrapped, items
    return commits, checkout, inside + [wrap]


def rust_timing(files, bound, repo_dir):
    exe = ROOT / "target" / "release" / "examples" / "in_memory_timing"
    # stderr passes through: the example's stage tables under SNAPSTORE_PROFILE.
    out = subprocess.run([str(exe), bound, str(repo_dir), *map(str, files)], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    r = json.loads(out)
    return r["commit_seconds"], r["checkout_seconds"], None


def speed(args):
    subprocess.run(["cargo", "build", "--release", "--example", "in_memory_timing"], cwd=ROOT,
                   check=True)
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        files = []
        for i, sd in enumerate(epochs(parse_size(args.size))):
            files.append(Path(d) / f"epoch_{i}.safetensors")
            save_file(sd, str(files[-1]))
        runs = {"python": [], "rust": []}
        sides = [("python", python_timing), ("rust", rust_timing)]
        for rep in range(args.repeat):
            # Interleaved, so load from other jobs hits both, and in turns: the side that ran
            # first paid for the dirty pages before it (the epoch files just written, the other
            # side's repository) in its pack writes: 1.7 s of CPU against 0.6 s on 512 MiB.
            for who, fn in sides if rep % 2 == 0 else sides[::-1]:
                os.sync()
                repo_dir = Path(d) / f"repo_{who}_{rep}"
                runs[who].append(fn(files, args.bound, repo_dir))
                shutil.rmtree(repo_dir)
                print(json.dumps({"run": rep, "who": who, "commit_s": runs[who][-1][0],
                                  "checkout_s": runs[who][-1][1],
                                  "library_clock_s": runs[who][-1][2]}), file=sys.stderr)
        steps = {"commit_keyframe": lambda r: r[0][0], "commit_delta": lambda r: r[0][-1],
                 "checkout": lambda r: r[1]}
        for step, pick in steps.items():
            py = min(pick(r) for r in runs["python"])
            rs = min(pick(r) for r in runs["rust"])
            row = {"step": step, "bound": args.bound, "size": args.size, "runs": args.repeat,
                   "python_s": round(py, 3), "rust_s": round(rs, 3),
                   "python_over_rust": round(py / rs, 3)}
            row["python_max_s"] = round(max(pick(r) for r in runs["python"]), 3)
            row["rust_max_s"] = round(max(pick(r) for r in runs["rust"]), 3)
            if step != "checkout":
                i = 0 if step == "commit_keyframe" else 1
                # Same call, two clocks: what the binding adds, free of the machine's noise.
                row["binding_overhead_s"] = round(
                    max(r[0][i] - r[2][i] for r in runs["python"]), 4)
            else:
                row["binding_overhead_s"] = round(max(r[2][-1] for r in runs["python"]), 4)
            print(json.dumps(row))


def trajectory(corpus):
    """The checkpoint files of ``corpus`` that hold the same tensors as its first, in order."""
    from safetensors import safe_open

    files = sorted(Path(corpus).glob("*.safetensors"))
    if not files:
        sys.exit(f"no *.safetensors in {corpus}")
    names = lambda f: set(safe_open(str(f), "pt").keys())  # noqa: E731
    return [f for f in files if names(f) == names(files[0])]


def peak_since(before):
    return status("VmHWM") - before


def reset_peak():
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # peak RSS := current RSS
    return before


def chain(args):
    from safetensors.torch import load_file

    # Owned tensors in memory, as a trainer holds them (not mmap-backed, so reading them adds
    # nothing to the peaks).
    sds = [{k: v.clone() for k, v in load_file(str(f)).items()} for f in trajectory(args.corpus)]
    settings = [("64 MiB caches", 64 << 20), ("default caches", None)]
    for rep in range(args.repeat):
        for label, cache in settings if rep % 2 == 0 else settings[::-1]:
            with tempfile.TemporaryDirectory(dir=args.dir) as d:
                snapstore.Repo.init(Path(d) / "r").close()
                kw = {} if cache is None else {"tip_cache_bytes": cache,
                                               "checkout_cache_bytes": cache}
                with snapstore.Repo(Path(d) / "r", **kw) as repo:
                    before = reset_peak()
                    commits = []
                    for sd in sds:
                        start = time.perf_counter()
                        repo.commit(sd, bound=args.bound)
                        commits.append(round(time.perf_counter() - start, 3))
                    commit_peak = peak_since(before)
                    before = reset_peak()
                    checkouts = []
                    for back in reversed(range(len(sds))):
                        start = time.perf_counter()
                        out = repo.checkout(f"HEAD~{back}")
                        checkouts.append(round(time.perf_counter() - start, 3))
                        del out
                    print(json.dumps({"run": rep, "caches": label, "corpus": args.corpus,
                                      "bound": args.bound, "commit_s": commits,
                                      "commit_peak_added_bytes": commit_peak,
                                      "checkout_s": checkouts,
                                      "checkout_peak_added_bytes": peak_since(before)}))


def loop(args):
    from safetensors import safe_open

    files = trajectory(args.corpus)
    with tempfile.TemporaryDirectory(dir=args.dir) as d, snapstore.Repo.init(Path(d) / "r") as repo:
        for f in files:
            with safe_open(str(f), "pt") as st:
                repo.commit({k: st.get_tensor(k) for k in st.keys()}, bound=args.bound)
        model = {k: v.clone() for k, v in repo.checkout("HEAD").items()}
        refs = [f"HEAD~{back}" for back in reversed(range(len(files)))]

        def copied():
            for ref in refs:
                sd = repo.checkout(ref)
                with torch.no_grad():
                    for k, t in model.items():
                        t.copy_(sd[k])
                del sd

        def in_place():
            for ref in refs:
                repo.checkout(ref, into=model)

        ways = [("checkout + copy_", copied), ("checkout(into=)", in_place)]
        for rep in range(args.repeat):
            for way, run in ways if rep % 2 == 0 else ways[::-1]:
                before = reset_peak()
                start = time.perf_counter()
                run()
                wall = time.perf_counter() - start
                print(json.dumps({"pass": rep, "way": way, "corpus": args.corpus,
                                  "snapshots": len(refs), "bound": args.bound,
                                  "wall_s": round(wall, 4),
                                  "peak_added_bytes": peak_since(before)}))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["rss", "speed", "loop", "chain"])
    p.add_argument("--corpus", default=None, help="loop, chain: a directory of checkpoints")
    p.add_argument("--size", default="1G")
    p.add_argument("--bound", default="lossless")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dir", default=None, help="where temporary files and repositories go")
    args = p.parse_args()
    {"rss": rss, "speed": speed, "loop": loop, "chain": chain}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
