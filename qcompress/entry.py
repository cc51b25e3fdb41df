"""The ``qcompress`` command's entry point: signals handled from the first instant.

Ctrl-C and SIGTERM (what ``timeout`` and job schedulers send) stop the command the same way:
the work in progress is abandoned, every finished record is already on disk, and one line says
so. The command line itself (``qcompress.cli``) imports torch and friends, which takes seconds;
an interrupt during those imports gets the same one line, not a traceback.

An interrupt is never raised inside an ``import``: a module stopped half way is left broken in
``sys.modules`` (numpy then says "cannot load module more than once per process", transformers
"could not import module ..."), and libraries that guard optional imports turn the interrupt
into errors of their own. While an import is running, the interrupt waits (polled every 50 ms)
and is raised as soon as the import has finished.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

INTERRUPTED = 130  # 128 + SIGINT
TERMINATED = 143  # 128 + SIGTERM


RETRY_S = 0.05
# The interrupt that arrived during an import and waits to be raised.
_pending: list[type[KeyboardInterrupt]] = []


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that cleanup runs as for Ctrl-C."""


def _inside_import(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _raise_when_safe(error: type[KeyboardInterrupt], frame: FrameType | None) -> None:
    if _inside_import(frame):
        _pending[:] = [error]
        signal.setitimer(signal.ITIMER_REAL, RETRY_S)
        return
    _pending.clear()
    raise error()


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    _raise_when_safe(KeyboardInterrupt, frame)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _raise_when_safe(Terminated, frame)


def _on_retry(signum: int, frame: FrameType | None) -> None:
    if _pending:
        _raise_when_safe(_pending[0], frame)


def stopped(error: KeyboardInterrupt) -> int:
    """Say how the command stopped; the exit code to stop with."""
    if isinstance(error, Terminated):
        print("terminated (SIGTERM); finished records are kept", file=sys.stderr)
        return TERMINATED
    print("interrupted; finished records are kept", file=sys.stderr)
    return INTERRUPTED


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGALRM, _on_retry)  # first: the others may arm its timer
    signal.signal(signal.SIGINT, _on_sigint)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        try:
            from qcompress.cli import main as cli_main
        except KeyboardInterrupt as error:
            sys.exit(stopped(error))
        cli_main(argv)
    finally:
        # An interrupt still waiting when the command ends (it came during its last import):
        # its timer must not outlive the handlers (at exit, SIGALRM would kill the process),
        # and the user who asked to stop is told the command stopped.
        signal.setitimer(signal.ITIMER_REAL, 0)
        if _pending:
            sys.exit(stopped(_pending[0]()))
