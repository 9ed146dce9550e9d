"""The progress bar of the estimators."""

import sys

import pytest

from gfe_sklearn._progress import TextProgress, image_bar, progress_bar


@pytest.fixture
def no_tqdm(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)


def test_the_text_bar_prints_a_line_every_tenth_of_the_way_and_at_the_end(capsys):
    bar = TextProgress(100, "epoch 1")
    for _ in range(100):
        bar.update(1)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    counts = [line.split(": ")[1].split(" ")[0] for line in lines]
    assert counts == [f"{n}/100" for n in (1, 11, 21, 31, 41, 51, 61, 71, 81, 91, 100)]
    assert all(line.startswith("  epoch 1: ") and line.endswith(" s)") for line in lines)


def test_the_text_bar_of_a_resumed_run_counts_from_where_it_stopped(capsys):
    bar = TextProgress(50, "resumed", initial=30)
    bar.update(5)
    bar.update(15)
    assert [line.split()[1] for line in capsys.readouterr().err.splitlines()] == [
        "35/50",
        "50/50",
    ]


def test_without_tqdm_the_bars_are_the_text_bar(no_tqdm):
    assert isinstance(image_bar(10, "x"), TextProgress)
    assert isinstance(progress_bar(2, 10, "x"), TextProgress)


def test_the_estimators_bar_needs_verbose_2():
    assert progress_bar(1, 10, "x") is None
