"""``python -m gfe_sklearn``: what gradient flow encoding is for, shown on small data.

A gradient flow encoder (GFE) and an autoencoder with the same decoder (AE) are trained on
the same stream of images; at each training budget (images seen, with repetition) both
reconstruct held-out images, and so does "Mixed": the AE's decoder with codes found by the
gradient flow instead of the AE's encoder. At the largest budget a logistic regression is
trained on each encoder's codes, next to PCA's and the pixels themselves. The papers'
claim is data efficiency: a decoder trained on flow codes learns more per image.
"""

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from . import __version__
from ._autoencoder import AutoEncoderBaseline
from ._device import resolve_device
from ._gradient_flow import GradientFlowEncoder
from .flow import SOLVERS

# The main job trains GFE with the estimator's own prior on the codes, whatever it becomes.
DEFAULT_CODE_PRIOR = GradientFlowEncoder().code_prior

MODELS = ("GFE", "AE", "Mixed")

# The AE also trains on this many times the largest budget, to show how many images it
# needs to catch up: the gap at small budgets is about data efficiency, not final quality.
AE_CATCH_UP = 10

# Test images shown in the figure.
N_SHOWN = 10

# Training images whose codes train the logistic regression.
N_CLASSIFIER_TRAIN = 2000


@dataclass(frozen=True)
class Setting:
    """How the job runs on one dataset: the model size and the default budgets."""

    title: str
    n_components: int
    hidden_layer_sizes: tuple
    image_shape: tuple
    budgets: tuple
    n_test: int


SETTINGS = {
    # 64 pixels: a small decoder; 1,797 images, of which n_test are held out.
    "digits": Setting("scikit-learn's digits (8x8)", 10, (32, 64), (8, 8), (300, 1000, 3000), 500),
    # The papers' MNIST decoder, with a test subset that keeps scoring to seconds.
    "mnist": Setting("MNIST", 20, (150, 300, 600), (28, 28), (480, 1920, 5760), 1000),
    "fashion-mnist": Setting(
        "Fashion-MNIST", 20, (150, 300, 600), (28, 28), (480, 1920, 5760), 1000
    ),
}


class DatasetUnavailable(Exception):
    """The files of a dataset are not present; the message says how to get them."""


def load(dataset, n_test, random_state, data_home=None):
    """Training and held-out images in ``[0, 1]`` as float32, with their labels."""
    if dataset == "digits":
        X, y = load_digits(return_X_y=True)
        X = X / 16.0  # pixel values are 0..16; a fixed scale keeps held-out data in [0, 1]
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=n_test, stratify=y, random_state=random_state
        )
    else:
        from . import datasets

        loader = {"mnist": datasets.load_mnist, "fashion-mnist": datasets.load_fashion_mnist}[
            dataset
        ]
        try:
            X_train, y_train = loader(
                subset="train", data_home=data_home, download_if_missing=False, return_X_y=True
            )
            X_test, y_test = loader(
                subset="test", data_home=data_home, download_if_missing=False, return_X_y=True
            )
        except FileNotFoundError as exc:
            loader_name = f"load_{dataset.replace('-', '_')}"
            raise DatasetUnavailable(
                f"{exc} This command does not download; gfe_sklearn.datasets.{loader_name}() does."
            ) from None
        keep = np.random.RandomState(random_state).permutation(len(X_test))[:n_test]
        X_test, y_test = X_test[keep], y_test[keep]
    # float32, the models' arithmetic: no conversion per call, half the memory.
    return (
        np.ascontiguousarray(X_train, dtype=np.float32),
        np.ascontiguousarray(X_test, dtype=np.float32),
        y_train,
        y_test,
    )


def _image_stream(n_images, random_state):
    """Indices into the training set, epoch after epoch, each epoch shuffled."""
    rng = np.random.RandomState(random_state)
    while True:
        yield from rng.permutation(n_images)


def _take(stream, n):
    return np.fromiter(stream, dtype=np.intp, count=n)


def _classify(Z_train, y_train, Z_test, y_test):
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return float(clf.fit(Z_train, y_train).score(Z_test, y_test))


def run(
    dataset="digits",
    *,
    budgets=None,
    solver="lbfgs",
    code_prior=DEFAULT_CODE_PRIOR,
    device="auto",
    out="gfe-sklearn-demo",
    n_test=None,
    random_state=0,
    data_home=None,
    plot=True,
    log=print,
):
    """Train GFE and the AE on the same images, score them at each budget, plot, classify.

    Parameters
    ----------
    dataset : {'digits', 'mnist', 'fashion-mnist'}, default='digits'
    budgets : sequence of int, optional
        Training images (with repetition) after which the models are scored; by default
        the dataset's ``SETTINGS`` budgets.
    solver : str, default='lbfgs'
        ``GradientFlowEncoder``'s solver, in training and encoding (GFE and Mixed).
    code_prior : float, default=0.1
        GFE's prior on its codes (``GradientFlowEncoder(code_prior=...)``, whose default it
        is); Mixed encodes without one, as the papers' Mixed model.
    device : str, default='auto'
    out : str or path-like, default='gfe-sklearn-demo'
        Folder of the figure.
    n_test : int, optional
        Held-out images scored; by default the dataset's ``SETTINGS`` number.
    random_state : int, default=0
        Seeds the split, the image stream and the models.
    data_home : str or path-like, optional
        Folder of the MNIST files (see ``gfe_sklearn.datasets``).
    plot : bool, default=True
        Write the figure (needs matplotlib).
    log : callable, default=print
        Receives each line of progress and of the report.

    Returns
    -------
    results : dict
        ``budgets``; ``bce``: model -> held-out mean cross-entropy per budget;
        ``ae_catch_up``: (images, BCE) of the AE trained on ``AE_CATCH_UP`` times the
        largest budget; ``accuracy``: codes -> held-out accuracy of a logistic regression;
        ``figure``: the PNG's path or None; ``seconds``: wall time.
    """
    start = time.perf_counter()
    if dataset not in SETTINGS:
        raise ValueError(f"dataset={dataset!r} is not one of {sorted(SETTINGS)}.")
    setting = SETTINGS[dataset]
    budgets = sorted(set(setting.budgets if budgets is None else budgets))
    n_test = setting.n_test if n_test is None else n_test

    def say(text):
        log(f"[{time.perf_counter() - start:6.1f} s] {text}")

    X_train, X_test, y_train, y_test = load(dataset, n_test, random_state, data_home)
    say(
        f"{setting.title}: {len(X_train)} training and {len(X_test)} held-out images of "
        f"{X_train.shape[1]} pixels; budgets {', '.join(map(str, budgets))} images; "
        f"solver={solver!r}"
    )
    # Training settings are explicit, so the comparison does not move with the estimators'
    # defaults: the papers' learning rate for both models, small batches, and training
    # flows stopped within 0.1% of their endpoints.
    common = dict(
        n_components=setting.n_components,
        hidden_layer_sizes=setting.hidden_layer_sizes,
        batch_size=16,
        learning_rate=5e-4,
        device=device,
        random_state=random_state,
    )
    gfe = GradientFlowEncoder(solver=solver, fit_stop_tol=1e-3, code_prior=code_prior, **common)
    ae = AutoEncoderBaseline(**common)
    shown = X_test[:N_SHOWN]
    bce = {name: [] for name in MODELS}
    reconstructions = {}
    # Both models see the same images in the same order.
    streams = {
        "GFE": _image_stream(len(X_train), random_state),
        "AE": _image_stream(len(X_train), random_state),
    }
    seen = 0
    for budget in budgets:
        batch = {name: _take(stream, budget - seen) for name, stream in streams.items()}
        seen = budget
        for name, model in (("GFE", gfe), ("AE", ae)):
            model.partial_fit(X_train[batch[name]])
        mixed = GradientFlowEncoder.from_autoencoder(ae, solver=solver)
        for name, model in zip(MODELS, (gfe, ae, mixed)):
            bce[name].append(-model.score(X_test))
            reconstructions[f"{name} {budget}"] = model.inverse_transform(model.transform(shown))
        say(
            f"{budget:>6} images: held-out BCE "
            + ", ".join(f"{name} {bce[name][-1]:.4f}" for name in MODELS)
        )

    accuracy = _codes_accuracy(
        gfe, mixed, ae, setting, X_train, X_test, y_train, y_test, random_state
    )
    say(
        "logistic regression on codes: "
        + ", ".join(f"{name} {value:.3f}" for name, value in accuracy.items())
    )

    catch_up = AE_CATCH_UP * budgets[-1]
    ae.partial_fit(X_train[_take(streams["AE"], catch_up - budgets[-1])])
    ae_catch_up = (catch_up, -ae.score(X_test))
    say(f"AE trained on to {catch_up} images: held-out BCE {ae_catch_up[1]:.4f}")
    figure = None
    if plot:
        figure = _figure(Path(out), dataset, setting, budgets, bce, shown, reconstructions)
        say(f"figure written to {figure}")
    results = {
        "dataset": dataset,
        "budgets": budgets,
        "bce": bce,
        "ae_catch_up": ae_catch_up,
        "accuracy": accuracy,
        "figure": figure,
        "setting": setting,
        "n_train": len(X_train),
        "n_test": len(X_test),
        "n_classifier_train": min(len(X_train), N_CLASSIFIER_TRAIN),
        "seconds": time.perf_counter() - start,
    }
    for line in report(results):
        log(line)
    return results


def _codes_accuracy(gfe, mixed, ae, setting, X_train, X_test, y_train, y_test, random_state):
    """Held-out accuracy of a logistic regression on each encoder's codes and on the pixels.

    The classifier trains on at most ``N_CLASSIFIER_TRAIN`` training images: encoding all
    of MNIST's 60,000 by gradient flow would take longer than the rest of the job.
    """
    keep = np.random.RandomState(random_state).permutation(len(X_train))[:N_CLASSIFIER_TRAIN]
    X_train, y_train = X_train[keep], y_train[keep]
    k = setting.n_components
    encoders = {
        f"GFE ({k})": gfe,
        f"Mixed ({k})": mixed,
        f"AE ({k})": ae,
        f"PCA ({k})": PCA(n_components=k, random_state=random_state).fit(X_train),
    }
    accuracy = {
        name: _classify(encoder.transform(X_train), y_train, encoder.transform(X_test), y_test)
        for name, encoder in encoders.items()
    }
    accuracy[f"pixels ({X_train.shape[1]})"] = _classify(X_train, y_train, X_test, y_test)
    return accuracy


def _figure(out, dataset, setting, budgets, bce, shown, reconstructions):
    from .plotting import plot_curves, plot_reconstructions, subplots

    figure, axes = subplots(1, 2, panel_size=(5.5, 3.8))
    plot_curves(
        {name: (budgets, bce[name]) for name in MODELS},
        ax=axes[0, 0],
        logx=True,
        xlabel="training images (with repetition)",
        ylabel="held-out cross-entropy",
        title=f"{setting.title}: reconstruction loss (lower is better)",
    )
    rows = {
        key: reconstructions[key]
        for key in [f"{name} {budgets[0]}" for name in ("GFE", "AE")]
        + [f"{name} {budgets[-1]}" for name in MODELS]
    }
    plot_reconstructions(
        rows,
        shown,
        image_shape=setting.image_shape,
        ax=axes[0, 1],
        title="held-out images; rows: model, images trained",
    )
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{dataset}.png"
    figure.savefig(path, dpi=120)
    return path


def report(results):
    """The lines of the summary: the table, what it shows, and the classifier comparison."""
    budgets, bce = results["budgets"], results["bce"]
    lines = [
        "",
        f"Held-out mean cross-entropy (BCE, lower is better) on {results['n_test']} "
        f"images, by training images seen ({results['n_train']} distinct):",
        "",
    ]
    header = f"{'images':>8} " + " ".join(f"{name:>8}" for name in MODELS)
    lines += [header, "-" * len(header)]
    for i, budget in enumerate(budgets):
        lines.append(f"{budget:>8} " + " ".join(f"{bce[name][i]:>8.4f}" for name in MODELS))
    gfe_wins = sum(g < a for g, a in zip(bce["GFE"], bce["AE"]))
    mixed_wins = sum(m < a for m, a in zip(bce["Mixed"], bce["AE"]))
    images, catch_up = results["ae_catch_up"]
    lines += [
        "",
        f"GFE reconstructs held-out images better than the AE at {gfe_wins} of "
        f"{len(budgets)} budgets. Mixed (the AE's decoder, codes found by the flow instead of "
        f"the AE's encoder) beats the AE's own encoder at {mixed_wins} of {len(budgets)}.",
        f"Trained on to {images} images, the AE reaches {catch_up:.4f} "
        f"({'below' if catch_up < bce['GFE'][-1] else 'still above'} GFE's "
        f"{bce['GFE'][-1]:.4f} at {budgets[-1]}): the difference is how much is learned per "
        "image.",
        "",
        f"Held-out accuracy of a logistic regression on standardized codes (models after "
        f"{budgets[-1]} images; classifier trained on {results['n_classifier_train']} images):",
    ]
    accuracy = results["accuracy"]
    for name, value in accuracy.items():
        lines.append(f"  {name:<14} {value:.3f}")
    gfe_name = next(name for name in accuracy if name.startswith("GFE"))
    pca_name = next(name for name in accuracy if name.startswith("PCA"))
    difference = accuracy[gfe_name] - accuracy[pca_name]
    relation = (
        f"{abs(difference):.3f} above"
        if difference > 0
        else f"{abs(difference):.3f} below"
        if difference < 0
        else "equal to"
    )
    epochs = budgets[-1] / results["n_train"]
    lines += [
        f"GFE's codes classify {relation} PCA's. The encoders are trained only to reconstruct "
        f"images (here for {epochs:.1f} passes over the training images), not to separate "
        "classes.",
        "",
        f"wall time {results['seconds']:.1f} s"
        + (f"; figure: {results['figure']}" if results["figure"] else ""),
    ]
    return lines


def _budgets(text):
    try:
        values = [int(part) for part in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected positive whole numbers separated by commas, e.g. 300,1000,3000; got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected positive whole numbers separated by commas, e.g. 300,1000,3000; got {text!r}"
        )
    return values


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _device(text):
    try:
        resolve_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser():
    # The console script shows its own name; ``python -m`` would show "__main__.py".
    name = Path(sys.argv[0]).name
    parser = argparse.ArgumentParser(
        prog="python -m gfe_sklearn" if name == "__main__.py" else name,
        description=__doc__.split("\n\n", 1)[1],
        epilog="Figures need matplotlib (pip install gfe-sklearn[plot]). The papers' full "
        "experiments run from a source checkout: python -m experiments --help.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dataset",
        choices=sorted(SETTINGS),
        default="digits",
        help="digits is bundled with scikit-learn and takes under a minute; "
        "mnist and fashion-mnist need their files (gfe_sklearn.datasets) "
        "and take several minutes (default: digits)",
    )
    parser.add_argument(
        "--budgets",
        type=_budgets,
        metavar="N,N,...",
        help="training images after which the models are scored (default: "
        + "; ".join(f"{name} {','.join(map(str, s.budgets))}" for name, s in SETTINGS.items())
        + ")",
    )
    parser.add_argument(
        "--solver",
        choices=sorted(SOLVERS),
        default="lbfgs",
        help="GradientFlowEncoder's solver; lbfgs goes straight to the flow's "
        "endpoint and is the fastest (default: lbfgs)",
    )
    parser.add_argument(
        "--code-prior",
        type=_non_negative_float,
        default=DEFAULT_CODE_PRIOR,
        metavar="WEIGHT",
        help="weight of GFE's Gaussian prior on its codes, GradientFlowEncoder's "
        f"code_prior (default: {DEFAULT_CODE_PRIOR:g}, its default; 0 is the papers' flow)",
    )
    parser.add_argument(
        "--device",
        type=_device,
        default="auto",
        help="torch device: auto, cpu, cuda, cuda:N, mps (default: auto)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("gfe-sklearn-demo"),
        metavar="DIR",
        help="folder of the figure, written as DIR/<dataset>.png (default: gfe-sklearn-demo)",
    )
    parser.add_argument(
        "--n-test",
        type=_positive_int,
        metavar="N",
        help="held-out images scored (default: "
        + "; ".join(f"{name} {s.n_test}" for name, s in SETTINGS.items())
        + ")",
    )
    parser.add_argument(
        "--seed",
        type=_positive_int_or_zero,
        default=0,
        help="seeds the split, the image order and the models (default: 0)",
    )
    parser.add_argument("--no-plot", action="store_true", help="write no figure")
    parser.add_argument("--version", action="version", version=f"gfe-sklearn {__version__}")
    return parser


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _positive_int_or_zero(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected a whole number in 0..2**32-1, got {text!r}")
    return value


def _matplotlib_missing():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return True
    return False


def main(argv=None):
    """The command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"argument --out: {args.out} is a file; name a folder")
    if args.n_test is not None and args.dataset == "digits" and args.n_test > 1000:
        parser.error(
            f"argument --n-test: digits has 1,797 images; hold out at most 1000, got {args.n_test}"
        )
    plot = not args.no_plot
    if plot and _matplotlib_missing():
        print(
            "matplotlib is not installed, so no figure will be written: install it with "
            "pip install gfe-sklearn[plot] (or pip install matplotlib), or pass --no-plot.",
            file=sys.stderr,
        )
        plot = False
    if plot:  # checked now, not after the training it would come at the end of
        problem = _unwritable(args.out)
        if problem:
            parser.error(
                f"argument --out: cannot write the figure into {args.out} ({problem}); name "
                "a folder you can write to, or pass --no-plot."
            )
    try:
        run(
            args.dataset,
            budgets=args.budgets,
            solver=args.solver,
            code_prior=args.code_prior,
            device=args.device,
            out=args.out,
            n_test=args.n_test,
            random_state=args.seed,
            plot=plot,
            log=lambda line: print(line, flush=True),
        )
    except DatasetUnavailable as exc:
        parser.error(f"argument --dataset: {exc}")
    except KeyboardInterrupt:
        print("Interrupted; no figure was written.", file=sys.stderr)
        return 130  # 128 + SIGINT, as a shell reports it
    return 0


def _unwritable(folder):
    """Why a file cannot be written into ``folder`` (created if missing), or None."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None
