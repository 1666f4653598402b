"""Snakemake entry point: the run's summary of failed, suspect and skipped rows (tables/failures.csv, .md)."""
from stbench.results.failures import write_summary
from stbench.workflow_log import logged

with logged(snakemake.log[0]):
    rows = write_summary(snakemake.input.metrics, snakemake.output.csv, snakemake.output.md)
    print(f"{len(rows)} failed, suspect or skipped run(s)")
