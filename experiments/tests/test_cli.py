import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import EXPERIMENTS, build_parser, main
from experiments._common import ConfigMismatch, OutFolderError, Store, parse_seeds
from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder

from .conftest import read_units


def test_every_experiment_of_the_issue_is_registered():
    assert set(EXPERIMENTS) == {
        "data-efficiency",
        "converged",
        "solvers",
        "curves",
        "latent",
        "reconstructions",
    }


def test_help_lists_experiments_through_python_m():
    result = subprocess.run(
        [sys.executable, "-m", "experiments", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
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
    for option in (
        "--dataset",
        "--seeds",
        "--n-test",
        "--device",
        "--out",
        "--smoke",
        "--report-only",
    ):
        assert option in text
    assert "resumes" in text and "units.jsonl" in text


@pytest.mark.parametrize(
    "argv",
    [
        ["no-such-experiment"],
        ["data-efficiency", "--dataset", "cifar"],
        ["data-efficiency", "--seeds", "0"],
        ["data-efficiency", "--seeds", "4:2"],
        ["data-efficiency", "--budgets", "0", "480"],
        ["latent", "--small-images", "600", "--gfe-images", "500"],
    ],
)
def test_bad_options_exit_with_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, option",
    [
        (["converged", "--gfe-epochs", "0"], "--gfe-epochs"),
        (["curves", "--checkpoints", "0"], "--checkpoints"),
        (["solvers", "--eval-every", "0"], "--eval-every"),
    ],
)
def test_a_count_below_one_is_a_usage_error_naming_the_option(argv, option, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert f"{option} must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "values, seeds",
    [
        (["3"], [0, 1, 2]),
        (["0", "4"], [0, 4]),
        (["5:8"], [5, 6, 7]),
        (["7:8"], [7]),
    ],
)
def test_parse_seeds(values, seeds):
    assert parse_seeds(values) == seeds


def test_parse_seeds_refuses_duplicates():
    with pytest.raises(ValueError, match="twice"):
        parse_seeds(["1", "1"])


def test_smoke_defaults_are_filled_in_and_shown_in_help():
    parser = build_parser()
    args = parser.parse_args(["data-efficiency", "--smoke"])
    from experiments._cli import resolve_options

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
    settings = config["protocol"]["estimator_settings"]["GradientFlowEncoder"]
    now = GradientFlowEncoder().get_params()["stop_tol"]
    assert settings["stop_tol"] == now and "decoder" not in settings
    settings["stop_tol"] = now / 10  # as if the run had started under an older default
    path.write_text(json.dumps(config))
    code, _ = run("data-efficiency", "--budgets", "10", out=out)
    assert code == 1
    err = capsys.readouterr().err
    assert f"GradientFlowEncoder.stop_tol: {now / 10!r} before, {now!r} now" in err


def test_settings_the_run_gives_are_recorded_instead_of_the_defaults(run):
    code, out = run("data-efficiency", "--budgets", "10", "--fit-stop-tol", "0.003")
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    settings = config["protocol"]["estimator_settings"]
    gfe, ae = settings["GradientFlowEncoder"], settings["AutoEncoderBaseline"]
    assert gfe["fit_stop_tol"] == 0.003 and gfe["solver"] == "amd"
    assert gfe["batch_size"] == ae["batch_size"] == 5
    # Nothing partial_fit never reads, nor the seed's or runtime settings.
    for name in ("max_iter", "n_iter_no_change", "tol", "random_state", "device", "verbose"):
        assert name not in gfe and name not in ae


def _as_recorded_before_settings(config, **defaults):
    """``config`` rewritten as versions before ``estimator_settings`` recorded it."""
    protocol = config["protocol"]
    recorded = {
        cls.__name__: {
            k: v
            for k, v in cls().get_params().items()
            if k != "decoder" and k in protocol["estimator_settings"][cls.__name__]
        }
        for cls in (GradientFlowEncoder, AutoEncoderBaseline)
    }
    recorded["GradientFlowEncoder"].update(defaults)
    del protocol["estimator_settings"]
    protocol["estimator_defaults"] = recorded
    return config


def test_a_run_recorded_with_bare_defaults_resumes_when_its_settings_are_the_same(run, capsys):
    code, out = run("data-efficiency", "--budgets", "10")
    assert code == 0
    path = out / "config.json"
    config = json.loads(path.read_text())
    # Defaults the run overrides (batch size, solver, training flows) changed since: no matter.
    old = _as_recorded_before_settings(
        config, batch_size=32, solver="amd", fit_stop_tol=1e-3, learning_rate=5e-4
    )
    path.write_text(json.dumps(old))
    code, _ = run("data-efficiency", "--budgets", "10", out=out)
    assert code == 0
    # A default it relies on did not.
    old["protocol"]["estimator_defaults"]["GradientFlowEncoder"]["stop_tol"] = 1e-5
    path.write_text(json.dumps(old))
    code, _ = run("data-efficiency", "--budgets", "10", out=out)
    assert code == 1
    assert "GradientFlowEncoder.stop_tol: 1e-05 before" in capsys.readouterr().err


def test_a_default_the_runs_solver_never_reads_does_not_refuse_it(run):
    code, out = run("data-efficiency", "--budgets", "10")
    assert code == 0
    path = out / "config.json"
    config = json.loads(path.read_text())
    settings = config["protocol"]["estimator_settings"]["GradientFlowEncoder"]
    # The run's GFE-amd reads neither L-BFGS's training cap nor dopri5's tolerance.
    assert "fit_max_steps" not in settings and "rtol" not in settings and "s0" in settings
    settings["rtol"] = 0.5  # as if recorded by an older version, under another default
    path.write_text(json.dumps(config))
    code, _ = run("data-efficiency", "--budgets", "10", out=out)
    assert code == 0
    settings["s0"] = 0.5  # a default AMD reads is still compared
    path.write_text(json.dumps(config))
    code, _ = run("data-efficiency", "--budgets", "10", out=out)
    assert code == 1


def test_a_parameter_added_since_is_compared_by_what_older_models_did(run, capsys):
    code, out = run("data-efficiency", "--budgets", "10", "--solver", "lbfgs")
    assert code == 0
    path = out / "config.json"
    config = json.loads(path.read_text())
    settings = config["protocol"]["estimator_settings"]["GradientFlowEncoder"]
    # As if recorded before these parameters: allow_nan's default is what models did then.
    del settings["allow_nan"]
    path.write_text(json.dumps(config))
    code, _ = run("data-efficiency", "--budgets", "10", "--solver", "lbfgs", out=out)
    assert code == 0
    # fit_max_steps=25 is not: L-BFGS trained without a cap before it existed.
    del settings["fit_max_steps"]
    path.write_text(json.dumps(config))
    code, _ = run("data-efficiency", "--budgets", "10", "--solver", "lbfgs", out=out)
    assert code == 1
    assert "GradientFlowEncoder.fit_max_steps: None before, 25 now" in capsys.readouterr().err


def test_report_only_after_a_changed_default_keeps_the_recorded_protocol_and_command(run):
    code, out = run("data-efficiency", "--budgets", "10")
    assert code == 0
    command = json.loads((out / "data-efficiency.json").read_text())["command"]
    path = out / "config.json"
    config = json.loads(path.read_text())
    config["protocol"]["estimator_settings"]["GradientFlowEncoder"]["stop_tol"] = 1e-5
    path.write_text(json.dumps(config))
    code, _ = run("data-efficiency", "--budgets", "10", "--report-only", out=out)
    assert code == 0
    result = json.loads((out / "data-efficiency.json").read_text())
    assert result["status"] == "report-only" and result["command"] == command
    assert "--report-only" not in command
    recorded = result["protocol"]["estimator_settings"]["GradientFlowEncoder"]
    assert recorded["stop_tol"] == 1e-5
    assert json.loads(path.read_text()) == config  # the folder's protocol is not rewritten
    # Options that change results are still compared.
    code, _ = run(
        "data-efficiency", "--budgets", "10", "--fit-stop-tol", "0.003", "--report-only", out=out
    )
    assert code == 1
    # A budget with no finished unit leaves an empty report, not a crash.
    code, _ = run("data-efficiency", "--budgets", "20", "--report-only", out=out)
    assert code == 0


def test_a_folder_from_before_the_defaults_were_recorded_still_resumes(run, monkeypatch):
    code, out = run("data-efficiency", "--budgets", "10")
    assert code == 0
    path = out / "config.json"
    config = json.loads(path.read_text())
    del config["protocol"]["estimator_settings"]
    path.write_text(json.dumps(config))
    code, _ = run("data-efficiency", "--budgets", "10", out=out)
    assert code == 0
    assert "estimator_settings" not in (out / "data-efficiency.md").read_text()


# -- option values are checked before anything is written ------------------------------------

BAD_OPTIONS = [
    (["--device", "gpu"], ["argument --device", "'gpu'", "cuda:N"]),
    (["--device", "cuda:99"], ["argument --device", "not available"]),
    (["--tau", "-1"], ["argument --tau", "positive"]),
    (["--tau", "nan"], ["argument --tau", "finite"]),
    (["--learning-rate", "0"], ["argument --learning-rate", "positive"]),
    (["--learning-rate", "inf"], ["argument --learning-rate", "finite"]),
    (["--learning-rate", "fast"], ["argument --learning-rate", "'fast'"]),
    (["--fit-stop-tol", "-0.001"], ["argument --fit-stop-tol", ">= 0"]),
    (["--s-max", "0"], ["argument --s-max", "positive"]),
    (["--s-min", "-1"], ["argument --s-min", ">= 0"]),
    # Only the estimator knows these: AMD's first step s0 = 1, and s_min <= s_max.
    (["--s-max", "0.5"], ["argument --s-max", "s0=1.0 exceeds s_max=0.5"]),
    (["--s-min", "5", "--s-max", "2"], ["--s-min", "--s-max", "no valid size"]),
    (["--batch-size", "0"], ["argument --batch-size", "positive integer"]),
    (["--n-components", "-2"], ["argument --n-components"]),
    (["--hidden", "16", "0"], ["argument --hidden"]),
    (["--n-test", "1.5"], ["argument --n-test", "'1.5'"]),
    (["--n-train", "0"], ["argument --n-train"]),
    (["--threads", "0"], ["argument --threads"]),
    (["--snapshot-seconds", "-1"], ["argument --snapshot-seconds", ">= 0"]),
    (["--snapshot-seconds", "nan"], ["argument --snapshot-seconds", "finite"]),
    (["--seeds", "0", "-1"], ["--seeds '-1'", "outside"]),
    (["--seeds", "1:y"], ["--seeds '1:y'", "whole number"]),
    (["--seeds", str(2**32)], ["--seeds", "outside 0..4294967295"]),
]


@pytest.mark.parametrize(
    "options, named", BAD_OPTIONS, ids=[" ".join(options) for options, _ in BAD_OPTIONS]
)
def test_bad_option_values_exit_with_a_usage_error_and_write_nothing(
    tmp_path, capsys, options, named
):
    # Before, most of these passed the parser and raised at the first fit, with a
    # traceback, after config.json was written (--snapshot-seconds nan even ran).
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "data-efficiency",
                "--smoke",
                "--quiet",
                "--dataset",
                "digits",
                "--out",
                str(out),
                *options,
            ]
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()[-1]) > 0
    for text in named:
        assert text in err
    assert not out.exists()


@pytest.mark.parametrize(
    "values, message",
    [
        (["x"], "not a whole number"),
        (["1:y"], "not a whole number"),
        (["0", "-1"], "outside"),
        (["-3"], "outside"),
        ([str(2**32)], "outside"),
    ],
)
def test_parse_seeds_names_bad_values(values, message):
    with pytest.raises(ValueError, match=f"--seeds .*{message}"):
        parse_seeds(values)


@pytest.mark.parametrize(
    "option, experiment",
    [
        ("--out", "data-efficiency"),
        ("--data-home", "data-efficiency"),
        ("--model-cache", "latent"),
    ],
)
def test_a_file_given_as_a_folder_option_is_named(tmp_path, capsys, option, experiment):
    # Before: a raw FileExistsError when the run created --out (or --model-cache).
    path = tmp_path / "a-file"
    path.write_text("mine")
    argv = [experiment, "--smoke", "--quiet", "--dataset", "digits", option, str(path)]
    if option != "--out":
        argv += ["--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: {path} is a file" in err and "Traceback" not in err
    assert path.read_text() == "mine" and not (tmp_path / "out").exists()


# -- the output folder ---------------------------------------------------------------------


def test_a_store_under_a_file_names_the_folder(tmp_path):
    # Before: a raw NotADirectoryError from mkdir.
    (tmp_path / "a-file").write_text("")
    with pytest.raises(OutFolderError, match="Cannot create the output folder .*a-file/out"):
        Store(tmp_path / "a-file" / "out", "data-efficiency", {"batch_size": 5})


@pytest.mark.parametrize("units", [None, "", "\n\n"])
def test_a_config_without_finished_units_is_replaced(tmp_path, units):
    # A run that failed before its first unit left only config.json: it protects nothing.
    Store(tmp_path, "data-efficiency", {"batch_size": 5})
    if units is not None:
        (tmp_path / "units.jsonl").write_text(units)
    store = Store(tmp_path, "data-efficiency", {"batch_size": 2})
    assert store.records == []
    assert json.loads((tmp_path / "config.json").read_text())["protocol"] == {"batch_size": 2}


@pytest.mark.parametrize("finished", ["unit", "snapshot"])
def test_a_config_with_a_unit_or_a_snapshot_still_refuses_another_protocol(tmp_path, finished):
    store = Store(tmp_path, "data-efficiency", {"batch_size": 5})
    if finished == "unit":
        store.add({"seed": 0})
    else:  # interrupted in the first unit: its training state would resume
        (tmp_path / "snapshots" / "gfe-digits-seed0").mkdir(parents=True)
        (tmp_path / "snapshots" / "gfe-digits-seed0" / "resume.json").write_bytes(b"state")
    with pytest.raises(ConfigMismatch, match="batch_size: 5 before, 2 now"):
        Store(tmp_path, "data-efficiency", {"batch_size": 2})


def test_a_run_that_failed_before_its_first_unit_does_not_block_a_corrected_run(run, monkeypatch):
    # Before: the corrected run was refused ("holds results of another protocol").
    from experiments import _data_efficiency

    def no_data(*args, **kwargs):
        raise RuntimeError("the data could not be loaded")

    with monkeypatch.context() as patch:
        patch.setattr(_data_efficiency, "load_dataset", no_data)
        with pytest.raises(RuntimeError, match="could not be loaded"):
            run("data-efficiency", "--budgets", "10", "--batch-size", "3")
    code, out = run("data-efficiency", "--budgets", "10")
    assert code == 0
    assert json.loads((out / "config.json").read_text())["protocol"]["batch_size"] == 5
    assert len(read_units(out)) == 6  # two seeds, three models


@pytest.mark.parametrize("text", ["{not json", "[]", '{"protocol": 3}', b"\xff\xfe"])
def test_a_corrupt_config_beside_finished_units_is_named_with_the_fix(tmp_path, capsys, text):
    # Before: a raw JSONDecodeError (or AttributeError, UnicodeDecodeError).
    store = Store(tmp_path, "data-efficiency", {"batch_size": 5})
    store.add({"seed": 0})
    path = tmp_path / "config.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(OutFolderError) as excinfo:
        Store(tmp_path, "data-efficiency", {"batch_size": 5})
    message = str(excinfo.value)
    assert f"{path} cannot be read" in message and "another --out" in message
    code = main(
        [
            "data-efficiency",
            "--smoke",
            "--quiet",
            "--dataset",
            "digits",
            "--out",
            str(tmp_path),
            "--report-only",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert f"error: {path} cannot be read" in err and "Traceback" not in err


def test_a_last_line_without_its_newline_is_repaired_not_appended_onto(tmp_path):
    # Before: the next record was appended onto it ("}{"), and the run after refused the folder.
    store = Store(tmp_path, "data-efficiency", {"batch_size": 5})
    store.add({"seed": 0})
    store.add({"seed": 1})
    units = tmp_path / "units.jsonl"
    units.write_text(units.read_text().rstrip("\n"))  # a hand edit, or a cut newline
    store = Store(tmp_path, "data-efficiency", {"batch_size": 5})
    store.add({"seed": 2})
    assert [json.loads(line) for line in units.read_text().splitlines()] == [
        {"seed": 0},
        {"seed": 1},
        {"seed": 2},
    ]
    assert Store(tmp_path, "data-efficiency", {"batch_size": 5}).records == store.records


def test_records_run_together_by_an_earlier_version_are_split_not_refused(tmp_path):
    # Before: the folder was refused, and its advice (delete the line) lost two finished units.
    Store(tmp_path, "data-efficiency", {"batch_size": 5}).add({"seed": 0})
    units = tmp_path / "units.jsonl"
    units.write_text('{"seed": 0}{"seed": 1}\n{"seed": 2}{"seed": 3, "cut')
    store = Store(tmp_path, "data-efficiency", {"batch_size": 5})
    assert store.records == [{"seed": 0}, {"seed": 1}, {"seed": 2}]  # the cut one runs again
    assert units.read_text() == '{"seed": 0}\n{"seed": 1}\n{"seed": 2}\n'


@pytest.mark.parametrize("line", ["[1, 2]", '"done"', "3"])
def test_a_line_of_units_jsonl_that_is_json_but_not_a_record_is_named(tmp_path, line):
    # Before: it was read as a record and the run ended with a traceback.
    Store(tmp_path, "data-efficiency", {"batch_size": 5}).add({"seed": 0})
    with open(tmp_path / "units.jsonl", "a") as units:
        units.write(line + "\n")
    with pytest.raises(OutFolderError, match="Line 2 of .*units.jsonl is JSON but not a unit"):
        Store(tmp_path, "data-efficiency", {"batch_size": 5})


def test_a_second_run_in_the_same_folder_is_refused_naming_the_first(tmp_path, capsys):
    # Before: both trained every unit and appended duplicates, counted as seeds.
    from experiments._lock import lock_out_folder

    argv = ["data-efficiency", "--smoke", "--quiet", "--dataset", "digits"]
    with lock_out_folder(tmp_path, "python -m experiments first-run"):
        assert main([*argv, "--out", str(tmp_path)]) == 1
        err = capsys.readouterr().err
        assert f"error: {tmp_path} is in use by another run (process " in err
        assert "first-run" in err and "another --out" in err
        assert not (tmp_path / "units.jsonl").exists()
    assert main([*argv, "--budgets", "10", "--out", str(tmp_path)]) == 0  # released


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_out_folder_that_cannot_be_written_is_refused_before_training(capsys, monkeypatch):
    # Before: a PermissionError traceback (or, without the lock, failure after training).
    from experiments import _data_efficiency

    monkeypatch.setattr(_data_efficiency, "load_dataset", lambda *a, **k: pytest.fail("ran"))
    argv = ["data-efficiency", "--smoke", "--quiet", "--dataset", "digits", "--out", "/proc"]
    assert main(argv) == 1
    assert "error: Cannot write into the output folder /proc" in capsys.readouterr().err


def test_report_only_on_a_missing_folder_is_an_error_and_creates_nothing(tmp_path, capsys):
    # Before: it created the folder, wrote an empty report and exited 0.
    out = tmp_path / "typo"
    argv = ["data-efficiency", "--smoke", "--quiet", "--dataset", "digits", "--report-only"]
    assert main([*argv, "--out", str(out)]) == 1
    assert f"{out}, which is not a folder" in capsys.readouterr().err
    assert not out.exists()


def test_a_damaged_line_before_the_last_of_units_jsonl_is_named(tmp_path):
    # Before: a raw JSONDecodeError. (A cut-short last line is dropped with a warning.)
    store = Store(tmp_path, "data-efficiency", {"batch_size": 5})
    store.add({"seed": 0})
    store.add({"seed": 1})
    lines = (tmp_path / "units.jsonl").read_text().splitlines()
    (tmp_path / "units.jsonl").write_text(lines[0][:-3] + "\n" + lines[1] + "\n")
    with pytest.raises(OutFolderError, match="Line 1 of .*units.jsonl is not valid JSON"):
        Store(tmp_path, "data-efficiency", {"batch_size": 5})


def test_version_names_the_package_it_runs_with(capsys):
    import gfe_sklearn

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == (
        f"python -m experiments with gfe-sklearn {gfe_sklearn.__version__}\n"
    )


@pytest.fixture
def torch_threads_kept():
    """--threads sets torch's process-wide count, which the rest of the session must not keep."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("threads", [2, 1])
def test_threads_reach_every_fit_and_score(run, monkeypatch, torch_threads_kept, threads):
    # Before: torch's process-wide count was set, but every fit and score ran on the
    # estimators' default of one thread, whatever --threads said.
    import torch

    original, seen = torch.nn.Linear.forward, set()

    def forward(self, input):
        seen.add(torch.get_num_threads())
        return original(self, input)

    monkeypatch.setattr(torch.nn.Linear, "forward", forward)
    torch.set_num_threads(3 - threads)  # neither the estimators' default nor --threads
    code, out = run("data-efficiency", "--seeds", "1", "--budgets", "10", "--threads", str(threads))
    assert code == 0
    assert seen == {threads}
    # Changes no result: not part of the protocol that a resumed run must match.
    assert "threads" not in json.loads((out / "config.json").read_text())["protocol"]


# -- one record file per unit, merged ----------------------------------------------------


def test_unit_files_left_by_a_killed_run_are_merged_once(tmp_path):
    store = Store(tmp_path, "data-efficiency", {"batch_size": 5})
    store.add({"unit": "a", "images": 10})
    store.unit("b").add({"unit": "b", "images": 10})
    store.unit("c").add({"unit": "c", "images": 10})
    # As if killed after it appended c's records but before it deleted c's file.
    with open(tmp_path / "units.jsonl", "a") as units:
        units.write('{"unit": "c", "images": 10}\n')
    assert (tmp_path / "units" / "b.jsonl").exists()
    # Rebuilding a report reads the unit files and changes nothing on disk.
    report = Store(tmp_path, "data-efficiency", {"batch_size": 5}, read_only=True)
    assert sorted(r["unit"] for r in report.records) == ["a", "b", "c"]
    assert (tmp_path / "units" / "b.jsonl").exists()
    store = Store(tmp_path, "data-efficiency", {"batch_size": 5})
    assert sorted(r["unit"] for r in store.records) == ["a", "b", "c"]
    assert sorted(r["unit"] for r in read_units(tmp_path)) == ["a", "b", "c"]
    assert not (tmp_path / "units").exists()


def test_a_folder_whose_only_results_are_unit_files_still_refuses_another_protocol(tmp_path):
    Store(tmp_path, "data-efficiency", {"batch_size": 5}).unit("b").add({"unit": "b"})
    with pytest.raises(ConfigMismatch, match="batch_size: 5 before, 2 now"):
        Store(tmp_path, "data-efficiency", {"batch_size": 2})
