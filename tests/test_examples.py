"""Every script in examples/ runs, on a tiny setting of its own options."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

TINY = {
    "digits_pipeline.py": ["--n-samples", "150", "--gfe-epochs", "1", "--ae-epochs", "1",
                           "--n-components", "2", "--n-jobs", "1"],
    "gridsearch_solvers.py": ["--n-samples", "150", "--max-samples", "32"],
    "plot_gradient_flow.py": ["--max-iter", "1", "--out", "{tmp}/gradient_flow.png"],
    "plot_flow_convergence.py": ["--max-samples", "32", "--n-curves", "4",
                                 "--out", "{tmp}/flow_convergence.png"],
}


def test_every_example_has_a_tiny_setting():
    assert sorted(TINY) == sorted(path.name for path in EXAMPLES.glob("*.py"))


@pytest.mark.parametrize("name", sorted(TINY))
def test_example_runs(name, tmp_path):
    argv = [arg.format(tmp=tmp_path) for arg in TINY[name]]
    # One thread: the tiny networks run fastest on one, and the examples run side by side
    # with other tests under CI.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *argv], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    for arg in argv:
        if arg.endswith(".png"):
            assert Path(arg).stat().st_size > 0
