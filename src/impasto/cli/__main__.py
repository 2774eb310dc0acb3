"""``python -m impasto.cli`` (and ``torchrun ... -m impasto.cli``): the ``impasto`` command."""

import sys

from impasto.cli import main

sys.exit(main())
