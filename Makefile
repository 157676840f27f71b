# `make demo` (serve the Gradio app), `make streamlit` (the Streamlit variant) and `make test` (ruff, mypy on core/, the whole suite).
# The Python environment is shared between clones, keyed by the requirement files:
# scripts/env.sh builds it once under ~/.cache/xfv and prints its path.
SHELL := /bin/bash
VENV := $(shell bash scripts/env.sh)
ifeq ($(VENV),)
$(error could not build the Python environment; see the messages above)
endif
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export GRADIO_ANALYTICS_ENABLED = False

.PHONY: demo streamlit test test-weights lint format env bench calibrate clean

env:
	@echo $(VENV)

# With ../shared/data beside the clone, the demo offers its labelled pairs as examples and
# uses its identities as SDD's gallery (an operator's own XFV_EXAMPLES / XFV_GALLERY win).
DEMO_DATA := $(abspath ../shared/data/faces/deepface)

demo:
	@if [ -d "$(DEMO_DATA)" ]; then \
	  XFV_EXAMPLES="$${XFV_EXAMPLES:-$(DEMO_DATA)/pairs.csv}" XFV_GALLERY="$${XFV_GALLERY:-$(DEMO_DATA)/identities.csv}" $(PY) app.py; \
	else $(PY) app.py; fi

streamlit:
	$(PY) -m streamlit run apps/streamlit_app.py

test:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest

# the real-weights lane: each test runs where its model's files are in the caches
# (python -m core fetch-weights all), else is skipped naming the missing file
test-weights:
	$(PY) -m pytest -m weights tests/weights -rs

lint:
	$(PY) -m ruff check .

format:
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench:
	$(PY) benchmarks/bench_embed.py

calibrate:
	$(PY) -m core calibrate ../shared/data/faces/deepface/identities.csv --images ../shared/data/faces/deepface

clean:
	rm -rf .pytest_cache .ruff_cache .mypy_cache **/__pycache__
