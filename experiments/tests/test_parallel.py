"""--n-jobs: units in worker processes give a sequential run's records; the store stays whole."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments import EXPERIMENTS, build_parser, main
from experiments._cli import resolve_options
from experiments._common import Interrupted, InterruptGuard, Reporter, Store
from experiments._snapshot import DrawStream
from experiments._training import Context
from experiments._units import Unit, run_checkpointed_unit, run_units
from gfe_sklearn import AutoEncoderBaseline

from .conftest import read_units

TIMINGS = {"train_seconds", "eval_seconds", "total_train_seconds"}
X = np.random.default_rng(0).random((40, 16))
CHECKPOINTS = [10, 20]
WAIT_SECONDS = 120


def untimed(record):
    return {k: v for k, v in record.items() if k not in TIMINGS}


def without_timings(records):
    return sorted(json.dumps(untimed(r)) for r in records)


def test_n_jobs_2_takes_the_records_of_n_jobs_1(run, tmp_path):
    code, sequential = run("converged", "--n-jobs", "1", out=tmp_path / "sequential")
    assert code == 0
    code, parallel = run("converged", "--n-jobs", "2", out=tmp_path / "parallel")
    assert code == 0
    records = read_units(parallel)
    # The same seeded units on the same torch threads (1), in other processes: identical bits,
    # in the same order, each with its fields in the same order.
    assert [untimed(r) for r in records] == [untimed(r) for r in read_units(sequential)]
    assert [tuple(r) for r in records] == [tuple(r) for r in read_units(sequential)]
    assert json.loads((parallel / "converged.json").read_text())["status"] == "complete"
    assert not (parallel / "snapshots").exists()

    # --n-jobs is not part of the protocol: the folder resumes under another value.
    units = (parallel / "units.jsonl").read_text()
    code, _ = run("converged", "--n-jobs", "1", out=parallel)
    assert code == 0
    assert (parallel / "units.jsonl").read_text() == units


# Units for run_units, defined here (not in a test) so that worker processes can import them.


def tiny_unit(ctx, name, label, *, fail=False, wait_for=None, fresh=True):
    """A unit taking records of models "a" and "b" at 10 and 20 images.

    ``fail``: raise while measuring "a" at 20; ``wait_for``: measuring "a" at 20 first
    writes the process id to ``<wait_for>.<name>``, then waits for the file ``wait_for``;
    ``fresh=False``: the unit must resume from a snapshot.
    """

    def make():
        if not fresh:
            raise AssertionError(f"{name} was trained from scratch again")
        return AutoEncoderBaseline(
            n_components=2, hidden_layer_sizes=(8,), batch_size=5, device="cpu", random_state=0
        )

    def due(images):
        return [{"unit": name, "model": m, "images": images} for m in ("a", "b")]

    def measure(model, state, key):
        if key["model"] == "a" and key["images"] == 20:
            if fail:
                raise RuntimeError(f"{name} failed")
            if wait_for is not None:
                Path(f"{wait_for}.{name}").write_text(str(os.getpid()))
                until(lambda: Path(wait_for).exists())
        return {"seen": model.n_samples_seen_, "score": float(model.score(X))}, f"{label} {key}"

    return run_checkpointed_unit(
        ctx,
        due=due,
        measure=measure,
        checkpoints=CHECKPOINTS,
        name=name,
        label=label,
        make=make,
        X=X,
        stream=DrawStream(len(X), np.random.default_rng(0)),
    )


def until(condition):
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("waited too long")
        time.sleep(0.05)


def context(out, guard=None):
    return Context(
        args=None,
        store=Store(out, "test", {}),
        reporter=Reporter(quiet=True),
        guard=guard or InterruptGuard(),
        snapshot_dir=Path(out) / "snapshots",
        snapshot_seconds=0.0,  # a snapshot after every minibatch
    )


@pytest.fixture
def reference(tmp_path):
    """The records of units "u" and "v" run one after another here, on one torch thread."""
    ctx = context(tmp_path / "reference")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a worker: results can depend on the thread count
    try:
        run_units(ctx, [Unit(name, name, tiny_unit) for name in ("u", "v")])
    finally:
        torch.set_num_threads(threads)
    return without_timings(ctx.store.records)


def keys(records):
    return sorted((r["unit"], r["model"], r["images"]) for r in records)


def test_a_failing_worker_leaves_the_store_whole_and_its_unit_resumes(tmp_path, reference):
    out = tmp_path / "failing"
    ctx = context(out)
    failing = [Unit("u", "u", tiny_unit), Unit("v", "v", partial(tiny_unit, fail=True))]
    with pytest.raises(RuntimeError, match="v failed"):
        run_units(ctx, failing, n_jobs=2)
    stored = read_units(out)
    assert stored == ctx.store.records
    assert len(set(keys(stored))) == len(stored)
    # Taken before the failure (u, stopped with it, may have got anywhere):
    assert [k for k in keys(stored) if k[0] == "v"] == [("v", "a", 10), ("v", "b", 10)]
    assert (out / "snapshots" / "v" / "resume.json").exists()

    resumed = [Unit("u", "u", tiny_unit), Unit("v", "v", partial(tiny_unit, fresh=False))]
    run_units(context(out), resumed, n_jobs=2)
    assert without_timings(read_units(out)) == reference
    assert not (out / "snapshots" / "v").exists()


def alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_an_interrupt_stops_every_worker_and_keeps_what_they_recorded(tmp_path, reference, capfd):
    out, go = tmp_path / "interrupted", tmp_path / "go"
    waiting = [Path(f"{go}.{name}") for name in ("u", "v")]

    def interrupt():  # Ctrl-C once both workers wait inside their second checkpoint
        until(lambda: all(path.exists() for path in waiting))
        os.kill(os.getpid(), signal.SIGINT)

    blocked = [Unit(name, name, partial(tiny_unit, wait_for=str(go))) for name in ("u", "v")]
    with InterruptGuard() as guard:
        threading.Thread(target=interrupt, daemon=True).start()
        with pytest.raises(Interrupted):
            run_units(context(out, guard), blocked, n_jobs=2)
    workers = [int(path.read_text()) for path in waiting]
    until(lambda: not any(alive(pid) for pid in workers))
    assert keys(read_units(out)) == [(n, m, 10) for n in ("u", "v") for m in ("a", "b")]

    go.touch()
    ctx = context(out)
    ctx.reporter = Reporter(quiet=False)
    capfd.readouterr()
    resumed = [Unit(name, name, partial(tiny_unit, fresh=False)) for name in ("u", "v")]
    run_units(ctx, resumed, n_jobs=2)
    assert without_timings(read_units(out)) == reference
    # The workers' lines, printed by this process; no progress bars.
    lines = capfd.readouterr().err.splitlines()
    for name in ("u", "v"):
        assert f"  resuming {name} from 20 images" in lines
        assert f"  {name}: finished" in {line.split(" (")[0] for line in lines}
    assert not any("img/s" in line or "\r" in line for line in lines)


@pytest.mark.parametrize("n_jobs, threads", [("1", None), ("2", 1), ("-1", 1)])
def test_workers_run_one_torch_thread_unless_told(n_jobs, threads):
    args = build_parser().parse_args(["curves", "--n-jobs", n_jobs])
    assert resolve_options(args, EXPERIMENTS["curves"]).threads == threads
    args = build_parser().parse_args(["curves", "--n-jobs", n_jobs, "--threads", "3"])
    assert resolve_options(args, EXPERIMENTS["curves"]).threads == 3


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_a_bad_n_jobs_is_a_usage_error_naming_the_option(value, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["data-efficiency", "--n-jobs", value])
    assert exc.value.code == 2
    error = capsys.readouterr().err
    assert "argument --n-jobs" in error and "or -1 for one per CPU core" in error


def test_n_jobs_is_offered_where_units_run_through_the_shared_loop(capsys):
    assert build_parser().parse_args(["curves", "--n-jobs", "-1"]).n_jobs == -1
    for name, module in EXPERIMENTS.items():
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert ("--n-jobs" in capsys.readouterr().out) == hasattr(module, "units")
    assert {name for name, module in EXPERIMENTS.items() if hasattr(module, "units")} == {
        "data-efficiency",
        "converged",
        "curves",
        "solvers",
    }


_ORPHANED_WORKER = """
import multiprocessing, sys, time
from experiments._parallel import start_worker

def worker():
    start_worker()
    print("ready", flush=True)
    time.sleep(600)

if __name__ == "__main__":
    child = multiprocessing.get_context("spawn").Process(target=worker)
    child.start()
    print(child.pid, flush=True)
    time.sleep(600)
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_a_worker_ends_soon_after_its_parent_is_killed(tmp_path):
    # Before: after kill -9 of an --n-jobs run, its workers trained on for minutes.
    script = tmp_path / "orphan.py"
    script.write_text(_ORPHANED_WORKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env
    )
    worker = 0
    try:
        worker = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == "ready"  # the worker is set up
        parent.kill()
        parent.wait(timeout=WAIT_SECONDS)
        deadline = time.monotonic() + 30
        while _running(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _running(worker), "the worker outlived its killed parent"
    finally:
        parent.kill()
        parent.wait(timeout=WAIT_SECONDS)
        if _running(worker):
            os.kill(worker, signal.SIGKILL)


def _running(pid):
    """Whether ``pid`` is a live process; a zombie awaiting its reaper has ended."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
