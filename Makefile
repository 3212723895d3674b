# install / run / test / bench / lock. `make help` lists them.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
# A Python 3.10: a working python3.10 on PATH, else pyenv's newest 3.10.x. Override: make PYTHON=...
PYTHON ?= $(shell for p in python3.10 $$(ls -d $$HOME/.pyenv/versions/3.10.*/bin/python3.10 2>/dev/null | sort -V | tail -n 1); do \
  $$p -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1 && { echo $$p; break; }; done)
ARGS ?=
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

.PHONY: help install run test test-unit bench lock clean

help:
	@echo "make install   create $(VENV) (Python 3.10) with the pinned stack and the project"
	@echo "make run       run the pipeline locally (ARGS='--data PATH --team-seed 3 ...')"
	@echo "make test      the whole test suite (unit + end-to-end)"
	@echo "make test-unit only the fast unit tests"
	@echo "make bench     the speed benchmarks (docs/benchmarks.md); model quality: benchmarks/quality.py"
	@echo "make lock      re-resolve requirements.lock from setup.py's pins"

install: $(VENV)/.installed

$(VENV)/.installed: requirements.lock setup.py
	@if [ -z "$(PYTHON)" ]; then echo "error: no Python 3.10 found (python3.10 or ~/.pyenv/versions/3.10.*); pass PYTHON=/path/to/python3.10" >&2; exit 2; fi
	@test -x $(BIN)/python || { echo "Creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@
	@echo "Installed: $$($(BIN)/python -c 'import tfx, tensorflow, keras; print("tfx", tfx.__version__, "tensorflow", tensorflow.__version__, "keras", keras.__version__)' 2>/dev/null)"

run: install
	$(BIN)/python local_runner.py $(ARGS)

test: install
	$(BIN)/python -m pytest tests -q -p no:cacheprovider

test-unit: install
	$(BIN)/python -m pytest tests -q -p no:cacheprovider -m "not e2e"

bench: install
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/input_pipeline.py
	$(BIN)/python benchmarks/step_time.py

lock:
	@test -n "$(PYTHON)" || { echo "error: no Python 3.10 found" >&2; exit 2; }
	rm -rf /tmp/cifar100-tfx-lock && $(PYTHON) -m venv /tmp/cifar100-tfx-lock
	/tmp/cifar100-tfx-lock/bin/pip install --quiet --upgrade pip && /tmp/cifar100-tfx-lock/bin/pip install --quiet -e '.[dev]'
	{ head -n 4 requirements.lock; /tmp/cifar100-tfx-lock/bin/pip freeze --exclude-editable; } > requirements.lock.new && mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) build *.egg-info
