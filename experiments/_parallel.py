"""Units in worker processes (``--n-jobs``): joblib's loky backend, one unit per task.

A worker writes its unit's records to the unit's own file and its log lines to standard
error; this process merges the files when the units stop (``run_units``). Each worker runs
with its own torch threads, ignores Ctrl-C (this process stops the workers: closing joblib's
generator ends them) and ends when this process ends, so a worker stopped at any point loses
only its training since its last snapshot, and a re-run resumes every unfinished unit.
"""

import contextlib
import dataclasses
import os
import signal
import threading
import time

from ._common import InterruptGuard, Reporter

# How often a worker checks that the process that started it still runs.
_PARENT_POLL_SECONDS = 1.0


def run_in_workers(ctx, units, *, n_jobs, threads):
    """Run ``(unit, ctx)`` pairs in ``n_jobs`` worker processes of ``threads`` torch threads."""
    from joblib import Parallel, delayed

    # Bars from several processes would overwrite one another: a line each instead.
    reporter = Reporter(quiet=ctx.reporter.quiet, bars=False)
    ctx.reporter.log(
        f"Running the units in {n_jobs} worker processes of {threads} torch thread(s)."
    )
    results = Parallel(
        n_jobs=n_jobs,
        backend="loky",
        return_as="generator_unordered",
        batch_size=1,  # a unit is minutes to hours of work: never several in one task
        initializer=start_worker,
    )(
        # A guard of its own, never entered: this process stops the workers.
        delayed(_work)(
            unit, dataclasses.replace(unit_ctx, reporter=reporter, guard=InterruptGuard()), threads
        )
        for unit, unit_ctx in units
    )
    # Closing the generator (on Ctrl-C, say) stops every worker.
    with contextlib.closing(results):
        for label, trained, seconds in results:
            if trained:
                ctx.reporter.log(f"  {label}: finished ({seconds:.1f} s)")


def start_worker():
    """Set up a worker process: it ignores Ctrl-C and ends when this process ends.

    Ctrl-C reaches the workers too: this process stops them, and they must not die first.
    A process killed outright (``kill -9``) stops nothing, and its workers would train on for
    minutes with no one to merge their units: each watches its parent and exits once it is
    gone (its parent process id then changes, to the process that adopts orphans).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def exit_with_parent():
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_SECONDS)
        os._exit(1)  # no cleanup to run: the unit resumes from its last snapshot

    threading.Thread(target=exit_with_parent, name="exit-with-parent", daemon=True).start()


def _work(unit, ctx, threads):
    """Run ``unit`` in a worker; returns its label, whether it trained and its seconds."""
    import torch

    torch.set_num_threads(threads)
    start = time.perf_counter()
    trained = unit(ctx)
    return unit.label, trained, time.perf_counter() - start
