"""Smoke runs of the benchmark scripts that the docs quote, on scikit-learn's digits."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gfe_sklearn import GradientFlowEncoder, GradientFlowImputer

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def load_benchmark(name):
    path = BENCHMARKS / f"{name}.py"
    if not path.exists():
        pytest.skip("benchmarks/ is not beside the tests (installed package)")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench_imputation():
    return load_benchmark("bench_imputation")


def test_imputation_benchmark_runs_and_writes_its_tables(bench_imputation, tmp_path, monkeypatch):
    argv = ["bench_imputation.py", "--datasets", "digits", "--epochs", "1", "--no-accuracy"]
    argv += [
        "--n-estimators",
        "2",
        "--n-jobs",
        "2",
        "--methods",
        "GFE",
        "mean",
        "KNN",
        "--out",
        str(tmp_path),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    bench_imputation.main()
    result = json.loads((tmp_path / "imputation.json").read_text())["digits"]
    assert set(result["methods"]) == {"GFE", "mean", "KNN"}
    assert result["gfe"]["n_estimators"] == 2
    for entry in result["methods"].values():
        assert set(entry["patterns"]) == set(bench_imputation.PATTERNS)
        errors = [p[m] for p in entry["patterns"].values() for m in ("rmse", "bce")]
        assert np.all(np.isfinite(errors)) and min(errors) > 0
    assert (tmp_path / "inpainting-digits.png").stat().st_size > 0


def test_imputation_benchmark_defaults_method_is_the_shipped_imputer(bench_imputation):
    imputers = bench_imputation.make_imputers(10, 1, 3)
    shipped = GradientFlowImputer(keep_empty_features=True, random_state=3)
    assert imputers["GFE (defaults)"].get_params() == shipped.get_params()
    assert "GFE (defaults)" not in bench_imputation.METHODS


def test_imputer_jobs_benchmark_prints_ratios_at_the_same_imputation(capsys):
    bench = load_benchmark("bench_imputer_jobs")
    bench.main(["--epochs", "1", "--repeats", "1"])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| 0 |"))
    assert row.rstrip().endswith("| True |")
    assert "median speed-up, fit + transform:" in out


def test_batch_invariance_benchmark_prints_zero_differences(capsys):
    bench = load_benchmark("bench_batch_invariance")
    bench.main(["--solvers", "amd", "lbfgs", "--dtypes", "float32", "--repeats", "1"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert [row[:2] for row in rows] == [["amd", "float32"], ["lbfgs", "float32"]]
    assert all(float(row[2]) == 0.0 for row in rows)
    assert all(float(row[5]) > 0 for row in rows)  # the ratio of the two layouts' times


def test_transform_levers_benchmark_prints_every_lever_against_the_autoencoder(capsys):
    bench = load_benchmark("bench_transform_levers")
    argv = ["--dataset", "digits", "--n-train", "200", "--n-test", "64", "--max-iter", "1"]
    bench.main(argv)
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split(" | ") for line in lines if line.startswith("| ") and "---" not in line]
    names = [row[0].lstrip("| ") for row in rows[1:]]
    assert names[0] == "autoencoder transform" and len(names) == 19
    zero_start = next(row for row in rows if "(0.8)" in row[0])
    assert zero_start[-1].strip(" |") == "+0.0000"
    assert all(float(row[4]) > 0 for row in rows[1:])  # a held-out loss for every lever


def test_transform_levers_benchmark_keeps_the_fastest_of_its_repeats(monkeypatch):
    # A first call that pays for warming up must not set the reference time.
    bench = load_benchmark("bench_transform_levers")
    clock = iter([0.0, 5.0, 10.0, 11.0, 20.0, 22.0])
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(clock))
    calls = []
    out, seconds = bench.timed(lambda: calls.append(1) or "codes", repeats=3)
    assert (out, seconds, len(calls)) == ("codes", 1.0, 3)


def test_transform_levers_benchmark_reports_the_reconstruction_without_the_prior():
    bench = load_benchmark("bench_transform_levers")
    X = np.random.RandomState(0).uniform(size=(30, 6)).astype(np.float32)
    gfe = GradientFlowEncoder(
        n_components=3, hidden_layer_sizes=(8,), max_iter=2, code_prior=0.5, random_state=0
    ).fit(X)
    _, loss = bench._evals_and_loss(gfe.flow_diagnostics(X), X, gfe._prior_strength())
    assert loss == pytest.approx(-gfe.score(X), rel=1e-5)


@pytest.mark.dask
def test_dask_transform_benchmark_prints_identical_codes_and_a_ratio(capsys):
    pytest.importorskip("distributed", reason="needs the distributed extra")
    bench = load_benchmark("bench_dask_transform")
    argv = ["--n-rows", "400", "--chunk-rows", "100", "--repeats", "1", "--max-iter", "1"]
    bench.main(argv + ["--dataset", "digits"])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| 0 |"))
    assert row.rstrip().endswith("| True |")
    assert float(row.split("|")[4].strip(" x")) > 0
    assert "median speed-up:" in out


def test_classifier_features_benchmark_prints_and_writes_its_table(tmp_path, monkeypatch, capsys):
    bench = load_benchmark("bench_classifier_features")
    out = tmp_path / "features.json"
    argv = ["bench_classifier_features.py", "--max-iter", "1", "--folds", "2", "--code-prior", "1"]
    argv += ["--encode-prior", "0.5"]
    argv += ["--models", "GFE, prior 0.5 at encoding only", "GFE code_prior=1", "PCA"]
    argv += ["--json", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    rows, printed = json.loads(out.read_text())["rows"], capsys.readouterr().out
    assert list(rows) == ["GFE, prior 0.5 at encoding only", "GFE code_prior=1", "PCA"]
    for label, row in rows.items():
        assert 0.5 < row["logistic"] <= 1 and 0.5 < row["kneighbors"] <= 1
        assert (row["bce"] is None) == (label == "PCA")
        assert f"| {label} | {row['logistic']:.4f} | {row['kneighbors']:.4f} |" in printed


def test_a_prior_at_encoding_only_trains_without_it_and_encodes_with_it():
    bench = load_benchmark("bench_classifier_features")
    X = np.random.RandomState(0).uniform(size=(40, 6))
    settings = dict(n_components=2, hidden_layer_sizes=(8,), max_iter=2, random_state=0)
    model = bench.PriorAtEncoding(GradientFlowEncoder(**settings), 0.5)
    codes = model.fit_transform(X)
    plain = GradientFlowEncoder(**settings).fit(X)
    for a, b in zip(model.encoder.decoder_.parameters(), plain.decoder_.parameters()):
        assert torch.equal(a, b)
    assert np.array_equal(codes, plain.set_params(code_prior=0.5).transform(X))
    assert not np.allclose(codes, plain.set_params(code_prior=0.0).transform(X))


@pytest.mark.distributed
def test_ddp_fit_benchmark_prints_a_ratio_at_the_same_held_out_loss(capsys):
    dist = pytest.importorskip("torch.distributed")
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("needs torch.distributed with the gloo backend")
    bench = load_benchmark("bench_ddp_fit")
    bench.main(["--dataset", "digits", "--n-train", "300", "--n-test", "100", "--batch-size", "64"])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| 0 |")).split("|")
    assert float(row[4].strip(" x")) > 0
    bce_alone, bce_ranks, difference = (float(cell) for cell in row[8:11])
    # float32: rounding grows over training (tests/test_distributed.py), 0.2% here.
    assert bce_ranks == pytest.approx(bce_alone, rel=2e-2)
    assert 0 <= difference < 0.1
    assert "median speed-up of fit:" in out


@pytest.fixture(scope="module")
def anchors():
    return load_benchmark("imputation_anchors")


def low_rank_unit_data(n_rows, n_features, rank, seed):
    """A rank-``rank`` matrix squashed into [0, 1], with a little noise."""
    rng = np.random.RandomState(seed)
    X = rng.randn(n_rows, rank) @ rng.randn(rank, n_features) / np.sqrt(rank)
    return 1 / (1 + np.exp(-X)) + 0.01 * rng.randn(n_rows, n_features)


@pytest.mark.parametrize(
    "name, params",
    [
        ("MissForestImputer", dict(n_estimators=3, max_iter=2)),
        ("SoftImputer", {}),
        ("MIWAEImputer", dict(observation="studentt", posterior="studentt")),
        ("MIWAEImputer", dict(observation="gaussian", posterior="gaussian")),
        ("MIWAEImputer", dict(observation="bernoulli", posterior="studentt")),
    ],
)
def test_anchor_imputers_fill_only_the_holes_of_new_rows(anchors, name, params):
    if name == "MIWAEImputer":
        params = dict(params, n_latent=2, hidden=16, epochs=2, n_impute_samples=16)
    X = np.clip(low_rank_unit_data(80, 8, 2, seed=0), 0, 1)
    holes = np.where(np.random.RandomState(1).uniform(size=X.shape) < 0.3, np.nan, X)
    imputer = getattr(anchors, name)(**params, min_value=0, max_value=1, random_state=0)
    imputer.fit(holes[:60])
    filled = imputer.transform(holes[60:])
    missing = np.isnan(holes[60:])
    assert filled.shape == (20, 8) and np.all(np.isfinite(filled))
    assert np.array_equal(filled[~missing], holes[60:][~missing])
    assert filled.min() >= 0 and filled.max() <= 1
    assert np.array_equal(imputer.transform(holes[60:]), filled)
    again = getattr(anchors, name)(**params, min_value=0, max_value=1, random_state=0)
    assert np.array_equal(again.fit(holes[:60]).transform(holes[60:]), filled)


def test_soft_imputer_recovers_a_planted_low_rank_matrix(anchors):
    rng = np.random.RandomState(0)
    X = rng.randn(300, 3) @ rng.randn(3, 30) + 0.05 * rng.randn(300, 30) + 1
    holes = np.where(rng.uniform(size=X.shape) < 0.4, np.nan, X)
    imputer = anchors.SoftImputer(random_state=0).fit(holes[:200])
    filled = imputer.transform(holes[200:])
    missing = np.isnan(holes[200:])
    error = np.sqrt(np.mean((filled - X[200:])[missing] ** 2))
    mean_error = np.sqrt(np.mean((imputer.mean_ - X[200:])[missing] ** 2))
    assert error < 0.1 * mean_error
    assert 3 <= imputer.rank_ and 0 < imputer.shrinkage_ < 1


def test_soft_imputer_transform_is_the_fixed_point_of_fill_and_project(anchors):
    rng = np.random.RandomState(1)
    X = rng.randn(120, 4) @ rng.randn(4, 12) + 0.3 * rng.randn(120, 12)
    holes = np.where(rng.uniform(size=X.shape) < 0.5, np.nan, X)
    imputer = anchors.SoftImputer(shrinkage=0.2).fit(holes[:100])
    new = holes[100:]
    missing = np.isnan(new)
    V, ratios = imputer.components_.T, imputer.ratios_
    centred = np.where(missing, 0.0, new - imputer.mean_)
    for _ in range(2000):  # the EM-style iteration: fill, project onto the shrunk subspace
        centred = np.where(missing, ((centred @ V) * ratios) @ V.T, new - imputer.mean_)
    assert imputer.rank_ > 0
    np.testing.assert_allclose(imputer.transform(new), centred + imputer.mean_, atol=1e-10)


def test_miwae_log_densities_match_scipy(anchors):
    stats = pytest.importorskip("scipy.stats")
    torch = pytest.importorskip("torch")
    x, loc, scale, df = (torch.tensor(v, dtype=torch.float64) for v in (1.7, -0.3, 0.8, 4.5))
    t = anchors._student_t_log_prob(x, loc, scale, df)
    normal = anchors._normal_log_prob(x, loc, scale)
    assert float(t) == pytest.approx(stats.t.logpdf(1.7, 4.5, loc=-0.3, scale=0.8), rel=1e-12)
    assert float(normal) == pytest.approx(stats.norm.logpdf(1.7, loc=-0.3, scale=0.8), rel=1e-12)


def test_imputation_benchmark_runs_the_anchors_on_a_table(bench_imputation, tmp_path, monkeypatch):
    argv = ["bench_imputation.py", "--datasets", "diabetes", "--miwae-epochs", "2"]
    argv += ["--methods", "mean", "MissForest-style", "SoftImpute", "MIWAE", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    bench_imputation.main()
    result = json.loads((tmp_path / "imputation.json").read_text())["diabetes"]
    assert list(result["methods"]) == ["mean", "MissForest-style", "SoftImpute", "MIWAE"]
    assert result["patterns"] == list(bench_imputation.TABLE_PATTERNS)
    assert result["n_train"] + result["n_test"] == 442 and result["n_features"] == 10
    mean_rmse = {p: s["rmse"] for p, s in result["methods"]["mean"]["patterns"].items()}
    for entry in result["methods"].values():
        assert set(entry["patterns"]) == set(bench_imputation.TABLE_PATTERNS)
        for pattern, scores in entry["patterns"].items():
            assert 0 < scores["rmse"] < 2 * mean_rmse[pattern]
            assert -1 < scores["r2"] < 1 and scores["fit_s"] >= 0
        assert entry["fit_s"] == pytest.approx(sum(s["fit_s"] for s in entry["patterns"].values()))
    soft = result["methods"]["SoftImpute"]["patterns"]
    assert all(soft[p]["rmse"] < mean_rmse[p] for p in soft)
    assert all(0 < soft[p]["fitted"]["shrinkage"] < 1 for p in soft)
    miwae = result["methods"]["MIWAE"]["patterns"]
    assert [miwae[p]["fitted"]["epochs"] for p in miwae] == [2, 2]
