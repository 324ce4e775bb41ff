# Two entry points: `make run` (the app) and `make test` (the test suite).
# Each creates the virtual environment it needs from this project's own files.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APP_STAMP := $(VENV)/.installed-app
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel

$(APP_STAMP): setup.cfg pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install -c constraints.txt -e .
	$(PY) -m pip check
	touch $@

$(DEV_STAMP): setup.cfg pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install -c constraints.txt -e '.[dev,train,peers,batch]'
	$(PY) -m pip check
	touch $@ $(APP_STAMP)

run: $(APP_STAMP)
	$(PY) run_app.py

test: $(DEV_STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) build *.egg-info
