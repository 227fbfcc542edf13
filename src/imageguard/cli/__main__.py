"""``python -m imageguard.cli``: the ``imageguard`` command."""

import sys

from .commandline import main

sys.exit(main())
