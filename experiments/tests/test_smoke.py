"""Every experiment's --smoke run, end to end through main(argv), as CI runs it."""

import json
import re

import numpy as np
import pytest

from .conftest import read_units

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_outputs(name, out):
    """The JSON parses, the Markdown has a table and every figure it shows is a PNG."""
    result = json.loads((out / f"{name}.json").read_text())
    assert result["experiment"] == name and result["status"] == "complete"
    assert result["records"] == read_units(out)
    assert result["summary"]
    markdown = (out / f"{name}.md").read_text()
    assert "python -m experiments " + name in markdown
    assert re.search(r"^\| .* \|$", markdown, re.MULTILINE)
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", markdown)
    assert figures
    for figure in figures:
        assert (out / figure).read_bytes()[:8] == PNG_MAGIC
    assert not (out / "snapshots").exists()  # nothing left to resume
    return result


def test_data_efficiency(run):
    code, out = run("data-efficiency")
    assert code == 0
    result = check_outputs("data-efficiency", out)
    records = result["records"]
    keys = {(r["seed"], r["model"], r["images"]) for r in records}
    assert keys == {(s, m, i) for s in (0, 1) for m in ("ae", "gfe", "mixed") for i in (20, 40)}
    assert all(0 < r["test_bce"] < 1 and r["n_test"] == 50 for r in records)
    table = result["summary"]["table"]["digits"]
    assert table["gfe"]["40"]["n"] == 2
    assert np.isclose(
        table["gfe"]["40"]["mean"],
        np.mean([r["test_bce"] for r in records if r["model"] == "gfe" and r["images"] == 40]),
    )
    assert "±" in (out / "data-efficiency.md").read_text()


def test_data_efficiency_on_real_mnist(run, mnist_home):
    code, out = run(
        "data-efficiency",
        "--seeds",
        "1",
        "--budgets",
        "10",
        "--data-home",
        str(mnist_home),
        dataset="mnist",
    )
    assert code == 0
    result = check_outputs("data-efficiency", out)
    assert {r["model"] for r in result["records"]} == {"ae", "gfe", "mixed"}
    assert "GFE-amd (paper)" in (out / "data-efficiency.md").read_text()


def test_converged(run):
    code, out = run("converged", "--dataset", "digits", "segmented-digits")
    assert code == 0
    result = check_outputs("converged", out)
    finals = [r for r in result["records"] if r["kind"] == "final"]
    assert {(r["dataset"], r["model"]) for r in finals} == {
        (d, m) for d in ("digits", "segmented-digits") for m in ("ae", "gfe")
    }
    gfe = next(r for r in finals if r["model"] == "gfe" and r["dataset"] == "digits")
    assert gfe["epochs"] == 1 and gfe["images"] == 200 - 40  # one epoch, less validation
    ae = next(r for r in finals if r["model"] == "ae" and r["dataset"] == "digits")
    assert 1 <= ae["epochs"] <= ae["epochs_trained"] <= 2


def test_converged_models_run_one_at_a_time_into_one_folder(run, tmp_path):
    out = tmp_path / "both"
    code, _ = run("converged", "--models", "ae", out=out)
    assert code == 0
    result = check_outputs("converged", out)
    assert {r["model"] for r in result["records"]} == {"ae"}
    assert set(result["summary"]["table"]["digits"]) == {"ae"}
    assert "| GFE-amd |" not in (out / "converged.md").read_text()

    code, _ = run("converged", "--models", "gfe", "ae", out=out)  # the AE is done, skipped
    assert code == 0
    result = check_outputs("converged", out)
    finals = [r for r in result["records"] if r["kind"] == "final"]
    assert sorted(r["model"] for r in finals) == ["ae", "gfe"]
    assert set(result["summary"]["table"]["digits"]) == {"ae", "gfe"}


def test_solvers(run):
    code, out = run("solvers")
    assert code == 0
    result = check_outputs("solvers", out)
    records = result["records"]
    assert {(r["variant"], r["iteration"]) for r in records} == {
        (v, i) for v in ("rk4", "rk4-full", "nesterov", "amd") for i in (2, 4)
    }
    for r in records:
        assert r["evals_per_image"] > 0 and len(r["flow_t"]) == len(r["flow_loss"])
    rk4 = [r for r in records if r["variant"] == "rk4"]
    # The fixed grid integrates to tau: 4 RK4 steps of 4 stages, plus the start.
    assert all(r["evals_per_image"] == 4 * 4 + 1 for r in rk4)


def test_curves(run):
    code, out = run("curves")
    assert code == 0
    result = check_outputs("curves", out)
    assert {(r["model"], r["images"]) for r in result["records"]} == {
        (m, i) for m in ("ae", "gfe") for i in (50, 70, 100)
    }
    assert result["protocol"]["optimizer"] == "adam"


def test_latent(run):
    code, out = run("latent")
    assert code == 0
    result = check_outputs("latent", out)
    records = result["records"]
    assert {(r["model"], r["stage"], r["images"]) for r in records} == {
        ("gfe", "small", 20),
        ("gfe", "full", 40),
        ("ae", "small", 20),
        ("ae", "full", 60),
    }
    for r in records:
        assert np.asarray(r["points"]).shape == (60, 2) and len(r["labels"]) == 60
        assert 0 <= r["knn_accuracy"] <= 1
    assert list((out / "models").glob("*/at-*.json"))  # the trained models are kept


@pytest.mark.parametrize("shared_cache", [False, True])
def test_reconstructions(run, tmp_path, shared_cache):
    options = ["--model-cache", str(tmp_path / "cache")] if shared_cache else []
    if shared_cache:  # latent trains the models, reconstructions reuses them
        assert run("latent", *options)[0] == 0
    code, out = run("reconstructions", *options)
    assert code == 0
    result = check_outputs("reconstructions", out)
    for r in result["records"]:
        assert np.asarray(r["reconstructions"]).shape == (10, 64)
        assert sorted(r["labels"]) == list(range(10))  # one test image per class
    if shared_cache:
        latent = read_units(tmp_path / "latent")
        assert {(r["model"], r["stage"], r["train_seconds"]) for r in latent} == {
            (r["model"], r["stage"], r["train_seconds"]) for r in result["records"]
        }


@pytest.mark.parametrize("name, option, value", [("tau", "--tau", 7.0), ("s_min", "--s-min", 1.0)])
def test_flow_options_reach_every_gfe_the_mixed_one_included(run, monkeypatch, name, option, value):
    from gfe_sklearn import GradientFlowEncoder

    original, seen = GradientFlowEncoder.score, []

    def score(self, X, y=None):
        seen.append(getattr(self, name))
        return original(self, X, y)

    monkeypatch.setattr(GradientFlowEncoder, "score", score)
    code, out = run("data-efficiency", "--seeds", "1", "--budgets", "10", option, str(value))
    assert code == 0
    assert seen == [value, value]  # GFE-amd, then Mixed
    assert json.loads((out / "data-efficiency.json").read_text())["protocol"][name] == value


def test_fit_stop_tol_reaches_the_training_flows_and_the_protocol(run, monkeypatch):
    from gfe_sklearn import GradientFlowEncoder

    original, tols = GradientFlowEncoder._training_loss, set()

    def training_loss(self, target):
        tols.add(self.fit_stop_tol)
        return original(self, target)

    monkeypatch.setattr(GradientFlowEncoder, "_training_loss", training_loss)
    code, out = run("data-efficiency", "--seeds", "1", "--budgets", "10", "--fit-stop-tol", "0.003")
    assert code == 0
    assert tols == {0.003}
    assert (
        json.loads((out / "data-efficiency.json").read_text())["protocol"]["fit_stop_tol"] == 0.003
    )
