"""Snakemake entry point: the run's one-page, self-contained HTML report (results/<run>/report.html)."""
from pathlib import Path

from stbench.results.report import build_report
from stbench.results.report_figures import SPATIAL_RULE
from stbench.workflow_log import logged

with logged(snakemake.log[0]):
    p = snakemake.params
    notes = []
    if p.sweeps:
        notes.append("Figure 2 heatmaps and spatial maps are not drawn for the datasets of a protocol sweep "
                     f"({', '.join(sorted(p.sweeps))}); their rank-stability figure stands for them.")
    if len(p.ratios) < 2:
        notes.append(f"No mask-ratio robustness figure: the config lists one mask ratio ({', '.join(map(str, p.ratios))}); "
                     "list two or more under `masks:` to get it.")
    build_report(snakemake.output[0], run=p.run, protocols=p.protocols, tables_dir=p.tables_dir,
                 metric_files=snakemake.input.metrics,
                 figures={"heatmaps": snakemake.input.heatmaps, "figure3": snakemake.input.figure3,
                          "figure4": sorted(Path(p.figures_dir).glob("figure4*.png")),  # drawn outside the workflow, when present
                          "mask_ratio": snakemake.input.mask_ratio, "rank_stability": snakemake.input.rank_stability,
                          "spatial": snakemake.input.spatial, "summary": [snakemake.input.summary],
                          "reference_augmentation": [f for f in snakemake.input.augmentation if f.endswith(".png")]},
                 datasets=p.datasets, spatial_rule=SPATIAL_RULE, notes=notes,
                 metric_definitions=p.metric_definitions)
    print("wrote", snakemake.output[0])
