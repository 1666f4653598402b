"""Snakemake entry point: run one method variant on a truth-free task file, in its sandboxed process.

Nothing of this process (the `snakemake` object, paths, environment) reaches the method: it runs in
a child process started by stbench.run.sandbox with a copy of the task file.
"""
from pathlib import Path

from stbench.steps import impute_step
from stbench.workflow_log import logged

with logged(snakemake.log[0]):
    ref = Path(snakemake.params.reference)
    impute_step(snakemake.input.task, snakemake.wildcards.method, snakemake.wildcards.variant, snakemake.params.params,
                Path(snakemake.output.run).parent, reference=ref if ref.exists() else None,
                device=snakemake.params.device, threads=int(snakemake.threads), hide=snakemake.params.hide,
                isolation=snakemake.params.isolation, methods_dir=snakemake.params.methods_dir,
                log_file=snakemake.log[0], timeout_s=snakemake.params.timeout_s,
                mem_mb=int(snakemake.resources.mem_mb),
                checkpoint_dir=snakemake.params.checkpoint_dir,
                gpu_slots=int(snakemake.params.gpu_slots), slots_per_device=int(snakemake.params.slots_per_device))
