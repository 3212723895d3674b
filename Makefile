# install / run / test / bench / lock. `make help` lists them.
SHELL := /bin/bash
# Two stacks (docs/stacks.md): tfx121 (TFX 1.21, Python 3.11-3.13) where glibc >= 2.39 (macOS: Apple
# silicon) and such a Python exist, else tfx116 (TFX 1.16, Python 3.10). `python3 -m base.compat
# choose` decides (tested in tests/test_compat.py); STACK=tfx116|tfx121 and PYTHON=/path/to/python
# override. Each stack has its own venv and lock, so switching never breaks the other.
STACK ?=
PYTHON ?=
CHOICE := $(shell $$(command -v python3 || echo $(PYTHON)) -m base.compat choose --stack '$(STACK)' --python '$(PYTHON)' 2>&1)
ifeq ($(firstword $(CHOICE)),error:)
  $(error $(wordlist 2,999,$(CHOICE)))
else ifeq ($(filter tfx116 tfx121,$(firstword $(CHOICE))),)
  $(error could not choose the stack: python3 -m base.compat choose said '$(CHOICE)')
endif
override STACK := $(word 1,$(CHOICE))
VENV := $(word 2,$(CHOICE))
LOCK := $(word 3,$(CHOICE))
override PYTHON := $(filter-out -,$(word 4,$(CHOICE)))
STACK_WHY := $(wordlist 5,999,$(CHOICE))
BIN := $(VENV)/bin
ARGS ?=
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

.PHONY: help stack install run test test-unit bench lock image clean

help:
	@echo "make install   create $(VENV) with the $(STACK) stack and the project (STACK=tfx116|tfx121 overrides)"
	@echo "make run       run the pipeline locally (ARGS='--data PATH --team-seed 3 ...')"
	@echo "make test      the whole test suite (unit + end-to-end)"
	@echo "make test-unit only the fast unit tests"
	@echo "make bench     the speed benchmarks (docs/benchmarks.md); model quality: benchmarks/quality.py"
	@echo "make lock      re-resolve $(LOCK) from setup.py's pins"
	@echo "make image     build and push the pipeline image (IMAGE=REGION-docker.pkg.dev/PROJECT/REPO/cifar100-tfx)"

# Which stack and why: printed before every target that uses the venv.
stack:
	@echo "$(STACK_WHY) (venv $(VENV)$(if $(PYTHON), made with $(PYTHON)))"

install: $(VENV)/.installed

$(VENV)/.installed: $(LOCK) setup.py | stack
	@if [ -z "$(PYTHON)" ]; then echo "error: no Python $(if $(filter tfx116,$(STACK)),3.10 (python3.10 or ~/.pyenv/versions/3.10.*),3.11-3.13 (python3.1[123] or ~/.pyenv/versions/3.1[123].*)) found; pass PYTHON=/path/to/python (docs/stacks.md)" >&2; exit 2; fi
	@test -x $(BIN)/python || { echo "Creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -r $(LOCK)
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
	$(BIN)/python benchmarks/evaluator.py

image:
	@test -n "$(IMAGE)" || { echo "error: pass IMAGE=REGION-docker.pkg.dev/PROJECT/REPO/cifar100-tfx" >&2; exit 2; }
	@command -v docker >/dev/null || { echo "error: make image needs Docker (docs/vertex.md)" >&2; exit 2; }
	docker build -t $(IMAGE) .
	docker push $(IMAGE)

lock: stack
	@test -n "$(PYTHON)" || { echo "error: no Python found for $(STACK)" >&2; exit 2; }
	rm -rf /tmp/cifar100-tfx-lock-$(STACK) && $(PYTHON) -m venv /tmp/cifar100-tfx-lock-$(STACK)
	/tmp/cifar100-tfx-lock-$(STACK)/bin/pip install --quiet --upgrade pip && /tmp/cifar100-tfx-lock-$(STACK)/bin/pip install --quiet -e '.[dev]'
	{ head -n 4 $(LOCK); /tmp/cifar100-tfx-lock-$(STACK)/bin/pip freeze --exclude-editable; } > $(LOCK).new && mv $(LOCK).new $(LOCK)

clean:
	rm -rf $(VENV) build *.egg-info
