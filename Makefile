# Two entry points: `make demo` (the main job on the bundled examples) and `make test` (`make
# lint` and the test suite); the rest are for developers (README, Development). Each creates
# its own virtual environment in .venv on first use.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.13.0 is pinned (the CPU wheel this project's machines hold). On PyPI, Linux's torch is
# the CUDA build (several GB): `make TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu"`
# takes the CPU build instead.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: demo test lint bench fuzz weights weights-eval hint-weights hint-train hint-eval affinity-weights \
	clean

$(BIN)/recolor: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_INDEX) "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"
	touch $@

demo: $(BIN)/recolor
	$(BIN)/recolor predict --head cls -o recolored/examples/ examples/*.jpg
	$(BIN)/recolor compare recolored/examples/ examples/ --montage recolored/montage.png

# The suite on every core (pytest-xdist): on 2 cores 11 minutes, not 19 (most tests wait on a
# subprocess's start-up, so two at once nearly halve it); then, one at a time, the tests that
# launch several processes (tests/conftest.py says why).
test: lint
	$(BIN)/pytest -q -n auto -m "not distributed"
	$(BIN)/pytest -q -m distributed

lint: $(BIN)/recolor
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The fuzz tests of the record and image readers with 100,000 cases each (CI runs 300; no
# per-test limit: the hint-file reader's alone takes ~12 minutes), then coverage-guided fuzzing
# of both with atheris (libFuzzer) for as many runs.
FUZZ_EXAMPLES ?= 100000
fuzz: $(BIN)/recolor
	RECOLOR_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q --timeout 0 tests/test_fuzz.py
	$(BIN)/pip install -q atheris
	OPENCV_LOG_LEVEL=SILENT $(BIN)/python tests/fuzz_atheris.py -runs=$(FUZZ_EXAMPLES)

bench: $(BIN)/recolor
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/bench_startup.py
	$(BIN)/python benchmarks/bench_startup.py --cold
	$(BIN)/python benchmarks/bench_quant.py
	$(BIN)/python benchmarks/bench_colorprofile.py
	$(BIN)/python benchmarks/bench_predict.py
	$(BIN)/python benchmarks/bench_guide.py
	$(BIN)/python benchmarks/bench_memory.py
	$(BIN)/python benchmarks/bench_quota.py
	$(BIN)/python benchmarks/bench_train.py --steps 10 --workers 0 1

# The shipped weights, from the poster folder (see weights/README.md): a shrunken two-thirds of
# train (weights/subset.py: it had to fit a 64 MB upload to the GPU machine), the class statistics
# over all of train, both heads, then the model card's validation table. About 6 minutes of one
# H100 for training (pass TORCH=... for a CUDA build of torch); on 2 CPU cores, most of a day.
DATA ?= ../shared/data/posters
RUNS ?= runs
STEPS_CLS ?= 7620
STEPS_REG ?= 5000
TRAIN_FLAGS ?= --lr 2e-3 --schedule cosine -b 64 --size 128 --workers 14
CLS_FLAGS ?= --width 64 --seed 3 --affinity 128
REG_FLAGS ?= --seed 1

weights: $(BIN)/recolor
	$(BIN)/python weights/subset.py $(DATA)/train $(RUNS)/posters/train --keep 2 --of 3
	$(BIN)/python weights/subset.py $(DATA)/val $(RUNS)/posters/val200 --first 200
	$(BIN)/recolor rebalance-stats $(DATA)/train -o $(RUNS)/stats.npz --plot $(RUNS)/prior.png
	$(BIN)/recolor train --head cls $(RUNS)/posters/train --val $(RUNS)/posters/val200 \
		--stats $(RUNS)/stats.npz --steps $(STEPS_CLS) --eval-every $$(($(STEPS_CLS) / 6)) \
		$(TRAIN_FLAGS) $(CLS_FLAGS) --out $(RUNS)/cls --overwrite
	$(BIN)/recolor train --head reg $(RUNS)/posters/train --val $(RUNS)/posters/val200 \
		--steps $(STEPS_REG) --eval-every $$(($(STEPS_REG) / 5)) $(TRAIN_FLAGS) $(REG_FLAGS) \
		--out $(RUNS)/reg --overwrite
	cp $(RUNS)/cls/cls.pt weights/cls.pt
	cp $(RUNS)/reg/reg.pt weights/reg.pt
	$(MAKE) weights-eval

weights-eval: $(BIN)/recolor
	rm -rf $(RUNS)/eval  # evaluate.py refuses a used work folder (its images would be scored)
	$(BIN)/python weights/evaluate.py $(DATA)/val --stats $(RUNS)/stats.npz \
		--work $(RUNS)/eval --card weights/README.md

# A cls model that takes colour hints (issue 15), trained from scratch like the shipped one with
# hints simulated from the truth (after `make weights`: it reuses its subset and statistics).
# Not copied into weights/: its table is to be set against the steered shipped model's in the
# model card ("Guided recolouring") first. About 4 minutes of one H100. On a GPU machine that
# has not the posters, `make hint-train` there (carry runs/posters and runs/stats.npz), then
# `make hint-eval` where they are.
hint-weights: $(BIN)/recolor
	$(MAKE) hint-train
	$(MAKE) hint-eval

hint-train: $(BIN)/recolor
	$(BIN)/recolor train --head cls --hints $(RUNS)/posters/train --val $(RUNS)/posters/val200 \
		--stats $(RUNS)/stats.npz --steps $(STEPS_CLS) --eval-every $$(($(STEPS_CLS) / 6)) \
		$(TRAIN_FLAGS) $(CLS_FLAGS) --out $(RUNS)/cls-hints --overwrite

# HINT_STEER=guided or none: the hint model steered through its hint-fed features, or not at all
# (evaluate_hints.py --hint-model-steer; each way its own dump).
HINT_STEER ?= automatic
hint-eval: $(BIN)/recolor
	$(BIN)/python weights/evaluate_hints.py $(DATA)/val --stats $(RUNS)/stats.npz \
		--weights $(RUNS)/cls-hints/cls.pt --skip 100 --hint-model-steer $(HINT_STEER) \
		--dump $(RUNS)/cls-hints/hints-$(HINT_STEER).jsonl

# The shipped cls weights' learned affinity (issue 15; weights/README.md, "Guided recolouring"):
# the network kept exactly (--init without --hints: --lr 0), only the 1x1 layer that spreads point
# hints learns, on all of train (on weights that have one already, it trains that one further).
# About 15 minutes on 2 CPU cores; then the guided table.
AFFINITY_STEPS ?= 1500
affinity-weights: $(BIN)/recolor
	test -f $(RUNS)/stats.npz || $(BIN)/recolor rebalance-stats $(DATA)/train -o $(RUNS)/stats.npz
	$(BIN)/recolor train --head cls --init weights/cls.pt --affinity 128 $(DATA)/train \
		--stats $(RUNS)/stats.npz --steps $(AFFINITY_STEPS) -b 16 --size 128 --workers 1 \
		--out $(RUNS)/cls-affinity --overwrite
	cp $(RUNS)/cls-affinity/cls.pt weights/cls.pt
	$(BIN)/python weights/evaluate_hints.py $(DATA)/val --stats $(RUNS)/stats.npz \
		--dump $(RUNS)/cls-affinity/hints.jsonl --card weights/README.md

clean:
	rm -rf recolored/ .pytest_cache .ruff_cache .hypothesis dist build *.egg-info
