"""``python -m gfe_sklearn`` and the ``gfe-sklearn`` console script (``gfe_sklearn._demo``)."""

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest

from gfe_sklearn import _demo


@pytest.fixture(autouse=True)
def few_classifier_images(monkeypatch):
    """Encoding 1,700 images with a barely trained decoder takes most of a tiny run."""
    monkeypatch.setattr(_demo, "N_CLASSIFIER_TRAIN", 100)


def test_a_tiny_run_scores_every_model_at_every_budget_and_reports_it(tmp_path):
    lines = []
    results = _demo.run(
        "digits", budgets=[40, 20], n_test=30, device="cpu", out=tmp_path, log=lines.append
    )
    assert results["budgets"] == [20, 40]
    for name in _demo.MODELS:
        assert len(results["bce"][name]) == 2 and np.isfinite(results["bce"][name]).all()
    images, bce = results["ae_catch_up"]
    assert images == _demo.AE_CATCH_UP * 40 and np.isfinite(bce)
    assert set(results["accuracy"]) == {
        "GFE (10)",
        "Mixed (10)",
        "AE (10)",
        "PCA (10)",
        "pixels (64)",
    }
    assert all(0 <= value <= 1 for value in results["accuracy"].values())
    assert results["figure"] == tmp_path / "digits.png" and results["figure"].stat().st_size
    # The printed table holds the measured numbers, one row per budget.
    text = "\n".join(lines)
    for i, budget in enumerate(results["budgets"]):
        row = f"{budget:>8} " + " ".join(
            f"{results['bce'][name][i]:>8.4f}" for name in _demo.MODELS
        )
        assert row in text
    assert f"held-out BCE GFE {results['bce']['GFE'][0]:.4f}" in text  # progress lines
    assert "wall time" in text


def test_gfe_and_the_ae_train_on_the_same_images(monkeypatch):
    seen = []
    for cls in (_demo.GradientFlowEncoder, _demo.AutoEncoderBaseline):
        fit = cls.partial_fit
        monkeypatch.setattr(
            cls,
            "partial_fit",
            lambda self, X, fit=fit: seen.append((type(self).__name__, X.copy())) or fit(self, X),
        )
    _demo.run(
        "digits", budgets=[16, 40], n_test=30, device="cpu", plot=False, log=lambda line: None
    )
    gfe = [X for name, X in seen if name == "GradientFlowEncoder"]
    ae = [X for name, X in seen if name == "AutoEncoderBaseline"]
    assert [len(X) for X in gfe] == [16, 24]
    assert [len(X) for X in ae] == [16, 24, _demo.AE_CATCH_UP * 40 - 40]
    for X_gfe, X_ae in zip(gfe, ae):
        np.testing.assert_array_equal(X_gfe, X_ae)


def test_code_prior_reaches_gfe_and_not_mixed(monkeypatch):
    scored = []
    real = _demo.GradientFlowEncoder.score

    def spy(self, *args, **kwargs):
        scored.append((self.n_iter_ > 0, self.code_prior))  # Mixed trained no epoch itself
        return real(self, *args, **kwargs)

    monkeypatch.setattr(_demo.GradientFlowEncoder, "score", spy)
    _demo.run(
        "digits",
        budgets=[16],
        n_test=30,
        code_prior=0.25,
        device="cpu",
        plot=False,
        log=lambda line: None,
    )
    assert set(scored) == {(True, 0.25), (False, 0.0)}


def test_the_main_job_trains_gfe_with_the_estimators_default_prior():
    import inspect

    default = _demo.GradientFlowEncoder().code_prior
    assert inspect.signature(_demo.run).parameters["code_prior"].default == default
    assert _demo.build_parser().parse_args([]).code_prior == default


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as info:
        _demo.main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--dataset",
        "--budgets",
        "--solver",
        "--code-prior",
        "--device",
        "--out",
        "--n-test",
        "--seed",
        "--no-plot",
        "lbfgs",
        "fashion-mnist",
    ):
        assert option in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--budgets", "0,100"], "argument --budgets: expected positive whole numbers"),
        (["--budgets", "a lot"], "argument --budgets: expected positive whole numbers"),
        (["--solver", "adam"], "argument --solver: invalid choice: 'adam'"),
        (["--dataset", "cifar"], "argument --dataset: invalid choice: 'cifar'"),
        (["--device", "gpu"], "argument --device: device='gpu' is not valid"),
        (["--n-test", "0"], "argument --n-test: expected a positive whole number"),
        (["--n-test", "1500"], "argument --n-test: digits has 1,797 images"),
        (["--seed", "-1"], "argument --seed: expected a whole number"),
        (["--code-prior", "-0.1"], "argument --code-prior: expected a finite number >= 0"),
        (["--code-prior", "some"], "argument --code-prior: expected a number"),
        (["--colour"], "unrecognized arguments: --colour"),
    ],
)
def test_bad_options_are_usage_errors_that_name_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        _demo.main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_out_that_is_a_file_is_a_usage_error(tmp_path, capsys):
    path = tmp_path / "results"
    path.write_text("")
    with pytest.raises(SystemExit):
        _demo.main(["--out", str(path)])
    assert f"argument --out: {path} is a file" in capsys.readouterr().err


def test_a_dataset_without_files_says_how_to_get_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GFE_SKLEARN_DATA", str(tmp_path))
    with pytest.raises(SystemExit) as info:
        _demo.main(["--dataset", "fashion-mnist", "--no-plot"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --dataset:" in err and "load_fashion_mnist() does" in err
    assert not any(tmp_path.iterdir())  # nothing was downloaded or written


def test_python_dash_m_and_the_console_script_run_the_job():
    done = subprocess.run(
        [sys.executable, "-m", "gfe_sklearn", "--help"], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("usage: python -m gfe_sklearn")
    (script,) = entry_points(group="console_scripts", name="gfe-sklearn")
    assert script.load() is _demo.main


def test_run_names_the_valid_datasets():
    with pytest.raises(ValueError, match=r"dataset='cifar' is not one of \['digits', "):
        _demo.run("cifar", log=lambda line: None)


def test_without_matplotlib_the_job_runs_and_says_how_to_get_the_figure(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(_demo, "_matplotlib_missing", lambda: True)
    assert (
        _demo.main(["--budgets", "20", "--n-test", "30", "--device", "cpu", "--out", str(tmp_path)])
        == 0
    )
    captured = capsys.readouterr()
    assert "pip install gfe-sklearn[plot]" in captured.err
    assert "wall time" in captured.out and "figure:" not in captured.out
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_out_that_cannot_be_written_is_refused_before_training(monkeypatch, capsys):
    # Before: every model was trained, then saving the figure failed with a traceback.
    monkeypatch.setattr(_demo, "run", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(SystemExit) as info:
        _demo.main(["--out", "/proc/gfe-sklearn-demo"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --out: cannot write the figure into /proc/gfe-sklearn-demo" in err
    assert "--no-plot" in err


def test_ctrl_c_ends_with_one_line_and_status_130(monkeypatch, capsys, tmp_path):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_demo, "run", interrupted)
    assert _demo.main(["--out", str(tmp_path), "--no-plot"]) == 130
    assert capsys.readouterr().err.strip() == "Interrupted; no figure was written."


def test_version_prints_the_package_version(capsys):
    import gfe_sklearn

    with pytest.raises(SystemExit) as info:
        _demo.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"gfe-sklearn {gfe_sklearn.__version__}\n"
