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
