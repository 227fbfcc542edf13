"""``make demo``: a small site whose images imageguard protects, with three demo users.

* :mod:`imageguard_devtools.demo.site` builds it (sample images, ACL store, users, Apache config);
  :func:`~imageguard_devtools.demo.site.build_demo` is what the tests use too.
* :mod:`imageguard_devtools.demo.app` is the demo *application*: a mod_python content handler
  (login, logout, gallery) that Apache loads; the venv Python never runs it.
* ``python -m imageguard_devtools.demo`` builds the site and runs Apache in the foreground.

Nothing is imported here, so that Apache importing :mod:`imageguard_devtools.demo.app` does not
pull in the site builder.
"""
