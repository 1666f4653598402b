"""Snakemake entry point: the summary across datasets and metrics (mean rank per method), table and figure."""
from stbench.results.report_figures import summary_figure
from stbench.results.tables import write_rank_summary
from stbench.workflow_log import logged

with logged(snakemake.log[0]):
    write_rank_summary(snakemake.input[0], snakemake.params.out_dir)
    summary_figure(snakemake.output.ranks, snakemake.output.csv, snakemake.output.png)
