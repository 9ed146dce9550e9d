"""Progress bars for ``verbose >= 2``: tqdm when installed, else a plain text line."""

import sys


class _TextProgress:
    """A minimal stand-in for ``tqdm`` that rewrites one line on standard error."""

    def __init__(self, total, desc):
        self.total, self.desc, self.n = total, desc, 0

    def update(self, n):
        self.n += n
        print(f"\r{self.desc}: {self.n}/{self.total} images", end="", file=sys.stderr, flush=True)

    def close(self):
        print(file=sys.stderr, flush=True)


def progress_bar(verbose, total, desc):
    """A bar over ``total`` images when ``verbose >= 2``, else None."""
    if verbose < 2:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _TextProgress(total, desc)
    return tqdm(total=total, desc=desc, unit="img", leave=False)
