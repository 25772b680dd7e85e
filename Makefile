# Two entry points: `make demo` (the main job on the bundled examples) and `make test`.
# Each creates its own virtual environment in .venv on first use.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.13.0 is pinned so pip takes the CPU wheel rather than a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: demo test lint bench weights clean

$(BIN)/recolor: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"
	touch $@

demo: $(BIN)/recolor
	$(BIN)/recolor predict --head cls -o recolored/ examples/*.png
	$(BIN)/recolor compare recolored/ examples/ --montage recolored/montage.png

test: $(BIN)/recolor
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q

bench: $(BIN)/recolor
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/bench_startup.py
	$(BIN)/python benchmarks/bench_quant.py

clean:
	rm -rf recolored/ .pytest_cache .ruff_cache
