"""Snakemake entry point: download and verify one recipe source (or its reference files), writing its manifest."""
from stbench.data.datasets import fetch
from stbench.workflow_log import logged

with logged(snakemake.log[0]):
    fetch(snakemake.wildcards.recipe, snakemake.wildcards.source, snakemake.params.cache,
          reference_only=snakemake.output[0].endswith("manifest_reference.json"))
