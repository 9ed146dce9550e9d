"""``python -m experiments <name> [options]``: the command line of the experiments."""

import argparse
import contextlib
import json
import math
import re
import shlex
import sys
import textwrap
from pathlib import Path

import torch

import gfe_sklearn
from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder
from gfe_sklearn.flow import SOLVERS, STOP_RULES

from . import _converged, _curves, _data_efficiency, _latent, _reconstructions, _solvers
from ._common import (
    SNAPSHOTS_FOLDER,
    InterruptGuard,
    OutFolderError,
    Reporter,
    Store,
    atomic_write_json,
    atomic_write_text,
    environment,
    markdown_table,
    parse_seeds,
)
from ._lock import lock_out_folder
from ._models import KINDS, PAPERS_GFE, TRAINED, make_model, model_params
from ._training import DATASETS, Context
from ._units import run_units

EXPERIMENTS = {
    module.NAME: module
    for module in (_data_efficiency, _converged, _solvers, _curves, _latent, _reconstructions)
}

# Options that never change results: left out of the protocol that a resumed run must match.
RUNTIME_OPTIONS = {
    "out",
    "device",
    "quiet",
    "threads",
    "report_only",
    "data_home",
    "snapshot_seconds",
    "seeds",
    "dataset",
    "experiment",
    "model_cache",
    "n_jobs",
}

# Defaults of the options every experiment has; an experiment's DEFAULTS and SMOKE override.
COMMON_DEFAULTS = {
    "seeds": ["1"],
    "n_test": None,
    "n_train": None,
    "batch_size": 5,
    "n_components": 20,
    "hidden": [150, 300, 600],
    "learning_rate": 5e-4,
    "optimizer": "rmsprop",
    "solver": None,
    "tau": None,
    "stop_rule": None,
    "fit_stop_tol": None,
    "s_max": None,
    "s_min": None,
}
COMMON_SMOKE = {"n_train": 200, "n_test": 50, "n_components": 4, "hidden": [16]}

PAPERS = """\
[1] K. Flouris, A. Volokitin, G. Bredell, E. Konukoglu. Explicit and data-efficient encoding
    via gradient flow. NeurIPS 2024 workshop on Machine Learning and the Physical Sciences.
[2] The same authors. Gradient flow encoding with distance optimization adaptive step size."""

RESUME_NOTE = """\
Each unit writes its results to OUT/units/UNIT.jsonl as it takes them, merged into
OUT/units.jsonl when the units stop, and training state is saved to OUT/snapshots every
--snapshot-seconds, so Ctrl-C (or SIGTERM) loses at most the unit in progress since its
last snapshot. Re-running the same command with the same --out resumes: finished units
are skipped. The JSON, Markdown and PNG results are rebuilt from the results at the end
(also after an interrupt, and alone with --report-only). An --out
holding results of different options is refused; --seeds and --dataset may change, to add
seeds or datasets to a finished run. One run at a time uses an --out: a second one is
refused with the first one's process id and command (OUT/.lock)."""

PARALLEL_NOTE = """\
With --n-jobs N, N units (a seed and a model, say) train at a time, each in a worker
process with --threads torch threads (1 when not given). The results are those of the same
command with --n-jobs 1 and the same --threads (torch's results can depend on its thread
count), merged into units.jsonl in the same order. Ctrl-C or an error stops every worker:
finished units stay recorded and the others resume from their last snapshot."""


# The estimator parameter that each option sets, to name the option in an estimator's error.
OPTION_OF_PARAMETER = {
    "n_components": "--n-components",
    "hidden_layer_sizes": "--hidden",
    "optimizer": "--optimizer",
    "learning_rate": "--learning-rate",
    "batch_size": "--batch-size",
    "random_state": "--seeds",
    "solver": "--solver",
    "tau": "--tau",
    "stop_rule": "--stop-rule",
    "fit_stop_tol": "--fit-stop-tol",
    "s_max": "--s-max",
    "s_min": "--s-min",
}

# Options naming folders: a file there would fail only once the run writes or reads it.
FOLDER_OPTIONS = ("out", "data_home", "model_cache")


# Option types: argparse reports their ArgumentTypeError as "argument --x: <message>".


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _finite_number(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _positive_number(text):
    value = _finite_number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _non_negative_number(text):
    value = _finite_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _n_jobs(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1 and value != -1:
        raise argparse.ArgumentTypeError(
            f"expected a positive number of worker processes, or -1 for one per CPU core; "
            f"got {text!r}"
        )
    return value


def _device(text):
    """A device this machine has, checked now rather than at the first fit; kept as given."""
    try:
        AutoEncoderBaseline(device=text).check_params()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _add_common(parser, module):
    defaults = {**COMMON_DEFAULTS, **module.DEFAULTS}
    smoke = {**COMMON_SMOKE, **module.SMOKE}

    def text(value):
        if value is None:
            return "all"
        return " ".join(map(str, value)) if isinstance(value, list) else str(value)

    def shown(name):
        extra = f"; --smoke: {text(smoke[name])}" if name in smoke else ""
        return f"(default: {text(defaults.get(name))}{extra})"

    group = parser.add_argument_group("data and run")
    group.add_argument(
        "--dataset",
        nargs="+",
        choices=sorted(DATASETS),
        metavar="NAME",
        help=f"one or more of {', '.join(DATASETS)} {shown('dataset')}",
    )
    group.add_argument(
        "--seeds",
        nargs="+",
        metavar="S",
        help=f"a number N of seeds (0..N-1), a list of seeds, or START:STOP {shown('seeds')}",
    )
    group.add_argument(
        "--n-test", type=_positive_int, metavar="N", help=f"{module.N_TEST_HELP} {shown('n_test')}"
    )
    group.add_argument(
        "--n-train",
        type=_positive_int,
        metavar="N",
        help=f"train on a fixed random subset of N training images {shown('n_train')}",
    )
    group.add_argument(
        "--device",
        type=_device,
        default="auto",
        help="torch device: auto, cpu, cuda, cuda:N, mps (default: auto)",
    )
    group.add_argument(
        "--out", type=Path, metavar="DIR", help=f"output folder (default: results/{module.NAME})"
    )
    group.add_argument(
        "--data-home",
        metavar="DIR",
        help="folder of the MNIST files (default: $GFE_SKLEARN_DATA, else ~/gfe_sklearn_data)",
    )
    group.add_argument(
        "--smoke",
        action="store_true",
        help="a tiny run of seconds (small data and networks), as run by CI",
    )
    group.add_argument(
        "--report-only",
        action="store_true",
        help="only rebuild the JSON, Markdown and PNG files from OUT/units.jsonl",
    )
    workers = hasattr(module, "units")  # independent units, which --n-jobs can run at a time
    threads = "set torch's CPU threads for this process (default: torch's choice"
    if workers:
        threads = (
            "set torch's CPU threads for this process, or for each worker with --n-jobs "
            "(default: torch's choice, 1 per worker"
        )
    group.add_argument(
        "--threads",
        type=_positive_int,
        metavar="N",
        help=f"{threads}; --smoke: 1, which tiny networks run fastest on)",
    )
    if workers:
        group.add_argument(
            "--n-jobs",
            type=_n_jobs,
            default=1,
            metavar="N",
            help="train N units (seeds, models) at a time in worker processes; -1: one "
            "per CPU core. Changes no result; see the note below (default: 1, one unit "
            "after another in this process)",
        )
    group.add_argument(
        "--snapshot-seconds",
        type=_non_negative_number,
        default=60.0,
        metavar="S",
        help="save the training state this often, for resuming (default: 60)",
    )
    group.add_argument("--quiet", action="store_true", help="no progress bars or log lines")

    group = parser.add_argument_group("models (the papers' settings by default)")
    group.add_argument(
        "--batch-size",
        type=_positive_int,
        metavar="N",
        help=f"training minibatch size {shown('batch_size')}",
    )
    group.add_argument(
        "--n-components",
        type=_positive_int,
        metavar="N",
        help=f"latent dimension {shown('n_components')}",
    )
    group.add_argument(
        "--hidden",
        type=_positive_int,
        nargs="+",
        metavar="W",
        help=f"decoder hidden widths, latent side first {shown('hidden')}",
    )
    group.add_argument(
        "--learning-rate", type=_positive_number, metavar="LR", help=f"{shown('learning_rate')}"
    )
    group.add_argument("--optimizer", choices=["rmsprop", "adam"], help=f"{shown('optimizer')}")
    gfe = GradientFlowEncoder().get_params()
    group.add_argument(
        "--solver",
        choices=sorted(SOLVERS),
        help="solver of every GFE's flows, Mixed included (default: amd, the "
        "papers' GFE-amd, whatever GradientFlowEncoder's default; lbfgs "
        "goes straight to the flow's endpoint)",
    )
    group.add_argument(
        "--tau",
        type=_positive_number,
        metavar="T",
        help="horizon of every GFE flow, Mixed included (default: "
        f"GradientFlowEncoder's, {gfe['tau']!r}: 1e5 for AMD)",
    )
    group.add_argument(
        "--stop-rule",
        choices=sorted(STOP_RULES),
        help="when a GFE flow has reached its endpoint (default: "
        f"GradientFlowEncoder's, {gfe['stop_rule']}; 'loss' is the rule "
        "of versions before 0.2)",
    )
    group.add_argument(
        "--fit-stop-tol",
        type=_non_negative_number,
        metavar="TOL",
        help="early-stop tolerance of the flows that encode training batches "
        f"(default: {PAPERS_GFE['fit_stop_tol']:g}, whatever "
        "GradientFlowEncoder's default; 0 runs them to tau)",
    )
    group.add_argument(
        "--s-max",
        type=_positive_number,
        metavar="S",
        help=f"AMD's largest step (default: GradientFlowEncoder's, "
        f"{gfe['s_max']:g}; the papers' is 10)",
    )
    group.add_argument(
        "--s-min",
        type=_non_negative_number,
        metavar="S",
        help="AMD's floor under each trial step after the first (default: "
        "GradientFlowEncoder's, 0; 1 is the papers' floor s0, which "
        "costs more evaluations on a trained decoder for the same "
        "codes)",
    )


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m experiments",
        description="Reproduce the experiments of the gradient flow encoding papers "
        "[1, 2] from a source checkout. Each writes JSON, a Markdown table and PNG figures "
        "into --out.",
        epilog=f"{PAPERS}\n\n{RESUME_NOTE}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s with gfe-sklearn {gfe_sklearn.__version__}",
    )
    sub = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    for name, module in EXPERIMENTS.items():
        child = sub.add_parser(
            name,
            help=module.SUMMARY.replace("%", "%%"),
            description=textwrap.dedent(module.DESCRIPTION),
            epilog=f"{PAPERS}\n\n{RESUME_NOTE}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(child)
        _add_common(child, module)
        if hasattr(module, "units"):
            child.epilog += f"\n\n{PARALLEL_NOTE}"
    return parser


def resolve_options(args, module):
    """Fill the options left unset from the experiment's (smoke) defaults, then check them."""
    layers = [COMMON_DEFAULTS, module.DEFAULTS]
    if args.smoke:
        layers += [COMMON_SMOKE, module.SMOKE]
    for layer in layers[::-1]:
        for name, value in layer.items():
            if getattr(args, name, None) is None:
                setattr(args, name, value)
    if args.smoke and args.threads is None:
        args.threads = 1  # tiny networks: extra threads only add synchronisation
    if getattr(args, "n_jobs", 1) != 1 and args.threads is None:
        args.threads = 1  # each worker's, and this process's (the report names it)
    args.seeds = parse_seeds(args.seeds)
    if isinstance(args.dataset, str):
        args.dataset = [args.dataset]
    args.dataset = list(dict.fromkeys(args.dataset))
    if args.out is None:
        args.out = Path("results") / module.NAME
    module.check_options(args)
    check_model_options(args)
    check_folder_options(args)
    return args


def check_model_options(args):
    """Run the estimators' own parameter checks on this run's models, before any file exists.

    The option types check each value alone; this catches what only the estimators know
    (an ``--s-max`` below AMD's first trial step, say) instead of the first fit, hours in.
    """
    for kind in TRAINED:
        try:
            make_model(kind, args, args.seeds[0]).check_params()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{_options_named_in(str(exc))}: {exc}") from exc


def _options_named_in(message):
    options = [
        option
        for parameter, option in OPTION_OF_PARAMETER.items()
        if re.search(rf"\b{parameter}\b", message)
    ]
    if not options:
        return "the model options"
    return ("argument " if len(options) == 1 else "arguments ") + ", ".join(options)


def check_folder_options(args):
    for name in FOLDER_OPTIONS:
        path = getattr(args, name, None)
        if path is not None and Path(path).exists() and not Path(path).is_dir():
            option = "--" + name.replace("_", "-")
            raise ValueError(
                f"argument {option}: {path} is a file, not a folder; give a "
                "folder (it is created when missing), or move that file away"
            )


# Estimator parameters that cannot change an experiment's results beyond those partial_fit
# never reads (experiments train by partial_fit): the seed's and runtime settings.
_NEVER_COMPARED = {"decoder", "encoder", "random_state", "device", "n_threads", "verbose"}


def _run_models(args):
    """A model of each trained kind, by estimator class, GFE first (as protocols hold them)."""
    models = (make_model(kind, args, 0) for kind in TRAINED)
    return {type(model).__name__: model for model in models}


def estimator_settings(args):
    """What the run builds its estimators with, package defaults included.

    Recorded in the protocol so that resuming a run after a default it relies on changed (a
    new ``fit_stop_tol``, say) is refused instead of mixing two settings in one table.
    Parameters that cannot change its results are left out (``_NEVER_COMPARED``, and those
    that ``partial_fit_params`` leaves out: fit's epoch loop, the constants of solvers other
    than the run's), so that changing one does not refuse a run it cannot affect.
    """
    return {
        name: {k: v for k, v in model.partial_fit_params().items() if k not in _NEVER_COMPARED}
        for name, model in _run_models(args).items()
    }


def upgrade_protocol(args):
    """Turn a protocol recorded before ``estimator_settings`` into today's form.

    Those protocols hold the estimators' bare defaults (``estimator_defaults``). The run's own
    settings override them now as they did then: the options are compared one by one, and
    ``PAPERS_GFE`` pins what the defaults were on the day it was introduced.
    """
    current = estimator_settings(args)
    explicit = {
        type(make_model(kind, args, 0)).__name__: {
            **model_params(args, 0),
            **KINDS[kind].options(args),
        }
        for kind in TRAINED
    }

    def upgrade(recorded):
        if "estimator_defaults" not in recorded:
            return recorded
        defaults = recorded["estimator_defaults"]
        settings = {}
        for name in current:
            settings[name] = {
                k: explicit[name].get(k, v)
                for k, v in defaults.get(name, {}).items()
                if k in current[name]
            }
        upgraded = {k: v for k, v in recorded.items() if k != "estimator_defaults"}
        return {**upgraded, "estimator_settings": settings}

    return upgrade


def protocol_of(args, module):
    options = {
        name: value
        for name, value in sorted(vars(args).items())
        if name not in RUNTIME_OPTIONS and name not in module.SELECTORS
    }
    return {**options, "estimator_settings": estimator_settings(args)}


def _report(module, ctx, command, status):
    args = ctx.args
    summary, body = module.report(ctx)
    out = Path(args.out)
    chosen = {name: getattr(args, name) for name in ("dataset", "seeds", *module.SELECTORS)}
    setup = markdown_table(
        ["option", "value"],
        [
            (f"`{k}`", f"`{v}`")
            for k, v in {**ctx.store.protocol, **chosen}.items()
            if k != "estimator_settings"
        ],
        align="ll",
    )
    devices = sorted({r["device"] for r in ctx.store.records if r.get("device")})
    env = environment(", ".join(devices) or args.device)
    status_line = {
        "interrupted": "\n**Interrupted: partial results.** Re-run the command to finish.\n",
        "failed": "\n**Failed: partial results.** See the error, then re-run the command.\n",
    }.get(status, "")
    markdown = "\n".join(
        [
            f"# {module.TITLE}",
            "",
            textwrap.dedent(module.DESCRIPTION).strip(),
            status_line,
            "Command:",
            "",
            "```bash",
            command,
            "```",
            "",
            body.strip(),
            "",
            "## Setup",
            "",
            setup,
            "",
            "Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()) + ".",
            "",
        ]
    )
    atomic_write_json(
        out / f"{module.NAME}.json",
        {
            "experiment": module.NAME,
            "status": status,
            "command": command,
            "protocol": ctx.store.protocol,
            "seeds": args.seeds,
            "dataset": args.dataset,
            "environment": env,
            "summary": summary,
            "records": ctx.store.records,
        },
    )
    atomic_write_text(out / f"{module.NAME}.md", markdown)


def main(argv=None):
    """Run one experiment; returns the exit status (0, 1 on an error, 130 when interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    module = EXPERIMENTS[args.experiment]
    try:
        resolve_options(args, module)
    except ValueError as exc:
        parser.error(str(exc))
    command = "python -m experiments " + shlex.join(argv)
    try:
        import matplotlib  # noqa: F401  (checked now, not after hours of training)
    except ImportError:
        print(
            "error: the experiments draw their figures with matplotlib, which is not "
            "installed: pip install gfe-sklearn[plot]",
            file=sys.stderr,
        )
        return 1
    if args.threads:
        # Process-wide and not undone: switching torch's OpenMP pool back and forth leaves
        # idle workers that starve other OpenMP users (scikit-learn's t-SNE) on few cores.
        torch.set_num_threads(args.threads)
    return _run(args, module, command)


def _command_of_results(path, default):
    """The command that ran the units a report shows (a rebuilt report keeps it)."""
    try:
        return json.loads(path.read_text())["command"]
    except (OSError, ValueError, KeyError):
        return default


def _run(args, module, command):
    out = Path(args.out)
    try:
        if args.report_only:
            if not out.is_dir():
                raise OutFolderError(
                    f"--report-only rebuilds the report from the results in {out}, which is "
                    "not a folder. Check --out (the folder of the run to report on)."
                )
            lock = contextlib.nullcontext()
        else:
            lock = lock_out_folder(out, command)
    except OutFolderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    with lock:  # held until this run ends; the operating system releases it after a crash
        return _run_in(args, module, command)


def _run_in(args, module, command):
    reporter = Reporter(args.quiet)
    try:
        store = Store(
            args.out,
            module.NAME,
            protocol_of(args, module),
            read_only=args.report_only,
            upgrade=upgrade_protocol(args),
        )
    except OutFolderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.report_only:
        command = _command_of_results(store.path(f"{module.NAME}.json"), command)
    with InterruptGuard() as guard:
        ctx = Context(
            args=args,
            store=store,
            reporter=reporter,
            guard=guard,
            snapshot_dir=Path(args.out) / SNAPSHOTS_FOLDER,
            snapshot_seconds=args.snapshot_seconds,
        )
        status = "report-only" if args.report_only else "complete"
        try:
            if args.report_only:
                pass
            elif hasattr(module, "units"):  # independent units, --n-jobs at a time
                run_units(ctx, module.units(ctx), n_jobs=args.n_jobs, threads=args.threads)
            else:
                module.run(ctx)
        except KeyboardInterrupt:
            status = "interrupted"
            guard.requested = False
        except Exception:
            # Keep what finished readable, then let the error out with its traceback.
            with contextlib.suppress(Exception):
                _report(module, ctx, command, "failed")
            raise
        with contextlib.suppress(OSError):
            (Path(args.out) / SNAPSHOTS_FOLDER).rmdir()  # only when empty: nothing left to resume
        try:
            _report(module, ctx, command, status)
        except KeyboardInterrupt:
            print(
                "Interrupted while writing the report; units.jsonl is intact. Re-run "
                "with --report-only to rebuild it.",
                file=sys.stderr,
            )
            return 130
    if status == "interrupted":
        print(
            f"Interrupted. {len(store.records)} recorded result(s) are kept in "
            f"{store.units_path}; re-run the same command to resume.",
            file=sys.stderr,
        )
        return 130
    reporter.log(f"Results in {args.out}/{module.NAME}.md (.json, .png).")
    if not args.quiet:
        print(Path(args.out) / f"{module.NAME}.md")
    return 0


__all__ = ["main", "build_parser", "EXPERIMENTS"]
