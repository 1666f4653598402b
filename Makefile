# make demo:  create .venv, install the project, run the demo end to end in three parts (CPU; times printed)
# make sweep: the protocol sweep on the demo section (rank stability)
# make test:  the test suite
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
	@t0=$$(date +%s); \
	$(BIN)/snakemake --cores $(CORES) --configfile workflow/demo.yaml && t1=$$(date +%s) && \
	$(BIN)/snakemake --cores $(CORES) --configfile workflow/demo_ablations.yaml && t2=$$(date +%s) && \
	$(BIN)/snakemake --cores $(CORES) --configfile workflow/demo.yaml workflow/demo_countsplit.yaml && t3=$$(date +%s) && \
	$(BIN)/snakemake --cores $(CORES) --configfile workflow/demo_spadit.yaml && t4=$$(date +%s) && \
	echo "Demo part 1, Table 1: $$((t1 - t0)) s -> results/demo/report.html" && \
	echo "Demo part 2, stMCDI ablations (Tables 2-3, Figures 3-4): $$((t2 - t1)) s -> results/demo-ablations/report.html" && \
	echo "Demo part 3, Table 1 under count splitting: $$((t3 - t2)) s -> results/demo-countsplit/report.html" && \
	echo "Demo part 4, SpaDiT's reference baselines and metric definitions: $$((t4 - t3)) s -> results/demo-spadit/report.html"

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
	rm -rf results/demo results/demo-ablations results/demo-countsplit
