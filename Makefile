# imageguard: `make test` and `make demo` set up everything they need themselves.
#   apt packages (apache2, libapache2-mod-python) when missing,
#   a venv made from /usr/bin/python3 (the interpreter mod_python embeds),
#   Pillow, the test tools and imageguard itself installed into it.

SYSTEM_PYTHON := /usr/bin/python3
VENV          := .venv
VPY           := $(VENV)/bin/python
APT_PACKAGES  := apache2 libapache2-mod-python libapache2-mod-auth-tkt python3-venv \
                 wrk libapache2-mod-wsgi-py3 libapache2-mod-xsendfile
STAMP         := $(VENV)/.installed
PORT          ?= 8080

.PHONY: all deps apt test unit integration lint demo clean apache-conf bench

all: test

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml setup.py | apt
	@test -x $(VPY) || $(SYSTEM_PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

deps: apt $(STAMP)

lint: deps
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

unit: deps
	$(VPY) -m pytest -q tests/unit

integration: deps
	$(VPY) -m pytest -q tests/integration

test: deps
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(VPY) -m pytest -q

demo: deps
	PORT=$(PORT) $(VPY) -m imageguard.demo

# The benchmark of docs/performance.md (about 15 minutes; not part of make test, which
# runs a quick smoke run of it). BENCH_ARGS="--mpm prefork" etc. are passed on.
bench: deps
	$(VPY) -m pip install -q --disable-pip-version-check 'matplotlib>=3.6'
	$(VPY) bench/run.py $(BENCH_ARGS)

# Rewrite the example files in apache_conf/ from the generator (a unit test compares them).
apache-conf: deps
	$(VPY) -c "from imageguard.apacheconf import shipped_files; \
	[open('apache_conf/' + n, 'w').write(t) for n, t in shipped_files().items()]"

clean:
	rm -rf $(VENV) .demo build dist src/*.egg-info .pytest_cache .ruff_cache
