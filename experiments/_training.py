"""Data, scores and resumable training shared by the experiments."""

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from gfe_sklearn.datasets import load_fashion_mnist, load_mnist, load_segmented_mnist

from ._common import (
    Reporter,
    atomic_write_json,
    dumps,
    sampler_rng,
    stopwatch,
)
from ._models import TRAINED, gfe_params, make_model, model_params, runtime_params
from ._snapshot import DrawStream, EpochStream, load_state, remove_state, save_state

__all__ = ["DrawStream", "EpochStream"]  # the streams live beside their snapshot format

DATASETS = {
    # name: (title in reports, loader)
    "mnist": ("MNIST", load_mnist),
    "segmented-mnist": ("Segmented MNIST", load_segmented_mnist),
    "fashion-mnist": ("Fashion-MNIST", load_fashion_mnist),
    # scikit-learn's bundled 8x8 digits: no download, for smoke runs and CI.
    "digits": ("digits (8x8)", None),
    "segmented-digits": ("segmented digits (8x8)", None),
}

# Seeds of the fixed subsets, independent of --seeds, so every seed sees the same data.
SUBSET_SEED = 0
HOLDOUT_SEED = 1


@dataclass
class Context:
    """What a running experiment needs besides its options."""

    args: object
    store: object
    reporter: Reporter
    guard: object
    snapshot_dir: Path
    snapshot_seconds: float = 60.0


# -- data ---------------------------------------------------------------------------------


def _digits(segmented):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(
        X, digits.target, test_size=0.25, random_state=SUBSET_SEED, stratify=digits.target
    )
    if segmented:
        X_train, y_train = X_train[y_train < 5], y_train[y_train < 5]
        X_test, y_test = X_test[y_test >= 5], y_test[y_test >= 5]
    return X_train, y_train, X_test, y_test, (8, 8), [str(d) for d in range(10)]


def load_dataset(name, *, data_home=None, n_train=None):
    """Train and test images of ``name`` in [0, 1], flattened, with their labels.

    ``n_train`` keeps a fixed random subset of the training images (the same for every seed).
    """
    title, loader = DATASETS[name]
    if loader is None:
        X_train, y_train, X_test, y_test, shape, names = _digits(name.startswith("segmented"))
    else:
        train = loader(subset="train", data_home=data_home)
        test = loader(subset="test", data_home=data_home)
        X_train, y_train, X_test, y_test = train.data, train.target, test.data, test.target
        shape, names = tuple(train.image_shape), list(train.target_names)
    if n_train is not None and n_train < len(X_train):
        keep = np.sort(np.random.default_rng(SUBSET_SEED).permutation(len(X_train))[:n_train])
        X_train, y_train = X_train[keep], y_train[keep]
    return Bunch(
        name=name,
        title=title,
        X_train=X_train,
        y_train=y_train,
        X_test=X_test,
        y_test=y_test,
        image_shape=shape,
        target_names=names,
    )


def subset(X, y, n, seed=SUBSET_SEED):
    """A fixed random subset of ``n`` rows in their original order (all rows for None)."""
    if n is None or n >= len(X):
        return X, y
    keep = np.sort(np.random.default_rng(seed).permutation(len(X))[:n])
    return X[keep], y[keep]


def holdout(X, y, n_val):
    """Split off ``n_val`` fixed random rows: ``(X_rest, y_rest, X_val, y_val)``."""
    if not 0 < n_val < len(X):
        raise ValueError(f"Cannot hold out {n_val} of {len(X)} training images; lower it.")
    order = np.random.default_rng(HOLDOUT_SEED).permutation(len(X))
    val, rest = np.sort(order[:n_val]), np.sort(order[n_val:])
    return X[rest], y[rest], X[val], y[val]


def one_per_class(X, y, n):
    """``n`` images cycling through the classes in label order: first of each class, ..."""
    classes = np.unique(y)
    queues = {c: list(np.flatnonzero(y == c)) for c in classes}
    picked = []
    while len(picked) < min(n, len(X)):
        for c in classes:
            if queues[c] and len(picked) < n:
                picked.append(queues[c].pop(0))
    picked = np.asarray(picked)
    return X[picked], y[picked]


# -- scores -----------------------------------------------------------------------------------


def bce(model, X):
    """Mean per-image cross-entropy of ``X`` (``-model.score(X)``) and the seconds it took."""
    with stopwatch() as clock:
        value = -model.score(X)
    return float(value), clock()


def scored_fields(model, X, split, state, device=None):
    """A checkpoint record's score of ``X`` (``split``: 'val' or 'test') and its timings.

    Returns the fields, in the order the records keep them, and the BCE. ``device`` is the
    trained model's when ``model`` is another encoder of it (Mixed).
    """
    value, seconds = bce(model, X)
    fields = {
        f"{split}_bce": value,
        f"n_{split}": len(X),
        "train_seconds": state["seconds"],
        "eval_seconds": seconds,
        "device": device or model.device_,
    }
    return fields, value


def fingerprint(value):
    """A short stable hash of a JSON-able value (cache keys of trained models)."""
    return hashlib.sha1(dumps(value).encode()).hexdigest()[:10]


# -- resumable training ---------------------------------------------------------------------------


class Snapshots:
    """Files of one training run: ``resume.json`` (the latest state) and ``at-<images>.json``,
    each with its model files (``_snapshot``: nothing in them is unpickled).

    ``params`` are set on every model loaded (``runtime_params``): this run's, not those of
    the run that saved it.
    """

    def __init__(self, directory, name, params=None):
        self.folder = Path(directory) / name
        self.params = params or {}

    def resume_path(self):
        return self.folder / "resume.json"

    def at_path(self, images):
        return self.folder / f"at-{int(images)}.json"

    def load_state(self):
        return load_state(self.resume_path(), self.params)

    def save_state(self, state):
        save_state(self.resume_path(), state)

    def save_at(self, images, state):
        save_state(self.at_path(images), state)

    def load_at(self, images):
        return load_state(self.at_path(images), self.params)

    def discard(self, keep_models=False):
        """Delete the resume state (and the models at checkpoints unless ``keep_models``)."""
        remove_state(self.resume_path())
        if not keep_models and self.folder.exists():
            for path in self.folder.glob("at-*.json"):
                remove_state(path)
            try:
                self.folder.rmdir()
            except OSError:
                pass


def train(
    ctx,
    *,
    name,
    make,
    X,
    stream,
    checkpoints,
    on_checkpoint,
    keep_models=False,
    snapshot_dir=None,
    desc=None,
):
    """Train a model on images of ``X`` taken from ``stream``, stopping at each checkpoint.

    The model sees exactly ``checkpoints[i]`` images (counted with repetition) when
    ``on_checkpoint(model, state)`` is called; ``state`` holds ``seen``, ``seconds`` (time
    spent in ``partial_fit`` only) and ``extra`` (a dict the callback may use; it is saved
    with the model). The callback returns True to stop training early.

    The training state is saved every ``ctx.snapshot_seconds`` and at every checkpoint, so
    a re-run continues where an interrupted one stopped; with ``keep_models`` the model at
    each checkpoint is also kept as ``at-<images>.json``. Returns ``(model, state)``.
    """
    snaps = snapshots(ctx, name, snapshot_dir)
    state = snaps.load_state()
    if state is None:
        state = {
            "model": make(),
            "stream": stream,
            "seen": 0,
            "seconds": 0.0,
            "extra": {},
            "stopped": False,
            "last_checkpoint": 0,
        }
    else:
        ctx.reporter.log(f"  resuming {desc or name} from {state['seen']} images")
    model = state["model"]
    batch = int(model.batch_size)
    chunk = batch * max(1, 250 // batch)
    checkpoints = sorted(int(c) for c in checkpoints)
    bar = ctx.reporter.bar(
        checkpoints[-1] if checkpoints else 0, desc or name, initial=state["seen"]
    )
    try:
        last_save = time.perf_counter()
        for checkpoint in checkpoints:
            if state["stopped"]:
                break
            if checkpoint <= state["last_checkpoint"]:
                continue
            while state["seen"] < checkpoint:
                images = X[state["stream"].take(min(chunk, checkpoint - state["seen"]))]
                with stopwatch() as clock:
                    model.partial_fit(images)
                ctx.guard.check()
                state["seconds"] += clock()
                state["seen"] += len(images)
                bar.update(len(images))
                if time.perf_counter() - last_save > ctx.snapshot_seconds:
                    snaps.save_state(state)
                    last_save = time.perf_counter()
            if model.n_samples_seen_ != state["seen"]:
                raise RuntimeError(
                    f"{name}: the model has seen {model.n_samples_seen_} images, "
                    f"the loop fed it {state['seen']}."
                )
            state["stopped"] = bool(on_checkpoint(model, state))
            ctx.guard.check()
            state["last_checkpoint"] = checkpoint
            if keep_models:
                snaps.save_at(
                    checkpoint, {"model": model, "seen": state["seen"], "seconds": state["seconds"]}
                )
            snaps.save_state(state)
            last_save = time.perf_counter()
    finally:
        bar.close()
    return model, state


def snapshots(ctx, name, snapshot_dir=None):
    """The snapshots of the training run ``name``, whose models load with this run's settings."""
    params = runtime_params(ctx.args) if ctx.args is not None else None
    return Snapshots(snapshot_dir or ctx.snapshot_dir, name, params)


def train_stages(ctx, data, seed, kind, stages, cache_dir):
    """Models of ``kind`` after each number of images in ``stages`` (draws with replacement).

    Returns ``{stage: {"model": ..., "seen": ..., "seconds": ...}}`` (training seconds).

    Trained models are cached in ``cache_dir`` under a key of the data and model settings, so
    experiments that need the same models (``latent``, ``reconstructions``) share them when
    given the same ``--model-cache``.
    """
    args = ctx.args
    key = {
        "dataset": data.name,
        "n_train": args.n_train,
        "seed": int(seed),
        "kind": kind,
        "params": model_params(args, seed) | gfe_params(args) | {"device": None},
        "stream": "draws",
    }
    name = f"{kind}-{data.name}-seed{seed}-{fingerprint(key)}"
    snaps = snapshots(ctx, name, cache_dir)
    found = {stage: snaps.load_at(stage) for stage in stages}
    if all(entry is not None for entry in found.values()):
        return found
    snaps.folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(snaps.folder / "key.json", key)

    def record(model, state):
        ctx.reporter.log(
            f"  {kind} {data.name} seed {seed}: {state['seen']} images in {state['seconds']:.1f} s"
        )
        return False

    train(
        ctx,
        name=name,
        make=lambda: make_model(kind, args, seed),
        X=data.X_train,
        stream=draw_stream(data, seed),
        checkpoints=stages,
        on_checkpoint=record,
        keep_models=True,
        snapshot_dir=cache_dir,
        desc=f"{kind} seed {seed} {data.name}",
    )
    snaps.discard(keep_models=True)
    return {stage: snaps.load_at(stage) for stage in stages}


def draw_stream(data, seed):
    """Draws with replacement from ``data``'s training images, the same for every model."""
    return DrawStream(len(data.X_train), sampler_rng(seed, 0))


# -- models after a small and a full training budget (latent, reconstructions) ----------------

STAGE_DEFAULTS = {
    "small_images": 600,
    "gfe_images": 60000,
    "ae_images": 720000,
    "model_cache": None,
}
STAGE_SMOKE = {"small_images": 20, "gfe_images": 40, "ae_images": 60}
STAGES = ("small", "full")


def add_stage_arguments(parser):
    group = parser.add_argument_group("training stages (draws with replacement, batch 5)")
    group.add_argument(
        "--small-images",
        type=int,
        metavar="N",
        help="images of the small stage, 1%% of MNIST (default: 600; --smoke: 20)",
    )
    group.add_argument(
        "--gfe-images",
        type=int,
        metavar="N",
        help="images of GFE-amd's full training, one epoch (default: 60000; --smoke: 40)",
    )
    group.add_argument(
        "--ae-images",
        type=int,
        metavar="N",
        help="images of the AE's full training, twelve epochs (default: 720000; --smoke: 60)",
    )
    group.add_argument(
        "--model-cache",
        type=Path,
        metavar="DIR",
        help="folder of the trained models (default: OUT/models); give "
        "`latent` and `reconstructions` the same one to train once",
    )


def check_stage_options(args):
    for name in ("small_images", "gfe_images", "ae_images"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1.")
    for name in ("gfe_images", "ae_images"):
        if getattr(args, name) <= args.small_images:
            raise ValueError(
                f"--{name.replace('_', '-')} must exceed --small-images ({args.small_images})."
            )


def stage_images(args, kind):
    return {
        "small": args.small_images,
        "full": getattr(args, f"{kind}_images"),  # --gfe-images, --ae-images
    }


def stage_models(ctx, data, seed, kind):
    """``{stage: {"model", "seen", "seconds"}}`` for the stages small and full."""
    images = stage_images(ctx.args, kind)
    cache = ctx.args.model_cache or Path(ctx.args.out) / "models"
    trained = train_stages(ctx, data, seed, kind, sorted(images.values()), cache)
    return {stage: trained[n] for stage, n in images.items()}


def pending_stage_models(ctx, data, dataset):
    """Yield ``(key, stage, entry)`` for every (seed, model, stage) not yet in the store.

    ``key`` identifies the unit without its stage; ``entry`` is ``stage_models``'s. Models
    are trained (or loaded from the cache) only for seeds and kinds with a stage missing.
    """
    for seed in ctx.args.seeds:
        for kind in TRAINED:
            key = {"dataset": dataset, "seed": seed, "model": kind}
            if all(ctx.store.has(**key, stage=stage) for stage in STAGES):
                continue
            for stage, entry in stage_models(ctx, data, seed, kind).items():
                if not ctx.store.has(**key, stage=stage):
                    yield key, stage, entry
