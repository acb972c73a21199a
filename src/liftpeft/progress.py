"""Progress bars (tqdm) that stay quiet when output is not a terminal or when asked to."""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm.auto import tqdm

_QUIET = False


def set_quiet(quiet: bool) -> None:
    """Silence (or re-enable) every progress bar of this process."""
    global _QUIET
    _QUIET = bool(quiet)


def enabled() -> bool:
    return not _QUIET and os.environ.get("LIFTPEFT_QUIET", "") in ("", "0") and sys.stderr.isatty()


def progress_line(message: str) -> None:
    """One line of progress on stderr for long work, also when stderr is not a terminal (a log file),
    where the bars stay off; silent when quiet. Printed above a running bar on a terminal."""
    if _QUIET or os.environ.get("LIFTPEFT_QUIET", "") not in ("", "0"):
        return
    if sys.stderr.isatty():
        tqdm.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr, flush=True)


def progress_bar(iterable: Any = None, *, total: int | None = None, desc: str = "", **kwargs: Any) -> tqdm:
    """A tqdm bar with rate and ETA on stderr; disabled when quiet or not on a terminal."""
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("leave", False)
    return tqdm(iterable, total=total, desc=desc, disable=not enabled(), file=sys.stderr, **kwargs)
