"""Exceptions shared by every layer of impasto.

This module is a leaf: it imports nothing of ours, so every layer (``io`` included) may raise
these. The command line turns an :class:`InputError` into one line on stderr and exit status 2.
"""


class ImpastoError(Exception):
    """Base class of impasto's own exceptions."""


class InputError(ImpastoError, ValueError):
    """A user's input or option is wrong: a bad file, a bad value, a missing weight file.

    The message is one line that names the problem (and the file, where there is one).
    """


class WeightsNotFoundError(InputError, FileNotFoundError):
    """A pretrained weight file is missing; the message says how to get it."""


def escape_line(text: object) -> str:
    """``text`` as a single line: control characters (newlines in file names too) escaped."""
    s = str(text)
    if any(c in s for c in "\n\r\t\x0b\x0c"):
        s = s.encode("unicode_escape", "backslashreplace").decode("ascii")
    return s


def input_error(label: object, problem: str) -> InputError:
    """An :class:`InputError` reading ``"<label>: <problem>"`` on one line."""
    return InputError(escape_line(f"{label}: {problem}"))
