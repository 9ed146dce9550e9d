import json
import subprocess
import sys

import pytest

from gfe_sklearn import GradientFlowEncoder
from gfe_sklearn.experiments import EXPERIMENTS, build_parser, main
from gfe_sklearn.experiments._common import parse_seeds


def test_every_experiment_of_the_issue_is_registered():
    assert set(EXPERIMENTS) == {"data-efficiency", "converged", "solvers", "curves", "latent",
                                "reconstructions"}


def test_help_lists_experiments_through_python_m():
    result = subprocess.run([sys.executable, "-m", "gfe_sklearn.experiments", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for name in EXPERIMENTS:
        assert name in result.stdout
    assert "resumes" in result.stdout


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_experiment_help_names_the_common_options(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in ("--dataset", "--seeds", "--n-test", "--device", "--out", "--smoke",
                   "--report-only"):
        assert option in text
    assert "resumes" in text and "units.jsonl" in text


@pytest.mark.parametrize("argv", [
    ["no-such-experiment"],
    ["data-efficiency", "--dataset", "cifar"],
    ["data-efficiency", "--seeds", "0"],
    ["data-efficiency", "--seeds", "4:2"],
    ["data-efficiency", "--budgets", "0", "480"],
    ["latent", "--small-images", "600", "--gfe-images", "500"],
])
def test_bad_options_exit_with_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize("values, seeds", [
    (["3"], [0, 1, 2]),
    (["0", "4"], [0, 4]),
    (["5:8"], [5, 6, 7]),
    (["7:8"], [7]),
])
def test_parse_seeds(values, seeds):
    assert parse_seeds(values) == seeds


def test_parse_seeds_refuses_duplicates():
    with pytest.raises(ValueError, match="twice"):
        parse_seeds(["1", "1"])


def test_smoke_defaults_are_filled_in_and_shown_in_help():
    parser = build_parser()
    args = parser.parse_args(["data-efficiency", "--smoke"])
    from gfe_sklearn.experiments._cli import resolve_options

    resolve_options(args, EXPERIMENTS["data-efficiency"])
    assert args.budgets == [20, 40] and args.seeds == [0, 1] and args.n_train == 200
    args = parser.parse_args(["data-efficiency"])
    resolve_options(args, EXPERIMENTS["data-efficiency"])
    assert args.budgets == [480, 960, 1920, 3840, 5760] and args.batch_size == 5
    assert args.hidden == [150, 300, 600] and args.n_components == 20


def test_an_out_folder_of_another_protocol_is_refused(run, capsys):
    code, out = run("data-efficiency", "--budgets", "10")
    assert code == 0
    code, _ = run("data-efficiency", "--budgets", "10", "--batch-size", "2", out=out)
    assert code == 1
    assert "batch_size" in capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert config["protocol"]["batch_size"] == 5


def test_a_changed_package_default_is_refused_by_name(run, capsys):
    code, out = run("data-efficiency", "--budgets", "10")
    assert code == 0
    path = out / "config.json"
    config = json.loads(path.read_text())
    defaults = config["protocol"]["estimator_defaults"]["GradientFlowEncoder"]
    now = GradientFlowEncoder().get_params()["fit_stop_tol"]
    assert defaults["fit_stop_tol"] == now and "decoder" not in defaults
    defaults["fit_stop_tol"] = 1e-4  # as if the run had started under an older default
    path.write_text(json.dumps(config))
    code, _ = run("data-efficiency", "--budgets", "10", out=out)
    assert code == 1
    err = capsys.readouterr().err
    assert f"estimator_defaults.GradientFlowEncoder.fit_stop_tol: 0.0001 before, {now!r} now" in err


def test_report_only_after_a_changed_default_keeps_the_recorded_protocol_and_command(run):
    code, out = run("data-efficiency", "--budgets", "10")
    assert code == 0
    command = json.loads((out / "data-efficiency.json").read_text())["command"]
    path = out / "config.json"
    config = json.loads(path.read_text())
    config["protocol"]["estimator_defaults"]["GradientFlowEncoder"]["fit_stop_tol"] = 1e-4
    path.write_text(json.dumps(config))
    code, _ = run("data-efficiency", "--budgets", "10", "--report-only", out=out)
    assert code == 0
    result = json.loads((out / "data-efficiency.json").read_text())
    assert result["status"] == "report-only" and result["command"] == command
    assert "--report-only" not in command
    recorded = result["protocol"]["estimator_defaults"]["GradientFlowEncoder"]
    assert recorded["fit_stop_tol"] == 1e-4
    assert json.loads(path.read_text()) == config  # the folder's protocol is not rewritten
    # Options that change results are still compared.
    code, _ = run("data-efficiency", "--budgets", "10", "--fit-stop-tol", "0.003",
                  "--report-only", out=out)
    assert code == 1
    # A budget with no finished unit leaves an empty report, not a crash.
    code, _ = run("data-efficiency", "--budgets", "20", "--report-only", out=out)
    assert code == 0


def test_a_folder_from_before_the_defaults_were_recorded_still_resumes(run, monkeypatch):
    code, out = run("data-efficiency", "--budgets", "10")
    assert code == 0
    path = out / "config.json"
    config = json.loads(path.read_text())
    del config["protocol"]["estimator_defaults"]
    path.write_text(json.dumps(config))
    code, _ = run("data-efficiency", "--budgets", "10", out=out)
    assert code == 0
    assert "estimator_defaults" not in (out / "data-efficiency.md").read_text()
