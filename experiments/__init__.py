"""Reproductions of the experiments of the gradient flow encoding papers.

They run from a source checkout, not from the installed package: from its root,
``python -m experiments --help`` lists them, and ``python -m experiments <name> --help``
gives the options of one:

* ``data-efficiency`` - table 1 of [2]: test BCE after 480 to 5760 training images, AE / GFE-amd /
  Mixed, mean ± std over seeds.
* ``converged`` - table 2 of [2]: MNIST, segmented MNIST and Fashion-MNIST, GFE-amd after one
  epoch, AE after up to twelve.
* ``solvers`` - fig. 2 of [1] / fig. 3 of [2]: fixed-grid RK4, the Nesterov flow and AMD,
  approximate against full adjoint, and what each costs.
* ``curves`` - fig. 1 of [1]: validation BCE against images seen and against time, AE vs GFE-amd.
* ``latent`` - figs. 6-7 of [2]: t-SNE maps of the codes after 1% of the data and after
  full training.
* ``reconstructions`` - fig. 3 of [1] / fig. 5 of [2]: test reconstructions after 1% and
  full training.

[1] K. Flouris, A. Volokitin, G. Bredell, E. Konukoglu. Explicit and data-efficient encoding
via gradient flow. NeurIPS 2024 workshop on Machine Learning and the Physical Sciences.
[2] The same authors. Gradient flow encoding with distance optimization adaptive step size.

Each writes JSON, a Markdown report and PNG figures into ``--out``, records every result at
once (a file per unit, merged into ``--out/units.jsonl``) and resumes from them when re-run.
Only the public API of gfe_sklearn is used (``experiments/tests/test_public_api.py``).
"""

from ._cli import EXPERIMENTS, build_parser, main

__all__ = ["EXPERIMENTS", "build_parser", "main"]
