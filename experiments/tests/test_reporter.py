"""The experiments' progress bars and log lines."""

import sys

import pytest

from experiments._common import Reporter


@pytest.fixture
def no_tqdm(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)


def test_a_quiet_reporter_shows_no_bar_and_no_line(no_tqdm, capsys):
    reporter = Reporter(quiet=True)
    bar = reporter.bar(10, "x")
    bar.update(10)
    bar.close()
    reporter.log("a result")
    assert capsys.readouterr() == ("", "")


def test_a_reporter_without_tqdm_prints_its_lines(no_tqdm, capsys):
    Reporter().log("  a result")
    assert capsys.readouterr().err == "  a result\n"


def test_without_tqdm_the_bar_prints_whole_lines(no_tqdm, capsys):
    bar = Reporter().bar(10, "x", initial=5)
    bar.update(5)
    bar.close()
    assert capsys.readouterr().err.splitlines()[-1].startswith("  x: 10/10 (")
