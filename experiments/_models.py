"""The kinds of model in the tables: one table that every experiment reads.

A kind has a title in the reports, a builder and the command-line options it takes. The AE
and GFE-amd are trained from scratch; Mixed is built from a trained AE (the flow through its
decoder), so it ``encodes`` with that kind and is scored, never trained.
"""

from collections.abc import Callable
from dataclasses import dataclass

from gfe_sklearn import AutoEncoderBaseline, GradientFlowEncoder

# The papers' GFE-amd with the training flows our tables were made with, whatever the
# estimator's defaults: experiments reproduce the papers, the defaults serve everyday use.
# The papers' flow has no prior on the codes.
PAPERS_GFE = {"solver": "amd", "fit_stop_tol": 1e-3, "code_prior": 0.0}

# The command-line options that set the flows of every GFE (Mixed's included).
FLOW_OPTIONS = ("solver", "tau", "stop_rule", "fit_stop_tol", "s_max", "s_min")


def model_params(args, seed):
    """Estimator parameters shared by every kind of a run."""
    return dict(
        n_components=args.n_components,
        hidden_layer_sizes=tuple(args.hidden),
        optimizer=args.optimizer,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        device=args.device,
        # The data's dtype, as every table was made with (float32 for the image loaders):
        # a later default cannot refuse a run's resumption or move its numbers.
        compute_dtype=None,
        # The papers' cross-entropy, which every table was made with (the package's default
        # 'auto' chooses it on these images): pinned for the same reason.
        loss="bce",
        random_state=int(seed),
    )


def runtime_params(args):
    """Parameters set by options that change no result; a resumed model takes them too.

    ``--threads`` sets torch's threads for the process and for every fit and score: the
    estimators' own default, one thread, would otherwise override it inside each call.
    """
    return {"n_threads": args.threads}


def gfe_params(args):
    """Flow settings of every GFE of a run given on the command line."""
    return {
        name: getattr(args, name) for name in FLOW_OPTIONS if getattr(args, name, None) is not None
    }


def gfe_settings(args):
    """The GFE settings of a run: the papers' (``PAPERS_GFE``) unless the command line says."""
    return {**PAPERS_GFE, **gfe_params(args)}


def _no_options(args):
    return {}


@dataclass(frozen=True)
class Kind:
    """A row of ``KINDS``.

    ``build(**params)`` makes a new model; for a kind that ``encodes`` with another,
    ``build(trained, **params)`` makes it from a trained model of that kind. ``options(args)``
    gives the estimator parameters that the command line sets beyond ``model_params``.
    ``names_solver``: the title names the solver when ``--solver`` is not the papers' AMD.
    """

    title: str
    build: Callable
    options: Callable
    encodes: str | None = None
    names_solver: bool = False

    def title_in(self, args):
        solver = getattr(args, "solver", None)
        if self.names_solver and solver not in (None, "amd"):
            return f"GFE ({solver})"
        return self.title


# In the order of the papers' tables.
KINDS = {
    "ae": Kind("AE", AutoEncoderBaseline, _no_options),
    "gfe": Kind("GFE-amd", GradientFlowEncoder, gfe_settings, names_solver=True),
    "mixed": Kind("Mixed", GradientFlowEncoder.from_autoencoder, gfe_settings, encodes="ae"),
}

# The kinds trained from scratch, GFE first: the order in which units run and settings are
# recorded, which resumed runs and their files keep.
TRAINED = tuple(name for name, kind in reversed(KINDS.items()) if kind.encodes is None)

# The estimator classes of the trained kinds by name: what snapshots and protocols hold.
ESTIMATORS = {KINDS[name].build.__name__: KINDS[name].build for name in TRAINED}


def titles(args):
    """Each kind's title in this run's reports."""
    return {name: kind.title_in(args) for name, kind in KINDS.items()}


def make_model(kind, args, seed, **params):
    """A new model of the trained kind ``kind`` for ``seed``; ``params`` override the run's.

    Every kind draws the same initial decoder for the same seed.
    """
    spec = KINDS[kind]
    if spec.encodes is not None:
        raise ValueError(f"{kind!r} models are built from trained {spec.encodes!r} models.")
    settings = {**spec.options(args), **model_params(args, seed), **runtime_params(args)}
    return spec.build(**{**settings, **params})


def scored_with(kind):
    """The kinds whose test scores a trained model of ``kind`` gives: itself and its encoders."""
    return [name for name, spec in KINDS.items() if kind in (name, spec.encodes)]


def encoder_of(kind, trained, args):
    """The model that encodes for ``kind``, given the trained model it is scored with."""
    spec = KINDS[kind]
    if spec.encodes is None:
        return trained
    return spec.build(trained, **spec.options(args), **runtime_params(args))
