"""Snakemake entry point: one reference setting's reference for one dataset and seed (stbench.data.reference_generators)."""
from stbench.data.reference_generators.protocol import reference_transform_step
from stbench.workflow_log import logged

with logged(snakemake.log[0]):
    dev = snakemake.params.device
    if dev == "auto":
        import torch

        dev = "cuda" if torch.cuda.is_available() else "cpu"
    rep = reference_transform_step(snakemake.input.prepared, snakemake.params.setting, int(snakemake.wildcards.seed),
                                   snakemake.output[0], device=dev, threads=int(snakemake.threads))
    print(f"reference setting {snakemake.wildcards.setting}: {rep.get('n_cells', 'no reference')} cells, "
          f"{rep.get('wall_time_s', 0)} s")
