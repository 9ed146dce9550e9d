"""The run-unit loop of the experiments: skip what is stored, train with snapshots, record.

A unit is one model trained from scratch (one seed, model and dataset, say) and the records
it takes, which go to a file of its own (``Store.unit``). On a re-run with the same
``--out``, a unit whose records are all stored is not trained again, an interrupted one
resumes from its last snapshot, and no record is measured or written twice. Units are
independent: ``run_units`` runs them one after another, or several at a time in worker
processes (``--n-jobs``, ``_parallel``), and merges their files into ``units.jsonl`` when
they stop. (``latent`` and ``reconstructions`` record models that
``_training.train_stages`` trains once into a cache they share.)
"""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._training import snapshots, train


@dataclass(frozen=True)
class Unit:
    """One unit as ``run_units`` takes it: ``function(ctx, name, label, *args)`` runs it.

    ``name`` names its record file and its snapshots (a resumed run finds them by it),
    ``label`` the unit in the log. ``function`` is a module-level function and ``args``
    plain data (arrays, numbers, strings), so that a worker process can be sent the unit.
    ``function`` returns ``run_unit``'s answer: whether it trained the unit.
    """

    name: str
    label: str
    function: Callable
    args: tuple[Any, ...] = ()

    def __call__(self, ctx):
        return self.function(ctx, self.name, self.label, *self.args)


def run_units(ctx, units, *, n_jobs=1, threads=None):
    """Run the ``Unit``s ``units``: one after another here, or ``n_jobs`` at a time.

    With ``n_jobs`` above 1 (-1: one per CPU core) each unit runs in a worker process with
    ``threads`` torch threads (1 when None). Either way each unit writes its records to its
    own file, and when the units stop (finished, failed or interrupted) the files are merged
    into ``units.jsonl`` in the order the units started: the records of a run with
    ``n_jobs=1`` and the same torch threads, in the same order.
    """
    if n_jobs == -1:
        from joblib import cpu_count

        n_jobs = cpu_count()
    started = []

    def each_unit():
        for unit in units:
            started.append(unit.name)
            yield unit, dataclasses.replace(ctx, store=ctx.store.unit(unit.name))

    try:
        if n_jobs == 1:
            for unit, unit_ctx in each_unit():
                unit(unit_ctx)
        else:
            from ._parallel import run_in_workers

            run_in_workers(ctx, each_unit(), n_jobs=n_jobs, threads=threads or 1)
    finally:
        ctx.store.merge_units(started)


def record_once(ctx, key, measure):
    """Add the record identified by ``key`` unless the store holds it; return it, or None.

    ``measure()`` returns the record's other fields and a log line (or None). It runs only
    for a missing record: a resumed unit does not pay again for what it recorded before it
    was interrupted.
    """
    if ctx.store.has(**key):
        return None
    fields, message = measure()
    # A signal during measuring may have cut it short: raise it before recording anything.
    ctx.guard.check()
    record = ctx.store.add({**key, **fields})
    if message:
        ctx.reporter.log(message)
    return record


class CheckpointRecords:
    """The records a unit takes when its model has seen each checkpoint's number of images.

    ``due(images)`` gives their keys; ``measure(model, state, key)`` a record's other fields
    and its log line, as for ``record_once``.
    """

    def __init__(self, ctx, due, measure):
        self.ctx, self.due, self.measure = ctx, due, measure

    def all_stored(self, checkpoints):
        return all(self.ctx.store.has(**key) for c in checkpoints for key in self.due(c))

    def take(self, model, state):
        """``run_unit``'s ``on_checkpoint``: record what is missing, never stop early."""
        for key in self.due(state["seen"]):
            record_once(self.ctx, key, lambda key=key: self.measure(model, state, key))
        return False


def run_checkpointed_unit(ctx, *, due, measure, checkpoints, **unit):
    """``run_unit`` for a unit whose records are taken at its checkpoints (``CheckpointRecords``).

    ``due`` and ``measure`` are ``CheckpointRecords``'; the unit is finished once every
    checkpoint's records are stored. ``unit`` holds ``run_unit``'s other arguments.
    """
    records = CheckpointRecords(ctx, due, measure)
    return run_unit(
        ctx,
        finished=records.all_stored(checkpoints),
        checkpoints=checkpoints,
        on_checkpoint=records.take,
        **unit,
    )


def run_unit(
    ctx,
    *,
    name,
    label,
    finished,
    make,
    X,
    stream,
    checkpoints,
    on_checkpoint,
    finish=None,
    skipped="done, skipped",
):
    """Skip a ``finished`` unit; else train it, ``finish`` it and delete its snapshots.

    ``make``, ``X``, ``stream``, ``checkpoints`` and ``on_checkpoint`` are ``train``'s;
    ``name`` names the snapshot folder (a resumed run finds its state by it) and ``label``
    the unit in the progress bar and the log. ``finish(model, state)`` records what needs
    the whole training, such as a test of the best model. Returns whether it trained.
    """
    if finished:
        ctx.reporter.log(f"  {label}: {skipped}")
        return False
    model, state = train(
        ctx,
        name=name,
        make=make,
        X=X,
        stream=stream,
        checkpoints=checkpoints,
        on_checkpoint=on_checkpoint,
        desc=label,
    )
    if finish is not None:
        finish(model, state)
    # Only now: an interrupt in ``finish`` resumes from the last snapshot, not from scratch.
    snapshots(ctx, name).discard()
    return True
