"""Snakemake entry point: provenance.json, what made the tables (stbench/results/provenance.py)."""
from stbench.results.provenance import write_provenance
from stbench.workflow_log import logged

with logged(snakemake.log[0]):
    p = snakemake.params
    write_provenance(snakemake.output[0], run=p.run, config=p.config, config_files=p.config_files, command_line=None,
                     repo_dir=p.repo_dir, protocols=p.protocols, datasets=p.datasets, run_files=snakemake.input.runs)
    print("wrote", snakemake.output[0])
