"""The one base class of every error tlsweep raises for a user's mistake or a machine it cannot use.

The CLI catches ``TLSweepError`` alone: it prints the message (no traceback) and exits with ``exit_code``.
Each subclass keeps its older built-in base (``ValueError``, ``RuntimeError``) so existing ``except`` clauses
still match.
"""

from __future__ import annotations


class TLSweepError(Exception):
    """A problem the user can fix; ``str(err)`` says what and how. ``exit_code``: the CLI's exit status."""

    exit_code: int = 2
