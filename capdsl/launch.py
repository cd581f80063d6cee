"""The `capdsl` console script: Ctrl-C is a clean exit from the first instant.

Until a command installs its own handler (`cli.handle_errors`), importing
click, the CLI and the engines takes a moment in which Python's default
handler would print a KeyboardInterrupt traceback. Nothing has been written
yet then, so exiting at once with 130 is the whole of the cleanup. And an
interrupted run must end with 130 however CPython felt about the signal.
"""

from __future__ import annotations

import os
import signal
import sys


def _interrupted_early(signum, frame) -> None:
    sys.stderr.write("interrupted; no output was written\n")
    sys.stderr.flush()
    os._exit(130)


def main() -> None:
    try:
        signal.signal(signal.SIGINT, _interrupted_early)
    except ValueError:  # pragma: no cover - not the main thread
        pass
    from .cli import main as cli_main

    try:
        cli_main(prog_name="capdsl")
    except SystemExit as exc:
        if exc.code == 130:
            # The interrupt is handled and reported. But if it landed while a native
            # library was running Python code through PyRun_String (pybind11 does),
            # CPython has flagged it "unhandled" and would end us by SIGINT (-2)
            # instead of 130 at shutdown; leave now, with the code we chose.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        raise
