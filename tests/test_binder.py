"""Binder without docker: binder/requirements.txt and postBuild in a fresh virtualenv, then the
quickstart executes with them.

The CPU wheel index line is dropped here (this machine reaches PyPI only); everything else is
installed exactly as Binder would. Slow (a full install): marked ``binder``.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.binder
ROOT = Path(__file__).resolve().parents[1]


def run(cmd, **kwargs):
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    output = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, f"{cmd} failed:\n{output}"
    return result


def test_binder_environment_installs_and_runs_the_quickstart(tmp_path):
    venv = tmp_path / "binder-venv"
    run([sys.executable, "-m", "venv", str(venv)])
    bin_dir = venv / "bin"
    lines = (ROOT / "binder" / "requirements.txt").read_text().splitlines()
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("\n".join(line for line in lines if not line.startswith("--extra-index-url")))
    run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "-r", str(reqs)])
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    env.pop("PYTHONPATH", None)
    run(["bash", str(ROOT / "binder" / "postBuild")], cwd=ROOT, env=env)
    out = tmp_path / "quickstart-executed.ipynb"
    run(["bash", str(ROOT / "binder" / "start"),  # as Binder launches: start, then the server
         str(bin_dir / "jupyter"), "nbconvert", "--to", "notebook", "--execute",
         "--ExecutePreprocessor.timeout=600", "--output", str(out),
         str(ROOT / "notebooks" / "00_quickstart.ipynb")], cwd=ROOT / "notebooks", env=env)
    assert '"output_type": "error"' not in out.read_text()


def test_binder_start_caps_malloc_arenas_and_runs_its_command():
    from bench.memory import binder_env

    start = ROOT / "binder" / "start"
    assert os.access(start, os.X_OK), "binder/start must be executable"
    assert binder_env()["MALLOC_ARENA_MAX"] == "2"
    out = run(["bash", str(start), sys.executable, "-c",
               "import os; print(os.environ['MALLOC_ARENA_MAX'])"])
    assert out.stdout.strip() == "2"
