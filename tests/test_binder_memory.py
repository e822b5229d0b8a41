"""Every view fits in Binder's 2 GB: the Explorer on the embedded model, every tab opened and
every choice of every view switched once (UMAP included), in a fresh process with Binder's
memory budget and the environment binder/start sets (two malloc arenas). Views added to the
Explorer later join this test by themselves.

Marked ``binder`` (about two minutes): ``make test`` runs it, the unit tier does not.
"""

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from bench.memory import BINDER_LIMIT_MB, binder_env

pytestmark = pytest.mark.binder
ROOT = Path(__file__).resolve().parents[1]


def test_every_view_of_the_explorer_fits_in_binders_memory():
    env = {**os.environ, **binder_env()}  # what binder/start exports, and Binder's budget
    result = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--views", "--child", "explorer"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    run = json.loads(result.stdout.strip().splitlines()[-1])
    steps = run["steps"]
    # every tab was opened, and the circular view switched to UMAP
    assert {key.split(":")[0] for key in steps} >= {
        "Probe curves", "Concept directions", "Circular features", "Steering"}
    assert any(key.startswith("Circular features: map_method=UMAP") for key in steps)
    # The process's own peak RSS (VmHWM: ru_maxrss without what a large parent passes on
    # across fork/exec). The walk log is in the message when it fails.
    assert run["peak_mb"] < BINDER_LIMIT_MB, result.stderr[-4000:]
    if resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 < BINDER_LIMIT_MB:
        assert run["ru_maxrss_mb"] < BINDER_LIMIT_MB, result.stderr[-4000:]
