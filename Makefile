# Colonnade: every target installs what it needs first (a local virtualenv in .venv).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: serve test lint format bench docs install sysdeps clean compiled test-compiled tls-audit console-shots

# `make serve` runs what `pip install .` installs: the compiled build (mypyc, see
# setup.py) when this machine can compile it, else pure Python (`colonnade --version`
# says which, and why). In a venv of its own, rebuilt only when the sources change:
# the first start compiles (a few minutes), later ones start at once.
# `COLONNADE_MYPYC=0 make serve` builds pure Python (a quick rebuild while editing).
SVENV       := .venv-serve
SERVE_STAMP := $(SVENV)/.installed
SERVE_FROM  := pyproject.toml setup.py MANIFEST.in build_backend/colonnade_build.py \
	$(shell find src -type f -not -name '*.pyc' -not -path '*.egg-info*' 2>/dev/null)

serve: $(SERVE_STAMP)
	$(SVENV)/bin/colonnade serve --root examples/welcome --bind 127.0.0.1:8080

$(SERVE_STAMP): $(SERVE_FROM)
	test -x $(SVENV)/bin/python || $(PYTHON) -m venv $(SVENV)
	$(SVENV)/bin/python -m pip install -q --upgrade pip
	@echo "building colonnade into $(SVENV) (compiled when a C compiler is here: a few minutes the first time)"
	$(SVENV)/bin/python -m pip install -q .  # a folder is always rebuilt and reinstalled
	@$(SVENV)/bin/colonnade --version
	touch $@

test: $(STAMP) sysdeps lint
	$(BIN)/python -m pytest -q
	$(MAKE) --no-print-directory test-compiled

# System packages the tests use, as command:package pairs: a real headless Chromium
# (browser tests), htpasswd (user files in every format), an MIT KDC and its
# clients (Kerberos), redis-server (shared counters, caches), testssl.sh (the TLS
# audit of make tls-audit). Installed when a
# command is missing and we may (root, as in CI); elsewhere those tests skip and say why.
# The dev install needs two of them to build: gssapi (the kerberos extra) has no
# Linux wheel and compiles against the MIT Kerberos headers (krb5-config) with a C
# compiler, so the virtualenvs are made after this. php-cgi and php-fpm: real PHP
# behind handler.fastcgi; Debian names php-fpm by its version (/usr/sbin/php-fpm8.2),
# so a command with a * is looked for as a file pattern in PATH, /usr/sbin and /sbin.
# A package with no command (a PHP application, a PHP extension) is named by an
# absolute path or pattern to a file it installs: Adminer (a real PHP application,
# browser-tested) and PHP's SQLite extension (its database for that test).
# slowhttptest: the slow-client attacks (make attack, and a short slowloris in the suite).
SYSDEPS := chromium:chromium htpasswd:apache2-utils krb5kdc:krb5-kdc \
	kadmin.local:krb5-admin-server kinit:krb5-user redis-server:redis-server \
	krb5-config:libkrb5-dev cc:gcc testssl:testssl.sh h2load:nghttp2-client \
	php-cgi:php-cgi php-fpm*:php-fpm /usr/share/adminer/adminer.php:adminer \
	/usr/lib/php/*/pdo_sqlite.so:php-sqlite3 slowhttptest:slowhttptest ss:iproute2

sysdeps:
	@set -f; missing=""; for pair in $(SYSDEPS); do \
	  cmd="$${pair%%:*}"; \
	  case "$$cmd" in \
	    /*) set +f; found=$$(for f in $$cmd; do [ -e "$$f" ] && echo "$$f"; done); set -f; \
	      [ -n "$$found" ] ;; \
	    *'*'*) set +f; found=$$(for d in $$(echo "$$PATH:/usr/sbin:/sbin" | tr : ' '); do \
	      for f in $$d/$$cmd; do [ -x "$$f" ] && echo "$$f"; done; done); set -f; [ -n "$$found" ] ;; \
	    *) PATH="$$PATH:/usr/sbin:/sbin" command -v "$$cmd" >/dev/null 2>&1 ;; \
	  esac || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "missing (not root, cannot install):$$missing; the tests that need them skip"; fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	# the benchmark harness and reliability scripts: at least no undefined name
	$(BIN)/ruff check --select F,E9 bench
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

# testssl.sh against a live https binding (about a minute): no finding of severity
# HIGH or CRITICAL, TLS 1.2 and 1.3 only. Add -s to see its report (docs/tls.md).
tls-audit: $(STAMP) sysdeps
	$(BIN)/python -m pytest -q -p no:cacheprovider -m tls_audit tests/audit $(AUDIT_ARGS)

docs: $(STAMP)
	$(BIN)/colonnade config docs > docs/configuration.md

# Benchmarks against uvicorn, granian, gunicorn, hypercorn and nginx; results in
# bench/RESULTS.md. `make bench BENCH_ARGS=--quick` for a short run. Colonnade runs
# from the compiled build (.venv-compiled), as in production; the pure build as a row too.
bench: $(STAMP) compiled
	bash bench/run.sh $(BENCH_ARGS)

# Coverage-guided fuzzing (atheris, libFuzzer) of every parser of outside bytes: each
# target in tests/fuzz/ for FUZZ_SECONDS (60 by default; FUZZ_ARGS="--only h1 h2" for
# some), then a summary of executions, coverage and crashes. The working corpora and
# crash files stay in .fuzz/ and grow from run to run (tests/fuzz/README.md).
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz: $(STAMP)
	$(BIN)/python -m tests.fuzz.harness all --seconds $(FUZZ_SECONDS) --work .fuzz $(FUZZ_ARGS)

install: $(STAMP)

# The package (editable) with its dev tools (test, lint, type-check, the frameworks
# of the hosting tests), the kerberos extra where it builds (else its tests skip),
# and the test-only third-party module package that proves entry-point registration.
$(STAMP): pyproject.toml tests/thirdparty/pyproject.toml | sysdeps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,kerberos]' -e tests/thirdparty || { \
	  echo "the kerberos extra (gssapi) did not build: installing without it; the Negotiate tests skip"; \
	  $(BIN)/python -m pip install -q -e '.[dev]' -e tests/thirdparty; }
	touch $@

# An optional install with the modules listed in [tool.colonnade.mypyc] of
# pyproject.toml compiled by mypyc (see setup.py), in a venv of its own: never
# editable, so no compiled module lands in src/ to shadow the sources. First the
# package and its test dependencies as usual (mypy type-checks what the compiled
# modules import), then the compiled build replaces the package, built without
# isolation by that venv's mypy.
CVENV := .venv-compiled
CBIN  := $(CVENV)/bin

compiled: sysdeps
	test -x $(CBIN)/python || $(PYTHON) -m venv $(CVENV)
	$(CBIN)/python -m pip install -q --upgrade pip 'setuptools>=77' wheel
	COLONNADE_MYPYC=0 $(CBIN)/python -m pip install -q '.[dev,kerberos]' ./tests/thirdparty || \
	  COLONNADE_MYPYC=0 $(CBIN)/python -m pip install -q '.[dev]' ./tests/thirdparty
	COLONNADE_MYPYC=1 $(CBIN)/python -m pip install -q --no-build-isolation --no-deps --force-reinstall .

# The test suite against the compiled install (`colonnade` imported from it, not src/).
# Then a part of it with the write batch forced (tests/conftest.py): every keep-alive
# answer held for the loop's next turn, also on a worker's only connection, so that
# every path that writes to or ends a connection meets a held answer (about 2 minutes).
test-compiled: compiled
	COLONNADE_EXPECT_COMPILED=1 $(CBIN)/python -m pytest -q -p no:cacheprovider
	COLONNADE_TEST_FORCE_BATCH=1 COLONNADE_EXPECT_COMPILED=1 $(CBIN)/python -m pytest -q -p no:cacheprovider $(FORCED_BATCH_TESTS)

# What the forced write batch runs: the transport, HTTP/1.1 end to end (half-close,
# pipelining, files, the response cache, clients leaving, upgrades, WebSockets at a
# stop, a close with input unread), TLS, and a worker's drain and hand-over.
FORCED_BATCH_TESTS := tests/transport tests/e2e/test_http1.py \
	tests/e2e/test_write_batch_review.py tests/e2e/test_client_leaving.py \
	tests/e2e/test_upgrade_bounds.py tests/e2e/test_ignored_upgrade.py \
	tests/e2e/test_websocket_stop.py tests/e2e/test_static_e2e.py \
	tests/e2e/test_response_cache.py tests/e2e/test_close_with_input_unread.py \
	tests/pools/test_worker_drain.py tests/pools/test_handoff.py

clean:
	rm -rf $(VENV) $(CVENV) $(SVENV) build .mypy_cache .ruff_cache .pytest_cache

# Slow-client attacks (slowhttptest: slowloris, slow body, slow read, range header) at
# 1,000 connections against `colonnade serve --workers 2` and nginx, a good client
# measuring, then a memory check; ~9 minutes, loopback only. Writes its section of
# bench/RELIABILITY.md (ATTACK_ARGS=--help for the options; nginx: bench/setup.sh).
.PHONY: attack
attack: $(STAMP) sysdeps
	$(BIN)/python bench/reliability/attack.py $(ATTACK_ARGS)

# The web console's screenshots in docs/console/, taken by its browser tests.
console-shots: $(STAMP) sysdeps
	COLONNADE_CONSOLE_SHOTS=docs/console $(BIN)/python -m pytest -q -p no:cacheprovider tests/browser/test_console_browser.py

# The chaos suite (#23 item 4): one fault at a time under accounted load against a
# master and 2 workers, loopback only, a few minutes; results in bench/RELIABILITY.md
# (its chaos section). Needs root for the tmpfs of the disk-full scenario (skipped
# and said so otherwise). `make chaos CHAOS_ARGS="--only sigkill,sigstop"`.
.PHONY: chaos soak
chaos: $(STAMP) sysdeps
	$(BIN)/python bench/reliability/chaos.py $(CHAOS_ARGS)

# The soak (#23 item 5): SOAK_MINUTES (default 30) of mixed traffic, worker RSS and
# fds sampled every minute; its section of bench/RELIABILITY.md.
SOAK_MINUTES ?= 30
soak: $(STAMP)
	SOAK_MINUTES=$(SOAK_MINUTES) $(BIN)/python bench/reliability/soak.py $(SOAK_ARGS)

# `python -m build` (sdist, then an isolated wheel from it) and a check that the
# wheel carries every module of [tool.colonnade.mypyc] compiled: a few minutes.
.PHONY: wheel-check
wheel-check: $(STAMP) sysdeps
	$(BIN)/python -m pip install -q 'build>=1.2'
	$(BIN)/python -m pytest -q -p no:cacheprovider -m wheel_build tests/test_build.py
