"""The ``imageguard`` command: manage who may see which image, and write Apache's config.

* :mod:`.commandline`: the parser (one small function per group of commands) and
  :func:`main`, the entry point (``imageguard``, ``python -m imageguard.cli``);
* :mod:`.commands`: what the store, ticket, share and configuration commands do;
* :mod:`.imagecommands`: ``verify`` and ``renditions``, which work on the image files;
* :mod:`.progress`: the progress bar those two draw on a terminal.

Nothing here is imported by what runs inside Apache.
"""

from .commandline import main

__all__ = ["main"]
