"""Snakemake entry point: train one ensemble of a method's variants in its sandboxed process (stbench.steps).

Nothing of this process reaches the method: it runs in a child process started by stbench.run.sandbox with a copy
of the truth-free task file, and may write only its members' checkpoint folders.
"""
from stbench.steps import ensemble_step
from stbench.workflow_log import logged

with logged(snakemake.log[0]):
    ensemble_step(snakemake.input.task, snakemake.wildcards.method, dict(snakemake.params.members),
                  dict(snakemake.params.checkpoint_dirs), snakemake.output[0], device=snakemake.params.device,
                  threads=int(snakemake.threads), hide=snakemake.params.hide, isolation=snakemake.params.isolation,
                  methods_dir=snakemake.params.methods_dir, log_file=snakemake.log[0],
                  timeout_s=snakemake.params.timeout_s, mem_mb=int(snakemake.resources.mem_mb),
                  gpu_slots=int(snakemake.params.gpu_slots), slots_per_device=int(snakemake.params.slots_per_device))
