# Plenary — the two commands a new machine needs: `make demo` and `make test`.
# Each target installs what it needs itself (Debian packages as root, then a
# virtualenv in .venv), so a fresh Debian machine with Python 3.11 is enough.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMPS := .stamps
# Debian packages: ffmpeg decodes any audio the CLI is given; libopus0 backs the
# Opus decoder; sox and espeak-ng are used by tests to make synthetic audio.
# ngircd and inspircd are the IRC servers the relay's tests start. The Ergo IRC
# server is not packaged for Debian (Debian's "ergo" is a chemistry program) and no
# registry this project may use carries it, so its tests run only where an admin
# installed it on PATH, and skip elsewhere with that reason.
# nginx, lua5.4 (luac5.4) and nodejs (node --check) validate the Ansible roles'
# nginx site, prosody files and config.js in the deployment tests.
# slapd and ldap-utils give the access tests a real directory; libldap2-dev and
# libsasl2-dev let pip build python-ldap where no wheel fits.
# libfst-tools and libfst22-plugins-base convert the Korean model's language-model graph
# (captioner.graph) for faster decoding.
# chromium is the real browser the accessibility tests drive (captions page, web UI);
# axe-core, the checker they inject, comes from npm into tests/.node (gitignored).
# The packaged servers (slapd, ngircd, inspircd, prometheus) must not start as system
# services on install: tests start their own on 127.0.0.1, so policy-rc.d forbids it.
APT_PACKAGES := ffmpeg libopus0 libsndfile1 sox ngircd inspircd atheme-services openssl \
	slapd ldap-utils libldap2-dev libsasl2-dev prometheus chromium \
	nginx lua5.4 nodejs postgresql haproxy libfst-tools libfst22-plugins-base

.PHONY: demo test lint bench deps clean format

demo: deps
	$(VENV)/bin/plenary demo

test: deps lint
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup --no-loadscope-reorder

lint: deps
	$(VENV)/bin/ruff format --check plenary orchestrator bots tests bench
	$(VENV)/bin/ruff check plenary orchestrator bots tests bench
	$(VENV)/bin/mypy plenary orchestrator bots
	$(VENV)/bin/lint-imports --no-cache

format: deps
	$(VENV)/bin/ruff format plenary orchestrator bots tests bench
	$(VENV)/bin/ruff check --fix plenary orchestrator bots tests bench

bench: deps
	$(PY) -m bench $(BENCH_ARGS)

deps: $(STAMPS)/apt $(STAMPS)/venv $(STAMPS)/axe

$(STAMPS)/apt: Makefile
	@mkdir -p $(STAMPS)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		if [ ! -e /usr/sbin/policy-rc.d ]; then \
			printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1; \
		fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
		status=$$?; [ -n "$$guard" ] && rm -f /usr/sbin/policy-rc.d; exit $$status; \
	fi
	@touch $@

$(STAMPS)/venv: pyproject.toml
	@mkdir -p $(STAMPS)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
		{ echo "Plenary needs Python 3.11 (PYTHON=$(PYTHON) is $$($(PYTHON) --version))"; exit 1; }
	@# Debian's own python3 needs python3-venv for `-m venv`; a pyenv or source build has it.
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv && \
		rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

$(STAMPS)/axe: Makefile
	@mkdir -p $(STAMPS)
	@command -v npm >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm; }
	npm install -s --prefix tests/.node --no-audit --no-fund axe-core@4
	@touch $@

clean:
	rm -rf $(VENV) $(STAMPS) .mypy_cache .ruff_cache .pytest_cache tests/.node
