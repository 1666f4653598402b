"""Snakemake entry point: the cost table (wall time, peak RSS, peak GPU memory, device) from every run.json."""
from stbench.results.cost_table import write_cost
from stbench.workflow_log import logged

with logged(snakemake.log[0]):
    write_cost(snakemake.input, snakemake.params.variants, snakemake.params.out_dir)
