# One virtualenv for the bot, connectors and tests; the Splunk SOAR app has its own (plugins/splunk_soar).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: venv test lint unit demo bench soar clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	# connectors/ is embedded in SOAR runtimes that run Python 3.9
	$(VENV)/bin/vermin --no-tips --violations -t=3.9- --eval-annotations --backport dataclasses connectors/

unit: venv
	$(PY) -m pytest -q

test: lint unit

demo: venv
	$(PY) -m bot.cli demo

bench: venv
	$(PY) bench/sweep.py
	$(PY) bench/alerts.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
