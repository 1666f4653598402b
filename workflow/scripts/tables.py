"""Snakemake entry point: Table 1 (long, paper layout, Markdown), Tables 2-3, Figure 3 data."""
from stbench.results.tables import write_tables
from stbench.workflow_log import logged

with logged(snakemake.log[0]):
    write_tables(snakemake.input.metrics, snakemake.params.variants, snakemake.params.protocols, snakemake.params.out_dir,
                 snakemake.params.paper_dir, sweeps=snakemake.params.sweeps, qc=snakemake.params.qc,
                 metric_definitions=snakemake.params.metric_definitions,
                 spadit_paper_dir=snakemake.params.spadit_paper_dir)
