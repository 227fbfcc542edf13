"""The mod_python glue: what runs inside Apache around the pure core, and what writes
Apache's configuration.

* :mod:`.adapters`: the handlers' implementation, the only module importing mod_python:
  it gathers a request's facts, asks :func:`imageguard.policy.decision.decide`, applies
  the outcome (the modules Apache names, :mod:`imageguard.handlers` and
  :mod:`imageguard.gatekeeper`, stay at the package's top level and import it lazily);
* :mod:`.runtime`: what the handlers keep per configuration (gate, store reader, login
  source, caches);
* :mod:`.settings`: the ``PythonOption`` values parsed once per configuration;
* :mod:`.options`: the one table of options behind the parsing, ``imageguard
  apache-conf``'s flags and block, ``imageguard options`` and the docs' tables;
* :mod:`.names`: the names Apache's configuration and the handlers share;
* :mod:`.apacheconf`: the configuration ``imageguard apache-conf`` writes.

Nothing is imported here, on purpose: Apache's first request imports
:mod:`.adapters` through this package, and should pay for nothing else.
"""
