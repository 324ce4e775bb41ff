# Two entry points: `make run` (the app) and `make test` (the test suite).
# Each creates the virtual environments it needs from this project's own files:
# .venv (make run: the core install; make test: every extra, numpy 1 because of mediapipe) and
# .venv-core (make test: the core install as a user gets it, numpy 2, no mediapipe, + dev and batch).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APP_STAMP := $(VENV)/.installed-app
DEV_STAMP := $(VENV)/.installed-dev
CORE_VENV := .venv-core
CORE_PY := $(CORE_VENV)/bin/python
CORE_STAMP := $(CORE_VENV)/.installed-core
PYTEST := QT_QPA_PLATFORM=offscreen
PYTEST_ARGS := -q -p no:cacheprovider

.PHONY: run test test-full test-core bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel

$(APP_STAMP): setup.cfg pyproject.toml constraints-core.txt | $(PY)
	$(PY) -m pip install -c constraints-core.txt -e .
	$(PY) -m pip check
	touch $@

$(DEV_STAMP): setup.cfg pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install -c constraints.txt -e '.[dev,train,peers,batch]'
	$(PY) -m pip check
	touch $@ $(APP_STAMP)

$(CORE_PY):
	$(PYTHON) -m venv $(CORE_VENV)
	$(CORE_PY) -m pip install -q --upgrade pip setuptools wheel

# The core install alone first (checked: numpy >= 2, no mediapipe, pip check), then what the tests
# need that is no peer (pytest, the batch extra).
$(CORE_STAMP): setup.cfg pyproject.toml constraints-core.txt | $(CORE_PY)
	$(CORE_PY) -m pip install -c constraints-core.txt -e .
	$(CORE_PY) -m pip check
	$(CORE_PY) -c "import importlib.util as u, numpy; assert int(numpy.__version__.split('.')[0]) >= 2, numpy.__version__; assert u.find_spec('mediapipe') is None, 'mediapipe in the core install'"
	$(CORE_PY) -m pip install -c constraints-core.txt -e '.[dev,batch]'
	$(CORE_PY) -m pip check
	touch $@

run: $(APP_STAMP)
	$(PY) run_app.py

# Both stacks, both always run; fails if either fails. Full: every test, none may be skipped for
# a missing package (FACETRACK_FULL_STACK=1). Core: the same suite; tests marked `peers` (mediapipe,
# dlib, torch, ...: tests/peers.py) skip there because those packages are absent, and only then.
test: $(DEV_STAMP) $(CORE_STAMP)
	@status=0; \
	echo "== full stack ($(VENV))"; FACETRACK_FULL_STACK=1 $(PYTEST) $(PY) -m pytest $(PYTEST_ARGS) || status=1; \
	echo "== core stack ($(CORE_VENV))"; $(PYTEST) $(CORE_PY) -m pytest $(PYTEST_ARGS) -rs || status=1; \
	exit $$status

test-full: $(DEV_STAMP)
	FACETRACK_FULL_STACK=1 $(PYTEST) $(PY) -m pytest $(PYTEST_ARGS)

test-core: $(CORE_STAMP)
	$(PYTEST) $(CORE_PY) -m pytest $(PYTEST_ARGS) -rs

clean:
	rm -rf $(VENV) $(CORE_VENV) build *.egg-info
