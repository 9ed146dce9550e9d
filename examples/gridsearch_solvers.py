"""A pipeline before a classifier, and a grid search over the encoder's solver
===========================================================================

The README's example.
``MinMaxScaler(clip=True)`` keeps held-out rows inside ``[0, 1]``, where the default
``loss='auto'`` trains with ``'bce'``; ``verbose=1`` prints a line per training epoch.
Each candidate solver is fitted on three folds and the best one refitted on all the data::

    python examples/gridsearch_solvers.py
"""

import argparse

from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from gfe_sklearn import GradientFlowEncoder


def main():
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument(
        "--max-samples", type=int, default=3000, help="training images per fit (default: 3000)"
    )
    parser.add_argument(
        "--n-samples",
        type=int,
        default=None,
        help="use only the first N digits (default: all 1,797)",
    )
    args = parser.parse_args()

    X, y = load_digits(return_X_y=True)
    X, y = X[: args.n_samples], y[: args.n_samples]
    gfe = GradientFlowEncoder(
        n_components=10, hidden_layer_sizes=(32, 64), max_samples=args.max_samples, verbose=1
    )
    pipe = make_pipeline(MinMaxScaler(clip=True), gfe, StandardScaler(), LogisticRegression())
    grid = {"gradientflowencoder__solver": ["lbfgs", "amd"]}
    search = GridSearchCV(pipe, grid, cv=3).fit(X, y)
    print(search.best_params_, search.best_score_)
    for params, score, seconds in zip(
        search.cv_results_["params"],
        search.cv_results_["mean_test_score"],
        search.cv_results_["mean_fit_time"],
    ):
        print(
            f"{params['gradientflowencoder__solver']:>6}: accuracy {score:.3f}, "
            f"{seconds:.1f} s per fit"
        )


if __name__ == "__main__":
    main()
