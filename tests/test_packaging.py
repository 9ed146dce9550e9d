"""The source distribution carries what its own tests need, and they pass from it; the wheel
is the library alone."""

import shutil
import subprocess
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def unpacked_sdist(tmp_path_factory):
    pytest.importorskip("build")
    # --no-isolation builds with the installed setuptools, which must meet pyproject.toml's.
    if int(metadata.version("setuptools").split(".")[0]) < 77:
        pytest.skip("needs setuptools>=77 installed to build the sdist without isolation")
    if not (ROOT / "pyproject.toml").exists():
        pytest.skip("not run from a source tree")
    out = tmp_path_factory.mktemp("sdist")
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (archive,) = out.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    (tree,) = [p for p in out.iterdir() if p.is_dir()]
    return tree


def test_the_sdist_has_every_tracked_test_doc_example_benchmark_and_experiment(unpacked_sdist):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout to list tracked files")
    listed = subprocess.run(
        [
            "git",
            "ls-files",
            "tests",
            "docs",
            "examples",
            "benchmarks",
            "experiments",
            ".ci/run",
            "README.md",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    missing = [name for name in listed if not (unpacked_sdist / name).exists()]
    assert not missing, f"MANIFEST.in leaves out {missing[:5]}"


def test_the_docs_tests_pass_from_the_sdist(unpacked_sdist):
    # Run from the unpacked tree, so its own package and files are the ones tested.
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_docs.py"],
        cwd=unpacked_sdist,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:]


def test_the_wheel_holds_the_library_alone(unpacked_sdist, tmp_path):
    # Built from the sdist, as a release is: a checkout's stale build/ cannot leak into it.
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", str(tmp_path)],
        cwd=unpacked_sdist,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    # PEP 561: without the marker, type checkers ignore the package's annotations.
    assert "gfe_sklearn/py.typed" in names
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"gfe_sklearn"}
    assert "gfe_sklearn/_gradient_flow.py" in names
    # The papers' experiments and the folders beside the package run from a checkout only.
    assert not [name for name in names if "experiments" in name or "/tests/" in name]
