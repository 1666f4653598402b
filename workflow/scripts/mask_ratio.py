"""Snakemake entry point: the mask-ratio robustness figure (PCC and RMSE against the share held out)."""
from stbench.results.report_figures import mask_ratio_figure
from stbench.workflow_log import logged

with logged(snakemake.log[0]):
    if not mask_ratio_figure(snakemake.input[0], snakemake.output[0]):
        raise ValueError("no dataset and mask strategy has two or more mask ratios with Table 1 results")
