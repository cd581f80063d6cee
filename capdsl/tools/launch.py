"""The `capdsl` console script: Ctrl-C is a clean exit from the first instant.

Until a command installs its own handler (`cli.handle_errors`), importing
click, the CLI and the engines takes a moment in which Python's default
handler would print a KeyboardInterrupt traceback. Nothing has been written
yet then, so exiting at once with 130 is the whole of the cleanup. And an
interrupted run must end with 130 however CPython felt about the signal.
"""

from __future__ import annotations

import atexit
import gc
import os
import signal
import sys

# The exit code of a command that finished (SystemExit with an int), for `_fast_exit`.
_finished: list[int] = []


def _interrupted_early(signum, frame) -> None:
    sys.stderr.write("interrupted; no output was written\n")
    sys.stderr.flush()
    os._exit(130)


def _fast_exit() -> None:
    """Leave without tearing the interpreter down, once a command has finished.

    Registered before anything else, so it runs after every other atexit handler (logging,
    temporary files, Spark's gateway). What it skips is the module teardown and the final garbage
    collection, which with DuckDB loaded write nothing and only cost time. A panel still open whose
    DuckDB wrote files (spilled data) or still runs checks is closed first, so DuckDB removes its
    files; closing any other would only free memory. Outputs were already written atomically. After
    an uncaught exception, or if flushing stdout fails (a closed pipe), Python exits the normal way."""
    if not _finished:
        return
    panel = sys.modules.get("capdsl.data.panel")
    try:
        if panel is not None:
            panel.close_all(only_if_needed=True)
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # the reader left before the last bytes: as cli.pipe_closed
        os._exit(141)
    except Exception:  # noqa: BLE001 - the normal exit reports it
        return
    os._exit(_finished[0])


def main() -> None:
    try:
        signal.signal(signal.SIGINT, _interrupted_early)
    except ValueError:  # pragma: no cover - not the main thread
        pass
    atexit.register(_fast_exit)
    # A command is a short run whose start is imports: long-lived objects that the cycle collector
    # would only scan again and again, while its cyclic garbage is a few thousand objects whatever
    # the panel's size. Reference counting still frees the rest; the long-running language server
    # turns the collector back on.
    gc.disable()
    from capdsl.tools.cli import main as cli_main

    try:
        cli_main(prog_name="capdsl")
    except SystemExit as exc:
        code = 0 if exc.code is None else exc.code
        if isinstance(code, int) and not isinstance(code, bool):
            _finished.append(code)
        if exc.code == 130:
            # The interrupt is handled and reported. But if it landed while a native
            # library was running Python code through PyRun_String (pybind11 does),
            # CPython has flagged it "unhandled" and would end us by SIGINT (-2)
            # instead of 130 at shutdown; leave now, with the code we chose.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        raise
