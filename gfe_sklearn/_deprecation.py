"""Renamed arguments: the old name keeps working, with a ``FutureWarning``, until removed."""

import functools
import warnings


def renamed_argument(old, new, *, since, removed_in):
    """Let ``method`` be called with ``old=`` for ``new=`` until ``removed_in``, warning.

    The wrapper's signature is ``method``'s (``inspect.signature`` follows ``__wrapped__``),
    so scikit-learn's metadata routing, which reads it, never sees ``old``.
    """

    def decorate(method):
        @functools.wraps(method)
        def wrapper(self, *args, **kwargs):
            if old in kwargs:
                call = f"{type(self).__name__}.{method.__name__}"
                if args or new in kwargs:
                    raise TypeError(
                        f"{call}() got both {new} and its former name {old}; pass {new} only."
                    )
                warnings.warn(
                    f"{call}({old}=...) is deprecated: the argument is named {new} since "
                    f"{since}, and {old}= stops working in {removed_in}. Pass {new}=... (or "
                    "the array positionally).",
                    FutureWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return method(self, *args, **kwargs)

        return wrapper

    return decorate
