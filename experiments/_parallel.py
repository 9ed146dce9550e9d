"""Units in worker processes (``--n-jobs``): the workers train, this process writes the store.

Each worker (joblib's loky backend) runs whole units with its own torch threads. A record
goes to this process the moment a unit takes it, and the worker waits until it is appended
to ``units.jsonl`` before going on, so before it saves the snapshot that follows the record.
``units.jsonl`` thus has one writer, and the store and the snapshots keep the order that a
run in one process keeps: a worker stopped at any point (Ctrl-C stops them all, an error in
one stops the others) loses only its training since its last snapshot, and a re-run
resumes every unfinished unit from there. Log lines go through this process too; workers
draw no progress bars.
"""

import contextlib
import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener
from pathlib import Path
from typing import Any

from gfe_sklearn._progress import NullProgress

from ._common import InterruptGuard, Records, _jsonable
from ._training import Context

# How long closing waits for the threads that serve workers (stopped workers close at once).
_CLOSE_SECONDS = 30.0

# How often a worker checks that the process that started it still runs.
_PARENT_POLL_SECONDS = 1.0


def run_in_workers(ctx, units, *, n_jobs, threads):
    """Run the ``Unit``s ``units`` in ``n_jobs`` worker processes of ``threads`` torch threads."""
    from joblib import Parallel, delayed

    lock = threading.Lock()  # one writer of the store and of the log at a time
    with _RecordServer(ctx, lock) as server:

        def tasks():
            for unit in units:
                with lock:
                    records = list(ctx.store.records)
                yield delayed(_work)(unit, server.setup(ctx, records, threads))

        ctx.reporter.log(
            f"Running the units in {n_jobs} worker processes of {threads} torch thread(s)."
        )
        results = Parallel(
            n_jobs=n_jobs,
            backend="loky",
            return_as="generator_unordered",
            batch_size=1,  # a unit is minutes to hours of work: never several in one task
            initializer=start_worker,
        )(tasks())
        # Closing the generator (on Ctrl-C, say) stops every worker.
        with contextlib.closing(results):
            for label, trained, seconds in results:
                if trained:
                    with lock:
                        ctx.reporter.log(f"  {label}: finished ({seconds:.1f} s)")


def start_worker():
    """Set up a worker process: it ignores Ctrl-C and ends when this process ends.

    Ctrl-C reaches the workers too: this process stops them, and they must not die first.
    A process killed outright (``kill -9``) stops nothing, and its workers would train on for
    minutes with no one to record their units: each watches its parent and exits once it is
    gone (its parent process id then changes, to the process that adopts orphans).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def exit_with_parent():
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_SECONDS)
        os._exit(1)  # no cleanup to run: the unit resumes from its last snapshot

    threading.Thread(target=exit_with_parent, name="exit-with-parent", daemon=True).start()


@dataclass(frozen=True)
class _Setup:
    """What a worker needs besides its unit: the options and where to send the records."""

    args: Any
    snapshot_dir: Path
    snapshot_seconds: float
    quiet: bool
    records: list
    threads: int
    address: Any
    authkey: bytes


def _work(unit, setup):
    """Run ``unit`` in a worker; returns its label, whether it trained and its seconds."""
    import torch

    torch.set_num_threads(setup.threads)
    start = time.perf_counter()
    with Client(setup.address, authkey=setup.authkey) as connection:
        ctx = Context(
            args=setup.args,
            store=_StoreInWorker(setup.records, connection),
            reporter=_ReporterInWorker(connection, setup.quiet),
            guard=InterruptGuard(),  # never entered: this process stops the workers
            snapshot_dir=setup.snapshot_dir,
            snapshot_seconds=setup.snapshot_seconds,
        )
        trained = unit(ctx)
    return unit.label, trained, time.perf_counter() - start


class _StoreInWorker(Records):
    """The store as a worker sees it: the records when its unit started, and the unit's own.

    ``add`` sends a record to the writing process and returns once it is on disk there.
    """

    def __init__(self, records, connection):
        super().__init__(records)
        self.connection = connection

    def add(self, record):
        record = _jsonable(record)
        self.connection.send(("record", record))
        error = self.connection.recv()
        if error is not None:
            raise RuntimeError(f"The main process could not record a result: {error}")
        self.records.append(record)
        return record


class _ReporterInWorker:
    """Log lines go to the main process, which prints them; workers draw no progress bars."""

    def __init__(self, connection, quiet):
        self.connection, self.quiet = connection, quiet

    def bar(self, total, desc, initial=0):
        self.log(f"  {desc}: training in process {os.getpid()}")
        return NullProgress()

    def log(self, message):
        if not self.quiet:
            self.connection.send(("log", message))


class _RecordServer:
    """This process's end: writes the records the workers send and answers each one.

    One thread accepts the workers' connections and one thread serves each connection;
    ``lock`` makes their writes to the store and the log one at a time.
    """

    def __init__(self, ctx, lock):
        self.ctx, self.lock = ctx, lock
        self.authkey = secrets.token_bytes(32)
        self.listener = Listener(authkey=self.authkey)
        self.closing = False
        self.served = []
        self.accepting = threading.Thread(target=self._accept, daemon=True)

    def setup(self, ctx, records, threads):
        return _Setup(
            args=ctx.args,
            snapshot_dir=Path(ctx.snapshot_dir),
            snapshot_seconds=ctx.snapshot_seconds,
            quiet=bool(getattr(ctx.reporter, "quiet", False)),
            records=records,
            threads=threads,
            address=self.listener.address,
            authkey=self.authkey,
        )

    def __enter__(self):
        self.accepting.start()
        return self

    def __exit__(self, *exc):
        self.closing = True
        # A connection of our own wakes accept(); from a thread, so that one left waiting
        # (a stopped worker's connection was accepted first) cannot hold this one.
        threading.Thread(target=self._wake, daemon=True).start()
        self.accepting.join(_CLOSE_SECONDS)
        self.listener.close()  # also ends a connection left waiting
        for thread in self.served:
            thread.join(_CLOSE_SECONDS)
        return False

    def _wake(self):
        with contextlib.suppress(OSError, EOFError, AuthenticationError):
            Client(self.listener.address, authkey=self.authkey).close()

    def _accept(self):
        while True:
            try:
                connection = self.listener.accept()
            except (OSError, EOFError, AuthenticationError):  # stopped while connecting
                if self.closing:
                    return
                continue
            if self.closing:
                connection.close()
                return
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            self.served.append(thread)
            thread.start()

    def _serve(self, connection):
        with connection:
            while True:
                try:
                    kind, payload = connection.recv()
                except (OSError, EOFError):  # the worker finished or was stopped
                    return
                with self.lock:
                    if kind == "log":
                        self.ctx.reporter.log(payload)
                        continue
                    try:
                        self.ctx.store.add(payload)
                        error = None
                    except Exception as exc:  # the worker raises it in its unit
                        error = f"{type(exc).__name__}: {exc}"
                try:
                    connection.send(error)
                except OSError:
                    return
