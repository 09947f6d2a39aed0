"""What every ``python -m python.X`` entry point does with an error a user can fix: one line, exit status 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

# bad input, missing files or packages, a diverged loss, a folder that cannot be written (read-only, full disk):
# messages written for the user, no traceback needed
USER_ERRORS = (ValueError, OSError, ImportError, FloatingPointError)


def run(main: Callable[[], Any]) -> None:
    try:
        main()
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
