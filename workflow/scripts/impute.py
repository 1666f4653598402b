"""Snakemake entry point: run one method variant on one masked dataset (truth hidden)."""
import torch  # noqa: F401  (imported first so the runner can record CUDA memory)

from stbench.steps import impute_step

torch.set_num_threads(max(1, int(snakemake.threads)))
impute_step(snakemake.input.data, snakemake.input.mask, snakemake.wildcards.method, snakemake.wildcards.variant,
            snakemake.params.params, snakemake.output.run.rsplit("/", 1)[0], seed=int(snakemake.wildcards.seed),
            device=snakemake.params.device, dataset=snakemake.wildcards.dataset,
            methods_dir=snakemake.params.methods_dir)
