# One virtualenv for the bot, connectors and tests; the Splunk SOAR app has its own (plugins/splunk_soar).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: venv test lint unit demo bench soar soar-venv system-deps slow clean

# The Splunk SOAR app's own environment (splunk-soar-sdk pins pydantic<2) and its built package.
SOAR := plugins/splunk_soar
SOAR_VENV := $(SOAR)/.venv
SOAR_STAMP := $(SOAR_VENV)/.installed-$(shell cat $(SOAR)/uv.lock $(SOAR)/pyproject.toml | cksum | cut -d' ' -f1)
SOAR_PACKAGE := $(SOAR)/dist/idops_soar.tgz
SOAR_RUNTIMES := $(SOAR)/build/runtimes/.built

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	# the stand-ins (standins/) are not installed with idops: the repo root on sys.path reaches them
	echo "$(CURDIR)" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/idops_repo.pth"
	rm -f $(VENV)/.installed-*
	touch $@

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	# connectors/ is embedded in SOAR runtimes that run Python 3.9
	$(VENV)/bin/vermin --no-tips --violations -t=3.9- --eval-annotations --backport dataclasses connectors/

# Debian packages the tests need (Chromium, the PostgreSQL server): installed when root, else the exact
# apt-get line. First in `test` and `unit`, so a machine without them stops at once, before minutes of building.
system-deps:
	@sh scripts/system-deps postgresql

unit: system-deps venv soar
	$(PY) -m pytest -q -m "not slow"

slow: system-deps venv soar
	$(PY) -m pytest -q -m slow

test: system-deps lint unit

demo: venv
	$(VENV)/bin/idops demo

bench: venv
	$(PY) bench/sweep.py
	$(PY) bench/alerts.py
	$(PY) bench/storm.py
	$(PY) bench/incremental.py

soar-venv: $(SOAR_STAMP)

$(SOAR_STAMP): $(SOAR)/uv.lock $(SOAR)/pyproject.toml
	$(PYTHON) -m venv $(SOAR_VENV)
	$(SOAR_VENV)/bin/python -m pip install -q --disable-pip-version-check uv==0.13.9
	cd $(SOAR) && .venv/bin/uv sync -q --frozen --inexact --compile-bytecode
	# the app imports the repo's connectors/ in development; the package gets a copy at build time
	echo "$(CURDIR)" > "$$($(SOAR_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/idops_repo.pth"
	rm -f $(SOAR_VENV)/.installed-*
	touch $@

# `soarapps package build` downloads the dependency wheels from PyPI: rebuilt only when sources change.
# The runtimes are Python 3.9 and 3.13 venvs with the package's own wheels, to run it as SOAR would;
# those wheels follow uv.lock, so code changes rebuild only the package.
soar: $(SOAR_PACKAGE) $(SOAR_RUNTIMES)

$(SOAR_PACKAGE): $(SOAR_STAMP) $(SOAR)/build_package.py $(SOAR)/logo.svg $(SOAR)/logo_dark.svg \
		$(shell find connectors $(SOAR)/src -name '*.py' -not -path '*/__pycache__/*')
	$(SOAR_VENV)/bin/python $(SOAR)/build_package.py --output $@

$(SOAR_RUNTIMES): $(SOAR_STAMP) $(SOAR)/runtimes.py | $(SOAR_PACKAGE)
	$(SOAR_VENV)/bin/python $(SOAR)/runtimes.py $(SOAR_PACKAGE) $(SOAR)/build/runtimes
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(SOAR_VENV) $(SOAR)/build $(SOAR)/dist
