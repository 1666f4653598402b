"""Snakemake entry point: download and verify one recipe source, writing its manifest."""
import logging

from stbench.datasets import fetch

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
fetch(snakemake.wildcards.recipe, snakemake.wildcards.source, snakemake.params.cache)
