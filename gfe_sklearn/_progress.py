"""Progress bars of the estimators (``verbose >= 2``) and of the experiments' command line.

tqdm when installed (the ``progress`` extra), else a plain line of text.
"""

import sys
import time


def tqdm_class():
    """``tqdm.auto.tqdm``, or None when tqdm is not installed."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


class TextProgress:
    """A stand-in for tqdm: a line on standard error every tenth of the way and at the end.

    Whole lines, not one line rewritten in place: long runs write their progress to log
    files, where a rewritten line piles up into one unreadable line.
    """

    def __init__(self, total, desc, initial=0):
        self.total, self.desc, self.n = total, desc, initial
        self._next = initial
        self._start = time.perf_counter()

    def update(self, n):
        self.n += n
        if self.n >= self._next or self.n >= self.total:
            elapsed = time.perf_counter() - self._start
            print(
                f"  {self.desc}: {self.n}/{self.total} ({elapsed:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
            self._next = self.n + max(1, self.total // 10)

    def close(self):
        pass


class NullProgress:
    """A bar that shows nothing, for quiet runs."""

    def update(self, n):
        pass

    def close(self):
        pass


def image_bar(total, desc, initial=0):
    """A bar over ``total`` images, starting at ``initial`` (a resumed run)."""
    tqdm = tqdm_class()
    if tqdm is None:
        return TextProgress(total, desc, initial)
    return tqdm(
        total=total, initial=initial, desc=desc, unit="img", leave=False, dynamic_ncols=True
    )


def progress_bar(verbose, total, desc):
    """A bar over ``total`` images when ``verbose >= 2``, else None."""
    if verbose < 2:
        return None
    return image_bar(total, desc)
