"""Interrupting an experiment loses no finished unit; re-running resumes and skips them."""

import json
import os
import signal

import pytest

from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder

from .conftest import read_units


def bce_of(records):
    return {(r["seed"], r["model"], r["images"]): r["test_bce"] for r in records}


def test_rerun_skips_finished_units_and_rebuilds_the_results(run, monkeypatch):
    code, out = run("data-efficiency")
    assert code == 0
    units = (out / "units.jsonl").read_text()
    for path in out.glob("data-efficiency*"):
        path.unlink()

    def no_training(self, X, y=None):
        raise AssertionError("a finished unit was trained again")

    monkeypatch.setattr(GradientFlowEncoder, "partial_fit", no_training)
    monkeypatch.setattr(AutoEncoderBaseline, "partial_fit", no_training)
    code, _ = run("data-efficiency", out=out)
    assert code == 0
    assert (out / "units.jsonl").read_text() == units
    result = json.loads((out / "data-efficiency.json").read_text())
    assert result["status"] == "complete" and len(result["records"]) == 12
    assert (out / "data-efficiency-digits.png").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_interrupt_keeps_finished_units_and_resuming_gives_the_same_numbers(
    run, tmp_path, monkeypatch, signum, capsys
):
    code, reference = run("data-efficiency", out=tmp_path / "reference")
    assert code == 0

    # The signal arrives inside GFE training: partial_fit keeps what it reached and lets the
    # interrupt out; the experiment must stop, save what finished and discard the unit.
    # GFE trains 4 minibatches per budget: seed 0 uses calls 1-8, seed 1 calls 9-16.
    original, calls = GradientFlowEncoder._training_loss, []

    def interrupted(self, target):
        calls.append(1)
        if len(calls) == 14:  # seed 1, between its budgets 20 and 40
            os.kill(os.getpid(), signum)
        return original(self, target)

    monkeypatch.setattr(GradientFlowEncoder, "_training_loss", interrupted)
    out = tmp_path / "interrupted"
    code, _ = run("data-efficiency", out=out)
    assert code == 130
    finished = read_units(out)
    assert sorted(bce_of(finished)) == sorted(
        [(0, m, i) for m in ("gfe", "ae", "mixed") for i in (20, 40)] + [(1, "gfe", 20)]
    )
    assert json.loads((out / "data-efficiency.json").read_text())["status"] == "interrupted"
    assert (out / "snapshots" / "gfe-digits-seed1" / "resume.json").exists()
    # It counts what units.jsonl holds: results, several per unit (one per budget).
    assert f"Interrupted. {len(finished)} recorded result(s) are kept" in capsys.readouterr().err

    monkeypatch.setattr(GradientFlowEncoder, "_training_loss", original)
    code, _ = run("data-efficiency", out=out)
    assert code == 0
    resumed = read_units(out)
    assert resumed[: len(finished)] == finished  # nothing finished was redone
    # A snapshot's round trip, then the same seeded training: identical arithmetic.
    assert bce_of(resumed) == bce_of(read_units(reference))  # bit-identical numbers
    assert json.loads((out / "data-efficiency.json").read_text())["status"] == "complete"


def test_report_only_rebuilds_without_training(run, monkeypatch):
    code, out = run("curves")
    assert code == 0
    (out / "curves.md").unlink()
    monkeypatch.setattr(GradientFlowEncoder, "partial_fit", None)
    code, _ = run("curves", "--report-only", out=out)
    assert code == 0
    assert "AE" in (out / "curves.md").read_text()
    assert json.loads((out / "curves.json").read_text())["status"] == "report-only"


def test_a_line_cut_short_by_a_crash_is_dropped(run, capsys):
    code, out = run("data-efficiency", "--budgets", "10")
    assert code == 0
    units = out / "units.jsonl"
    lines = units.read_text().splitlines()
    units.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])  # a torn last append
    code, _ = run("data-efficiency", "--budgets", "10", out=out)
    assert code == 0
    assert "truncated" in capsys.readouterr().err
    assert len(read_units(out)) == len(lines)  # the torn unit was redone, the file is whole


def test_an_error_keeps_the_finished_units_readable(run, monkeypatch, tmp_path):
    original, calls = AutoEncoderBaseline.partial_fit, []

    def failing(self, X, y=None):
        calls.append(1)
        if len(calls) == 2:  # seed 0: the AE's budget 20 is finished, then training fails
            raise ValueError("boom")
        return original(self, X, y)

    monkeypatch.setattr(AutoEncoderBaseline, "partial_fit", failing)
    out = tmp_path / "failing"
    with pytest.raises(ValueError, match="boom"):
        run("data-efficiency", out=out)
    result = json.loads((out / "data-efficiency.json").read_text())
    assert result["status"] == "failed"
    assert sorted(bce_of(result["records"])) == sorted(
        [(0, "gfe", 20), (0, "gfe", 40), (0, "ae", 20), (0, "mixed", 20)]
    )
    assert "Failed: partial results" in (out / "data-efficiency.md").read_text()


def test_missing_matplotlib_is_reported_before_any_training(run, monkeypatch, tmp_path, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, out = run("data-efficiency")
    assert code == 1
    assert "pip install gfe-sklearn[plot]" in capsys.readouterr().err
    assert not out.exists()
