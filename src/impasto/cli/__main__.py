"""``python -m impasto.cli`` (and ``torchrun ... -m impasto.cli``): the ``impasto`` command
(see :mod:`impasto.__main__`)."""

import sys

from impasto.__main__ import main

sys.exit(main())
