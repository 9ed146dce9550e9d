"""Shared plumbing of the experiments: results store, atomic writes, progress, interrupts.

An experiment is a list of *units* (one seed and model, say), each taking records (a score
at a budget, say). A unit appends each record to its own file, ``units/<unit>.jsonl`` in the
output folder, the moment it is taken, so an interrupt loses nothing finished, and a re-run
with the same ``--out`` skips every record already there. The unit files are merged into
``units.jsonl`` when the units stop, whether they finished or not. The final JSON, Markdown
and PNG files are rebuilt from the records and written atomically.
"""

import contextlib
import json
import math
import os
import platform
import secrets
import signal
import sys
import time
from pathlib import Path

import numpy as np

from ._models import ESTIMATORS

UNITS_FILE = "units.jsonl"
UNITS_FOLDER = "units"
CONFIG_FILE = "config.json"
SNAPSHOTS_FOLDER = "snapshots"


# -- files ------------------------------------------------------------------------------------


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` whole or not at all, creating its folder.

    The bytes reach the disk in a file beside ``path`` that then replaces it: a crash leaves
    the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def dumps(value, indent=None):
    """JSON text of results: numpy values become plain numbers, NaN becomes null."""
    return json.dumps(_jsonable(value), indent=indent, allow_nan=False)


def atomic_write_json(path, value):
    atomic_write_text(path, dumps(value, indent=1) + "\n")


def save_figure(ax_or_figure, path):
    """Save a pyplot-free figure (or the figure of an axes) as a PNG, atomically."""
    import io

    figure = getattr(ax_or_figure, "figure", ax_or_figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(path, buffer.getvalue())


# -- the results store ----------------------------------------------------------------------


class OutFolderError(ValueError):
    """The output folder cannot hold this run; the message names the file and the fix."""


class ConfigMismatch(OutFolderError):
    """The output folder holds results of a different protocol."""


class Records:
    """Records of finished units, looked up by their fields."""

    def __init__(self, records=()):
        self.records = list(records)

    def find(self, **key):
        """The first record whose fields include ``key``, or None."""
        for record in self.records:
            if all(record.get(k) == v for k, v in key.items()):
                return record
        return None

    def has(self, **key):
        return self.find(**key) is not None


class UnitRecords(Records):
    """The store as one unit sees it: the records so far, and a file of its own for its records.

    It shares ``records`` with the store in this process; a worker process gets a copy with
    its unit, and its file is the only one it writes.
    """

    def __init__(self, records, path):
        self.records = records
        self.path = Path(path)

    def add(self, record):
        """Append a record to the unit's file and flush it to disk."""
        record = _jsonable(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _append(self.path, [record])
        self.records.append(record)
        return record


class Store(Records):
    """Finished units of one experiment, on disk in ``out``.

    ``config.json`` holds the protocol (the options that change results); a folder whose
    protocol differs is refused, so results of different protocols never mix. A folder with
    no finished unit and no training state to resume (a run that failed before its first
    unit) holds nothing the protocol protects: its ``config.json`` is replaced.
    ``units.jsonl`` holds one JSON record per line, appended and flushed at once; a unit's
    records go to ``units/<unit>.jsonl`` (``unit``) until ``merge_units`` appends them.

    ``read_only`` (rebuilding a report, no new units) compares the options but not the
    package defaults, and adopts the protocol recorded in the folder: a package upgrade
    changes no finished result, and the report must describe the one its units ran under.
    ``upgrade`` turns a protocol recorded by an older version into today's form before the
    comparison.
    """

    def __init__(self, out, experiment, protocol, read_only=False, upgrade=None):
        self.out = Path(out)
        make_out_folder(self.out)
        self.experiment = experiment
        self.protocol = _jsonable(protocol)
        self.read_only = read_only
        self._upgrade = upgrade or (lambda recorded: recorded)
        self.units_path = self.out / UNITS_FILE
        self.units_folder = self.out / UNITS_FOLDER
        self._check_config()
        # A report rebuilt while a run appends must not rewrite the file under it.
        self.records = read_records(self.units_path, repair=not read_only)
        self._in_file = {dumps(record) for record in self.records}
        if read_only:
            for path in self._unit_files():
                self._keep(read_records(path, repair=False))
        else:
            self.merge_units()  # those of a run killed before it merged them

    def _check_config(self):
        path = self.out / CONFIG_FILE
        if not path.exists() or (not self.read_only and not self._holds_results()):
            atomic_write_json(path, {"experiment": self.experiment, "protocol": self.protocol})
            return
        found = self._read_config(path)
        recorded = _jsonable(self._upgrade(found.get("protocol", {})))
        compared = (recorded, self.protocol)
        if self.read_only:
            compared = [{k: v for k, v in p.items() if k not in RECORDED_SINCE} for p in compared]
        # An option added since (absent there, None here) changes nothing.
        differences = _differences(*compared)
        if found.get("experiment") != self.experiment:
            differences.insert(
                0, f"experiment: {found.get('experiment')!r} before, {self.experiment!r} now"
            )
        if differences:
            raise ConfigMismatch(
                f"{self.out} holds results of another protocol ({'; '.join(differences)}). "
                "Use another --out, or delete that folder to start over."
            )
        if self.read_only:
            self.protocol = {**self.protocol, **recorded}

    def _holds_results(self):
        """Whether finished units or a training state to resume rely on ``config.json``."""
        units = self.units_path.exists() and self.units_path.read_text().strip()
        unit_files = any(path.stat().st_size for path in self._unit_files())
        snapshots = self.out / SNAPSHOTS_FOLDER
        return bool(units) or unit_files or any(p.is_file() for p in snapshots.rglob("*"))

    def _read_config(self, path):
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError too
            reason = str(exc)
        else:
            if isinstance(found, dict) and isinstance(found.get("protocol", {}), dict):
                return found
            reason = "not an object with the keys experiment and protocol"
        raise OutFolderError(
            f"{path} cannot be read ({reason}), so the options that the results in "
            f"{self.out} were made with are unknown. Restore that file, use another --out, "
            "or delete that folder to start over."
        )

    def _unit_files(self, names=()):
        """The files of the units ``names`` that exist, then the others by name."""
        first = [self.units_folder / f"{name}.jsonl" for name in names]
        others = sorted(self.units_folder.glob("*.jsonl")) if self.units_folder.is_dir() else []
        return [path for path in dict.fromkeys(first + others) if path.exists()]

    def _keep(self, records):
        """Add to ``records`` those it lacks; returns them."""
        known = {dumps(record) for record in self.records}
        new = [record for record in records if dumps(record) not in known]
        self.records.extend(new)
        return new

    def add(self, record):
        """Append a record to ``units.jsonl`` and flush it to disk."""
        record = _jsonable(record)
        _append(self.units_path, [record])
        self.records.append(record)
        self._in_file.add(dumps(record))
        return record

    def unit(self, name):
        """The store of the unit ``name``, whose records go to its own file."""
        return UnitRecords(self.records, self.units_folder / f"{name}.jsonl")

    def merge_units(self, names=()):
        """Append the unit files' records to ``units.jsonl`` and delete the files.

        The units ``names`` come first, in that order (the order they ran in), then any
        others. A record already in ``units.jsonl`` (merged by a run that stopped before it
        deleted the file) is not appended again: no record is taken twice.
        """
        for path in self._unit_files(names):
            found = read_records(path, repair=False)
            self._keep(found)
            new = [record for record in found if dumps(record) not in self._in_file]
            _append(self.units_path, new)
            self._in_file.update(dumps(record) for record in new)
            path.unlink()
        with contextlib.suppress(OSError):
            self.units_folder.rmdir()  # only when empty

    def path(self, *parts):
        return self.out.joinpath(*parts)


def _append(path, records):
    """Append ``records`` to ``path``, one JSON line each, and flush them to disk."""
    if not records:
        return
    with open(path, "a", encoding="utf-8") as file:
        file.write("".join(dumps(record) + "\n" for record in records))
        file.flush()
        os.fsync(file.fileno())


def read_records(path, repair):
    """The records of a ``.jsonl`` file (none when it is missing).

    Only the last line can be cut short (a crash while appending): its record is dropped
    with a warning, and that unit runs again. With ``repair`` a file whose last line lacks
    its newline, or whose records run together, is rewritten one record per line.
    """
    path = Path(path)
    records = []
    if not path.exists():
        return records
    text = path.read_text()
    lines = text.splitlines()
    # A last line without its newline (a cut write, a hand edit) would have the next
    # record appended onto it: the file is rewritten whole, one record per line.
    rewrite = bool(text.strip()) and not text.endswith("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        found, error = _objects_in(line)
        # Records run together ("}{"): appended onto a line that lacked its newline, as
        # earlier versions did. Each is whole, so each is kept, on a line of its own.
        rewrite = rewrite or len(found) > 1
        if error is not None:
            if number != len(lines):
                raise OutFolderError(
                    f"Line {number} of {path} is not valid JSON ({error}); a "
                    "crash can cut short only the last line, so the file was edited or "
                    "damaged. Restore it, delete that line (its unit runs again), or use "
                    "another --out."
                ) from error
            print(
                f"warning: dropping a truncated last line of {path}; that unit will be run again",
                file=sys.stderr,
            )
            rewrite = True
        for record in found:
            if not isinstance(record, dict):
                raise OutFolderError(
                    f"Line {number} of {path} is JSON but not a unit's record "
                    f"(an object): {line[:60]!r}. The file was edited or damaged. Restore "
                    "it, delete that line, or use another --out."
                )
        records.extend(found)
    if rewrite and repair:
        atomic_write_text(path, "".join(dumps(r) + "\n" for r in records))
    return records


def _objects_in(line):
    """The JSON values on ``line``, one after another, and the error that ended them (or None)."""
    decoder, found, index = json.JSONDecoder(), [], 0
    while index < len(line):
        try:
            value, index = decoder.raw_decode(line, index)
        except json.JSONDecodeError as error:
            return found, error
        found.append(value)
        while index < len(line) and line[index].isspace():
            index += 1
    return found, None


def make_out_folder(out):
    if out.exists() and not out.is_dir():
        raise OutFolderError(
            f"--out {out} is a file, not a folder. Give --out a folder "
            "(it is created when missing), or move that file away."
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutFolderError(
            f"Cannot create the output folder {out}: {exc.strerror} "
            f"({exc.filename}). Give --out a folder you can write to."
        ) from exc


# Protocol entries that result folders older than them lack; such a folder is not compared
# on them (what it relied on is unknown) instead of being refused.
RECORDED_SINCE = {"estimator_settings"}


def _keeps_old_behaviour(prefix, name, value):
    """Whether ``value`` of a parameter newer than a record is what models before it did."""
    cls = ESTIMATORS.get(prefix.split(".")[1])
    return cls is not None and cls.value_before_parameter(name) == value


def _differences(old, new, prefix=""):
    """Readable differences between two protocols, nested dictionaries entry by entry."""
    found = []
    for k in sorted(set(old) | set(new)):
        before, now = old.get(k), new.get(k)
        if not prefix and k in RECORDED_SINCE and k not in old:
            continue
        # A recorded setting that the run no longer reads (``estimator_settings`` leaves
        # those out) cannot change its results, nor can a parameter added since whose
        # default keeps the behaviour the run was recorded with.
        if prefix.startswith("estimator_settings.") and (
            k not in new or (k not in old and _keeps_old_behaviour(prefix, k, now))
        ):
            continue
        if isinstance(before, dict) and isinstance(now, dict):
            found += _differences(before, now, f"{prefix}{k}.")
        elif before != now:
            found.append(f"{prefix}{k}: {before!r} before, {now!r} now")
    return found


# -- interrupts ------------------------------------------------------------------------------


class Interrupted(KeyboardInterrupt):
    """Raised at the next safe point after SIGINT or SIGTERM."""


class InterruptGuard:
    """Turn SIGINT and SIGTERM into an ``Interrupted`` (a ``KeyboardInterrupt``) plus a flag.

    The exception stops the run where it is: ``fit`` and ``partial_fit`` keep the model
    reached and re-raise it, so the unfinished unit is neither recorded nor snapshotted,
    and the command line reports what finished. The flag is a second line of defence: code
    that catches ``KeyboardInterrupt`` and carries on (as the estimators once did) would hide
    the signal, and ``check()`` at each safe point raises it again, so that unit is thrown
    away instead of recorded.
    """

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handler(self, signum, frame):
        self.requested = True
        raise Interrupted(f"signal {signal.Signals(signum).name}")

    def check(self):
        if self.requested:
            raise Interrupted("interrupted")

    def __enter__(self):
        if _in_main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        return False


def _in_main_thread():
    import threading

    return threading.current_thread() is threading.main_thread()


def require_at_least_one(args, *names):
    """Refuse any of the count options ``names`` below 1, naming it as the command line does."""
    for name in names:
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1.")


# -- progress ----------------------------------------------------------------------------------


def _tqdm():
    """``tqdm.auto.tqdm``, or None when tqdm is not installed."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


class _TextBar:
    """tqdm's stand-in: a whole line every tenth of the way, which a log file keeps readable."""

    def __init__(self, total, desc, initial):
        self.total, self.desc, self.n, self._next = total, desc, initial, initial
        self._start = time.perf_counter()

    def update(self, n):
        self.n += n
        if self.n >= self._next or self.n >= self.total:
            seconds = time.perf_counter() - self._start
            print(f"  {self.desc}: {self.n}/{self.total} ({seconds:.0f} s)", file=sys.stderr)
            self._next = self.n + max(1, self.total // 10)

    def close(self):
        pass


class Reporter:
    """Progress bars (tqdm when installed, else plain lines) and result lines.

    ``bars=False`` (a worker process, whose bars would overwrite one another) shows a line
    where a bar would start.
    """

    def __init__(self, quiet=False, bars=True):
        self.quiet, self.bars = quiet, bars

    def bar(self, total, desc, initial=0):
        """A bar over ``total`` images from ``initial`` (a resumed run)."""
        if self.quiet:
            return _NoBar()
        if not self.bars:
            self.log(f"  {desc}: training in process {os.getpid()}")
            return _NoBar()
        tqdm = _tqdm()
        if tqdm is None:
            return _TextBar(total, desc, initial)
        return tqdm(
            total=total, initial=initial, desc=desc, unit="img", leave=False, dynamic_ncols=True
        )

    def log(self, message):
        if self.quiet:
            return
        tqdm = _tqdm()
        if tqdm is not None:
            # Through tqdm, so that the line does not cut through a bar being drawn.
            tqdm.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)


# -- seeds, environment, formatting -------------------------------------------------------------

# Seeds seed numpy's generators (random_state), which take integers in 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1


def parse_seeds(values):
    """``["3"]`` -> [0, 1, 2]; ``["0", "4"]`` -> [0, 4]; ``["5:8"]`` -> [5, 6, 7]."""
    seeds = []
    for value in values:
        text = str(value)
        if ":" in text:
            start, stop = (_seed_number(part, text) for part in text.split(":", 1))
            if stop <= start:
                raise ValueError(
                    f"--seeds range {text!r} is empty; write START:STOP with STOP > START."
                )
            seeds.extend(range(start, stop))
        else:
            seeds.append(_seed_number(text, text))
    if len(values) == 1 and ":" not in str(values[0]):
        count = seeds[0]
        if count < 1:
            raise ValueError(
                f"--seeds {count}: give a number of seeds >= 1, a list of seeds, "
                "or a range START:STOP."
            )
        seeds = list(range(count))
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds lists a seed twice: {seeds}.")
    return seeds


def _seed_number(part, text):
    """``part`` of the ``--seeds`` value ``text`` as an int in 0..MAX_SEED."""
    try:
        number = int(part)
    except ValueError:
        raise ValueError(
            f"--seeds {text!r} is not a whole number; give a number of seeds N "
            "(0..N-1), a list of seeds, or a range START:STOP."
        ) from None
    if not 0 <= number <= MAX_SEED:
        raise ValueError(
            f"--seeds {text!r} is outside 0..{MAX_SEED}, the seeds numpy's generators take."
        )
    return number


def sampler_rng(seed, stream):
    """A numpy Generator for the data draws of ``seed``: the same for every model."""
    return np.random.default_rng([int(seed), int(stream)])


def environment(device=None):
    """Versions and hardware, for the report."""
    import sklearn
    import torch

    import gfe_sklearn

    return {
        "python": platform.python_version(),
        "gfe_sklearn": gfe_sklearn.__version__,
        "torch": torch.__version__,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def mean_std(values):
    """Mean and sample standard deviation (NaN for one value) of the finite values."""
    values = np.asarray([v for v in values if v is not None], dtype=float)
    if not values.size:
        return math.nan, math.nan
    std = float(values.std(ddof=1)) if values.size > 1 else math.nan
    return float(values.mean()), std


def fmt(value, digits=4):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def fmt_mean_std(mean, std, digits=4):
    if mean is None or not math.isfinite(mean):
        return "–"
    if std is None or not math.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def fmt_seconds(seconds):
    if seconds is None or not math.isfinite(seconds):
        return "–"
    if seconds < 1:
        return f"{1000 * seconds:.3g} ms"
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def markdown_table(header, rows, align=None):
    """A GitHub-flavoured Markdown table; ``align`` is a string of 'l'/'r' per column."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


@contextlib.contextmanager
def stopwatch():
    """``with stopwatch() as clock: ...`` then ``clock()`` is the seconds spent inside."""
    start = time.perf_counter()
    end = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())
