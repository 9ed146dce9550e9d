"""The run-unit loop the experiments share: what it skips, records and keeps to resume."""

import numpy as np
import pytest

from experiments._common import Interrupted, InterruptGuard, Reporter, Store
from experiments._snapshot import DrawStream
from experiments._training import Context
from experiments._units import record_once, run_checkpointed_unit, run_unit
from gfe_sklearn import AutoEncoderBaseline

X = np.random.default_rng(0).random((40, 16))
CHECKPOINTS = [10, 20]


@pytest.fixture
def ctx(tmp_path):
    return Context(
        args=None,
        store=Store(tmp_path / "out", "test", {}),
        reporter=Reporter(quiet=True),
        guard=InterruptGuard(),
        snapshot_dir=tmp_path / "snapshots",
        snapshot_seconds=0.0,  # a snapshot after every minibatch
    )


def make():
    return AutoEncoderBaseline(
        n_components=2, hidden_layer_sizes=(8,), batch_size=5, device="cpu", random_state=0
    )


def never_made():
    raise AssertionError("a unit was trained from scratch again")


def due(images):
    return [{"unit": "u", "model": m, "images": images} for m in ("a", "b")]


class Measure:
    """Records what the model had seen when it was measured, and each call."""

    def __init__(self):
        self.calls = []

    def __call__(self, model, state, key):
        self.calls.append((key["model"], key["images"]))
        return {"seen": model.n_samples_seen_}, None


def run(ctx, measure, make=make, finish=None):
    run_checkpointed_unit(
        ctx,
        due=due,
        measure=measure,
        checkpoints=CHECKPOINTS,
        name="u",
        label="unit u",
        make=make,
        X=X,
        stream=DrawStream(len(X), np.random.default_rng(0)),
        finish=finish,
    )


def test_each_record_is_taken_once_when_the_model_has_seen_its_images(ctx):
    measure = Measure()
    run(ctx, measure)
    assert [(r["model"], r["images"], r["seen"]) for r in ctx.store.records] == [
        ("a", 10, 10),
        ("b", 10, 10),
        ("a", 20, 20),
        ("b", 20, 20),
    ]
    assert not (ctx.snapshot_dir / "u").exists()

    again = Measure()
    run(ctx, again, make=never_made)
    assert again.calls == [] and len(ctx.store.records) == 4


def test_a_stored_record_is_neither_measured_nor_written_again(ctx):
    ctx.store.add({"unit": "u", "model": "b", "images": 10, "seen": "before"})
    measure = Measure()
    run(ctx, measure)
    assert measure.calls == [("a", 10), ("a", 20), ("b", 20)]
    found = [r for r in ctx.store.records if r["model"] == "b" and r["images"] == 10]
    assert [r["seen"] for r in found] == ["before"]


def test_an_interrupt_while_measuring_records_nothing_and_the_unit_resumes(ctx):
    def interrupted(model, state, key):
        ctx.guard.requested = True
        return {"seen": model.n_samples_seen_}, None

    with pytest.raises(Interrupted):
        run(ctx, interrupted)
    assert ctx.store.records == []
    assert (ctx.snapshot_dir / "u" / "resume.json").exists()

    ctx.guard.requested = False
    run(ctx, Measure())
    assert [(r["images"], r["seen"]) for r in ctx.store.records] == [
        (10, 10),
        (10, 10),
        (20, 20),
        (20, 20),
    ]


def test_a_unit_that_records_after_training_resumes_after_a_failed_finish(ctx):
    """As ``converged``: the unit is done when its final record is stored."""

    failures = [RuntimeError("the test set is unreadable")]

    def final(model, state):
        def measure():
            if failures:
                raise failures.pop()
            return {"seen": state["seen"]}, None

        record_once(ctx, {"unit": "u", "kind": "final"}, measure)

    def unit(make):
        run_unit(
            ctx,
            name="u",
            label="unit u",
            finished=ctx.store.has(unit="u", kind="final"),
            make=make,
            X=X,
            stream=DrawStream(len(X), np.random.default_rng(0)),
            checkpoints=CHECKPOINTS,
            on_checkpoint=lambda model, state: False,
            finish=final,
        )

    with pytest.raises(RuntimeError):
        unit(make)
    assert ctx.store.records == []
    assert (ctx.snapshot_dir / "u" / "resume.json").exists()

    unit(never_made)
    assert ctx.store.records == [{"unit": "u", "kind": "final", "seen": 20}]
    assert not (ctx.snapshot_dir / "u").exists()
    unit(never_made)
    assert len(ctx.store.records) == 1
