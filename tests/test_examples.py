"""Every script in examples/ runs, on a tiny setting of its own options."""

import runpy
import sys
import warnings
from pathlib import Path

import pytest
from sklearn.exceptions import ConvergenceWarning

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

TINY = {
    "digits_pipeline.py": [
        "--n-samples",
        "150",
        "--gfe-epochs",
        "1",
        "--ae-epochs",
        "1",
        "--n-components",
        "2",
        "--n-jobs",
        "1",
    ],
    "gridsearch_solvers.py": ["--n-samples", "150", "--max-samples", "32"],
    "plot_gradient_flow.py": ["--max-iter", "1", "--out", "{tmp}/gradient_flow.png"],
    "plot_flow_convergence.py": [
        "--max-samples",
        "32",
        "--n-curves",
        "4",
        "--out",
        "{tmp}/flow_convergence.png",
    ],
    "quickstart.py": ["--max-samples", "32"],
    "custom_conv_decoder.py": ["--max-samples", "32"],
    "mixed_decoder.py": ["--ae-samples", "64", "--gfe-samples", "32"],
    "plot_latent_map.py": ["--max-samples", "32", "--out", "{tmp}/latent_map.png"],
    "plot_imputation.py": ["--n-samples", "150", "--epochs", "1", "--out", "{tmp}/imputation.png"],
}
SCRIPTS = sorted(path.name for path in EXAMPLES.glob("*.py"))


def test_every_example_has_a_tiny_setting():
    missing = sorted(set(SCRIPTS) - set(TINY))
    assert not missing, f"add a tiny setting of {missing} to TINY"


@pytest.mark.parametrize("name", [name for name in SCRIPTS if name in TINY])
def test_example_runs(name, tmp_path, monkeypatch):
    # In this process, as `python examples/<name> ...` would run it: a subprocess per example
    # would spend most of its time importing torch.
    argv = [arg.format(tmp=tmp_path) for arg in TINY[name]]
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / name), *argv])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # tiny budgets on purpose
        runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    for arg in argv:
        if arg.endswith(".png"):
            assert Path(arg).stat().st_size > 0
