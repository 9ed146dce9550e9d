"""Per-sample convergence of the encoding flow, through a fitted estimator
=======================================================================

A ``GradientFlowEncoder`` is fitted on scikit-learn's digits (with ``solver='lbfgs'``, the
fastest to train). The same trained decoder then encodes held-out digits with three flows:
the gradient flow solved by AMD (the default solver), Nesterov's second-order flow solved by
AMD, and the gradient flow on RK4's fixed log-spaced grid. ``set_params`` on a fitted encoder
changes how it encodes, not its decoder. ``flow_diagnostics(X, record_history=True)``
returns each sample's loss at every accepted step; the figure shows each sample's curve
(thin) and the mean (thick) against flow time, and the script prints what each flow cost::

    python examples/plot_flow_convergence.py --out flow_convergence.png
"""

import argparse
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from gfe_sklearn import GradientFlowEncoder
from gfe_sklearn.flow import StiffnessWarning
from gfe_sklearn.plotting import plot_flow_history, subplots

FLOWS = {
    "gradient flow, AMD": dict(solver="amd", flow="gradient"),
    "Nesterov flow, AMD": dict(solver="amd", flow="nesterov"),
    "gradient flow, RK4 (100 steps)": dict(solver="rk4", flow="gradient", n_steps=100),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("flow_convergence.png"))
    parser.add_argument(
        "--max-samples", type=int, default=5000, help="training images (default: 5000)"
    )
    parser.add_argument(
        "--n-curves", type=int, default=64, help="held-out digits encoded (default: 64)"
    )
    args = parser.parse_args()

    X = (load_digits().data / 16.0).astype(np.float32)
    X_train, X_test = X[: -args.n_curves], X[-args.n_curves :]
    gfe = GradientFlowEncoder(
        n_components=10,
        hidden_layer_sizes=(32, 64),
        solver="lbfgs",
        max_samples=args.max_samples,
        random_state=0,
        device="cpu",
    )
    gfe.fit(X_train)

    figure, axes = subplots(1, len(FLOWS), panel_size=(4.2, 3.4), sharey=True)
    for ax, (title, settings) in zip(axes[0], FLOWS.items()):
        gfe.set_params(**settings)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", StiffnessWarning)
            result = gfe.flow_diagnostics(X_test, record_history=True)
        plot_flow_history(result, ax=ax, per_sample=True, title=title, label="mean")
        stiff = [w for w in caught if issubclass(w.category, StiffnessWarning)]
        print(
            f"{title:<32} mean loss {result.loss.mean():.4f}, decoder evaluations per "
            f"sample {result.n_evals.float().mean():.0f} (max {result.n_evals.max()}), "
            f"flow time reached {result.t.median():.3g} (median)"
            + (f"; {stiff[0].message}" if stiff else "")
        )
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
