# Each target bootstraps .venv on first use.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PIP     := $(BIN)/pip --disable-pip-version-check -q
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo test test-all check format bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(PIP) install -U pip 2>&1 | grep -v "^WARNING: Location" || true
	$(PIP) install -e ".[dev,whisper,postgres,embeddings,bench]" 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import anypod, faster_whisper, runpod, openai, asyncpg, sentence_transformers"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/whisper/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --run-slow

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy  # strict: the package, the tests and the benchmarks (pyproject.toml)

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python -m benchmarks.throughput

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
