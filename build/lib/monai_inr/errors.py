"""Bad-input errors: :class:`InputError` and the hook that prints it as one sentence.

This module sits at the bottom of the package's import graph (it imports nothing from ``monai_inr``), so every layer
(:mod:`monai_inr.coords`, :mod:`monai_inr.io`, inferers, transforms, engines, ``preprocessing``) can raise
:class:`InputError` without an import cycle.
"""

from __future__ import annotations

import sys

__all__ = ["InputError", "find_input_error", "install_error_hook"]


class InputError(ValueError):
    """Bad user input (file, image content, scale, memory budget, checkpoint): the message is one sentence."""


def find_input_error(exc: BaseException | None) -> InputError | None:
    """The first :class:`InputError` in an exception's cause/context chain (MONAI's config parser wraps errors)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, InputError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def install_error_hook() -> None:
    """Print bad-input errors as one sentence (``error: ...``, exit status 1) instead of a chained traceback.

    Bundle configs call this first in ``initialize``: ``python -m monai.bundle run`` wraps every failure in its config
    resolver's ``RuntimeError``; the user needs the sentence that names the file and the problem. Other exceptions keep
    the default traceback.
    """
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        err = find_input_error(exc)
        if err is None:
            previous(exc_type, exc, tb)
            return
        print(f"error: {err}", file=sys.stderr)

    if getattr(sys.excepthook, "__name__", "") != "hook":
        sys.excepthook = hook
