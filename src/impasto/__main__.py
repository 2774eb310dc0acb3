"""``python -m impasto`` and the ``impasto`` script: the command line's entry.

Ctrl-C is handled from the first line: :func:`main` installs a handler that prints one line and
exits with status 130 before anything heavy is imported (the command line's own modules, then
torch when a command runs, take a second or more). :func:`impasto.cli.main` raises
KeyboardInterrupt instead while a command runs, so that the command's clean-ups (temporary
files) happen, and answers it with the same line. Only the interpreter's own start, before this
module runs (some tens of milliseconds), is out of reach.
"""

import os
import signal
import sys
import threading

INTERRUPTED = b"impasto: interrupted\n"


def _quit(signum, frame):  # noqa: ARG001  (a signal handler's signature)
    """Ctrl-C outside a command (imports, start, shutdown): one line, exit status 130."""
    try:
        os.write(2, INTERRUPTED)
    finally:
        os._exit(130)


_quit.impasto_entry = True  # impasto.cli.main swaps it for a KeyboardInterrupt while it runs


def install_quit_handler() -> None:
    """Make Ctrl-C print one line and exit 130 at once, where Python's default handler (a
    KeyboardInterrupt) is in place: not where SIGINT is ignored (a background job), nor outside
    the main thread."""
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
        signal.signal(signal.SIGINT, _quit)


def main() -> int:
    """The ``impasto`` command: the quit handler first, then :func:`impasto.cli.main`."""
    install_quit_handler()
    from impasto.cli import main as cli_main

    status = cli_main()
    install_quit_handler()  # the interpreter's shutdown (atexit, finalizers) too
    return status


if __name__ == "__main__":
    sys.exit(main())
