"""Tooling around imageguard that is not imageguard: what its tests, benchmarks, soak and
demo need, kept out of the package Apache loads.

* :mod:`imageguard_devtools.localserver` runs a private Apache 2.4 + mod_python on
  127.0.0.1 (the integration tests, ``make demo``, ``make bench``, ``make soak``);
* :mod:`imageguard_devtools.localpg` runs a private PostgreSQL server on 127.0.0.1 from a
  data directory under /tmp (the tests and benchmarks of the PostgreSQL store);
* :mod:`imageguard_devtools.demo` is ``make demo`` (``python -m imageguard_devtools.demo``);
* :mod:`imageguard_devtools.browser` drives Debian's chromium headless through Selenium
  and chromedriver (the demo's browser test, ``make screenshots``);
* :mod:`imageguard_devtools.docfigures` checks the benchmark figures the docs cite
  against ``bench/results/`` (``python -m imageguard_devtools.docfigures PAGE...``).

This package imports :mod:`imageguard`; :mod:`imageguard` imports nothing from here (a
unit test checks it), so nothing in this package is ever on a request's path.
"""
