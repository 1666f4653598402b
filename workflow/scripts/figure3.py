"""Snakemake entry point: Figure 3, metrics against stMCDI's training mask ratio."""
from stbench.results.figures import ratio_curve
from stbench.workflow_log import logged

with logged(snakemake.log[0]):
    ratio_curve(snakemake.input[0], snakemake.output[0])
