"""Small helpers that several concerns use, importing none of them.

* :mod:`.boundedcache`: the one bounded cache every cache kept between requests is;
* :mod:`.safetext`: text from outside made safe to print on one line;
* :mod:`.durations`: durations as people write them (``30m``, ``7d``).

They live here rather than beside one user because each has users in several
subpackages: the bounded cache in files, identity, store and apache, the safe text in
apache and cli, the durations in apache (the options) and cli. Keeping them here keeps
the subpackages from importing each other for a helper, and the Apache side from
importing the command line's package. Nothing is imported here.
"""
