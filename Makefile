# make demo: create .venv, install the project, run the demo workflow end to end (CPU, ~minutes)
# make sweep: install
	$(BIN)/snakemake --cores $(CORES) --configfile workflow/sweep.yaml
	@echo "Rank stability: results/sweep/figures/  Tables: results/sweep/tables/"

test: run the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: demo test install paper dry-run clean-demo sweep

$(BIN)/activate:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

install: $(BIN)/activate
	$(BIN)/pip install torch==2.13.0 || $(BIN)/pip install "torch>=2.1"
	$(BIN)/pip install -e ".[test]"

demo: install
	$(BIN)/snakemake --cores $(CORES) --configfile workflow/demo.yaml
	@echo "Tables: results/demo/tables/  Figures: results/demo/figures/"

sweep: install
	$(BIN)/snakemake --cores $(CORES) --configfile workflow/sweep.yaml
	@echo "Rank stability: results/sweep/figures/  Tables: results/sweep/tables/"

test:
	$(BIN)/python -m pytest -q -n 2 tests

paper:
	$(BIN)/snakemake --cores 8 --resources gpu=1

dry-run:
	$(BIN)/snakemake -n

clean-demo:
	rm -rf results/demo
