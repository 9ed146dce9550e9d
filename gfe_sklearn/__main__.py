"""``python -m gfe_sklearn``: GFE against an autoencoder on small data (``--help``)."""

import sys

from ._demo import main

if __name__ == "__main__":
    sys.exit(main())
