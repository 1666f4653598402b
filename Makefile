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
	@start=$$(date +%s); \
	$(BIN)/snakemake --cores $(CORES) --configfile workflow/demo.yaml && \
	mid=$$(date +%s) && \
	$(BIN)/snakemake --cores $(CORES) --configfile workflow/demo_ablations.yaml && \
	end=$$(date +%s) && \
	echo "Demo part 1 (Table 1): $$((mid - start)) s -> results/demo/ (report.html, tables/, figures/)" && \
	echo "Demo part 2 (ablations: Tables 2-3, Figures 3-4): $$((end - mid)) s -> results/demo-ablations/"

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
	rm -rf results/demo results/demo-ablations
