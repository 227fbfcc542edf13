# imageguard: `make test` and `make demo` set up everything they need themselves.
#   the Debian packages of APT_PACKAGES when missing (make bench: BENCH_PACKAGES too),
#   through tools/hostpkgs.py, which disables again whatever module, conf or site their
#   maintainer scripts enable, stops a system apache2 they start and a system PostgreSQL
#   cluster they start (installing postgresql creates and starts a cluster "main"): the
#   host's Apache and PostgreSQL are left as they were found (make test checks that after
#   its tests; the tests' own PostgreSQL, imageguard_devtools.localpg, runs from /tmp);
#   a venv made from /usr/bin/python3 (the interpreter mod_python embeds),
#   Pillow, the test tools and imageguard itself installed into it.

SYSTEM_PYTHON := /usr/bin/python3
VENV          := .venv
VPY           := $(VENV)/bin/python
HOSTPKGS      := $(SYSTEM_PYTHON) tools/hostpkgs.py
# wrk is the load generator of the benchmark's smoke run in make test; postgresql gives
# the server binaries of the tests' private PostgreSQL, libpq5 the library psycopg loads;
# chromium and chromium-driver the browser the demo's browser test drives (Selenium is
# given both paths, so it never downloads a browser or a driver); curl runs the cookbook's
# try.sh scripts, as a reader would; poppler-utils reads the talk's committed PDF back
# (test_talk: each page shows its slide).
APT_PACKAGES  := apache2 libapache2-mod-python libapache2-mod-auth-tkt python3-venv wrk \
                 postgresql libpq5 chromium chromium-driver curl poppler-utils
# Only for make bench: mod_wsgi (which the system Apache cannot load beside mod_python)
# and mod_xsendfile, for the benchmark's X-Sendfile variant.
BENCH_PACKAGES := libapache2-mod-wsgi-py3 libapache2-mod-xsendfile
HOST_SNAPSHOT := .host-apache.json
STAMP         := $(VENV)/.installed
PORT          ?= 8080

.PHONY: all deps apt test unit integration lint demo clean apache-conf options-table bench fuzz soak slides screenshots

all: test

apt:
	$(HOSTPKGS) install $(APT_PACKAGES)

$(STAMP): pyproject.toml setup.py | apt
	@test -x $(VPY) || $(SYSTEM_PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

deps: apt $(STAMP)

lint: deps
	$(VENV)/bin/ruff check src tests bench tools fuzz soak
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy tools soak fuzz

unit: deps
	$(VPY) -m pytest -q tests/unit

integration: deps
	$(VPY) -m pytest -q tests/integration

# The system Apache's enabled modules, confs and sites (and whether it runs) and which
# system PostgreSQL clusters run must be the same after the tests as before: checked also
# when pytest fails, whose status is kept.
test: lint
	$(HOSTPKGS) snapshot $(HOST_SNAPSHOT)
	@status=0; $(VPY) -m pytest -q || status=$$?; \
	$(HOSTPKGS) check $(HOST_SNAPSHOT) || [ $$status -ne 0 ] || status=1; \
	exit $$status

demo: deps
	PORT=$(PORT) $(VPY) -m imageguard_devtools.demo

# The atheris fuzz targets of fuzz/ (tickets, cookies, share links), 60 s each; failing
# inputs are kept in fuzz/artifacts/. make test runs each for a few seconds.
# FUZZ_ARGS="--seconds 600 tickets" etc. are passed on.
fuzz: deps
	$(VPY) fuzz/run.py $(FUZZ_ARGS)

# The soak under changing rights (soak/soak.py): 64 clients for 60 s under each MPM
# while a writer changes the ACL store every 100 ms and Apache restarts gracefully, every
# answer checked against the store's state; results in soak/results/. About 5 minutes;
# make test runs a short one. SOAK_ARGS="--mpm prefork --seconds 300" etc. are passed on.
soak: deps
	$(VPY) soak/soak.py $(SOAK_ARGS)

# The benchmark of docs/performance.md (about 15 minutes; not part of make test, which
# runs a quick smoke run of it), then bench/profile.py's timing of the gatekeeper's steps.
# BENCH_ARGS="--mpm prefork" etc. are passed on to bench/run.py, PROFILE_ARGS to profile.py.
bench: deps
	$(HOSTPKGS) install $(BENCH_PACKAGES)
	$(VPY) -m pip install -q --disable-pip-version-check 'matplotlib>=3.6'
	$(VPY) bench/run.py $(BENCH_ARGS)
	$(VPY) bench/profile.py $(PROFILE_ARGS)

# The talk's slides: docs/talk/deck.md as docs/talk/deck.html and deck.pdf (docs/talk/build.sh:
# Marp CLI at the version docs/talk/package-lock.json pins, installed with npm ci into
# docs/talk/node_modules, printing with the system's chromium; nothing downloads a browser).
slides:
	$(HOSTPKGS) install chromium
	@command -v npm >/dev/null || $(HOSTPKGS) install nodejs npm
	docs/talk/build.sh

# The demo screenshots of README.md and docs/ (docs/images/demo-*.png): the demo site on a
# private Apache, each demo user logged in through its form in the system's chromium
# (tools/screenshots.py, with imageguard_devtools.browser, the browser test's driver).
screenshots: deps
	$(VPY) tools/screenshots.py

# Rewrite the example files in apache_conf/ from the generator (a unit test compares them).
apache-conf: deps
	$(VPY) -c "from imageguard.apache.apacheconf import shipped_files; \
	[open('apache_conf/' + n, 'w').write(t) for n, t in shipped_files().items()]"

# Rewrite the option tables in README.md and docs/ from imageguard.apache.options (a unit
# test compares them).
options-table: deps
	$(VPY) -c "import pathlib; from imageguard.apache.options import rewrite_tables; \
	[p.write_text(rewrite_tables(p.read_text())) for p in \
	[pathlib.Path('README.md'), *pathlib.Path('docs').glob('*.md')]]"

clean:
	rm -rf $(VENV) .demo build dist src/*.egg-info .pytest_cache .ruff_cache $(HOST_SNAPSHOT)
