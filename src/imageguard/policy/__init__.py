"""The policy: who may see what, decided without mod_python.

* :mod:`.decision`: the whole request policy, :func:`~.decision.decide`: from a
  request's facts to its outcome (gate, login, ACL, variant), for every phase;
* :mod:`.acl`: rules and how the one that decides is chosen;
* :mod:`.patterns`: the path patterns rules are written with;
* :mod:`.principals`: who a rule is about, and who is asking (:class:`~.principals.Identity`);
* :mod:`.levels`: full, preview, thumb, deny;
* :mod:`.variants`: which variant of an image a request asks for and gets.

Nothing is imported here: import the modules themselves.
"""
