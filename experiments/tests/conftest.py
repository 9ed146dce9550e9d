import json
import os
from pathlib import Path

import pytest

from experiments import main


def real_data_home():
    """The MNIST files: GFE_SKLEARN_DATA, else the shared folder beside the checkout."""
    candidates = [
        os.environ.get("GFE_SKLEARN_DATA"),
        Path(__file__).resolve().parents[3] / "shared" / "data",
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
            return Path(candidate)
    return None


@pytest.fixture
def mnist_home():
    home = real_data_home()
    if home is None:
        pytest.skip("MNIST files not found (set GFE_SKLEARN_DATA)")
    return home


@pytest.fixture
def run(tmp_path):
    """``run(name, *options)`` runs a smoke experiment on digits into ``tmp_path / name``."""

    def run_experiment(name, *options, out=None, dataset="digits"):
        out = Path(out or tmp_path / name)
        argv = [name, "--smoke", "--quiet", "--out", str(out), *options]
        if dataset and "--dataset" not in options:
            argv += ["--dataset", dataset]
        return main(argv), out

    return run_experiment


def read_units(out):
    return [json.loads(line) for line in (Path(out) / "units.jsonl").read_text().splitlines()]
