"""close() gives the memory of the handle's caches back to the OS."""

import subprocess
import sys

import pytest

# In a fresh process, so that what earlier tests freed does not blur the figures.
SCRIPT = """
import sys, torch, snapstore
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
sd = {f"l{i}": torch.randn(1024, 1024) for i in range(16)}  # 64 MiB
repo = snapstore.Repo.init(sys.argv[1], tip_cache_bytes=1 << 30)
base = rss()
repo.commit(sd)
committed = rss()
repo.close()
print(committed - base, committed - rss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_close_returns_the_tip_cache_to_the_os(tmp_path):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "r")], check=True,
                         capture_output=True, text=True).stdout
    added, freed = map(int, out.split())
    assert added > 32 << 20, out  # the tip cache holds a copy of the 64 MiB model
    assert freed > added // 2, f"commit added {added >> 20} MiB, close freed {freed >> 20} MiB"
