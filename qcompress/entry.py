"""The ``qcompress`` command's entry point: signals handled from the first instant.

Ctrl-C and SIGTERM (what ``timeout`` and job schedulers send) stop the command the same way:
the work in progress is abandoned, every finished record is already on disk, and one line says
so. The command line itself (``qcompress.cli``) imports torch and friends, which takes seconds;
an interrupt during those imports gets the same one line, not a traceback.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

INTERRUPTED = 130  # 128 + SIGINT
TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that cleanup runs as for Ctrl-C."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def stopped(error: KeyboardInterrupt) -> int:
    """Say how the command stopped; the exit code to stop with."""
    if isinstance(error, Terminated):
        print("terminated (SIGTERM); finished records are kept", file=sys.stderr)
        return TERMINATED
    print("interrupted; finished records are kept", file=sys.stderr)
    return INTERRUPTED


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        from qcompress.cli import main as cli_main
    except KeyboardInterrupt as error:
        sys.exit(stopped(error))
    cli_main(argv)
