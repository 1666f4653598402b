# tables (Table 1-3 with the paper beside them) and figures (Figure 2 heatmaps, Figure 3 curve); the summary across
# datasets (mean rank), provenance.json, the cost table and the run's report further below.


rule tables:
    input:
        metrics=metric_files(),
        qc=[f"{R}/{d}/qc.json" for d in DATASETS],
    output:
        table_files() + ([f"{R}/tables/figure3.csv"] if HAS_FIGURE3 else []) + ([f"{R}/tables/rank_stability.csv"] if SWEEP else []),
    params:
        variants=[{"method": v.method, "name": v.name, "label": v.label, "table": v.table, "figure": v.figure, "x": v.x}
                  for v in VARIANTS],
        protocols=cfg.protocols(config),
        qc={d: f"{R}/{d}/qc.json" for d in DATASETS},
        sweeps=SWEEP,
        metric_definitions=config.get("metric_definitions", "spatialbenchmarking"),
        out_dir=lambda wc, output: str(Path(output[0]).parent),
        paper_dir=str(Path(workflow.basedir) / "results" / "paper"),
        spadit_paper_dir=str(Path(workflow.basedir) / "results" / "paper-spadit"),
    log:
        f"{LOGS}/tables.log",
    conda:
        CORE_ENV
    script:
        "../scripts/tables.py"


rule heatmap:
    input:
        data=rules.preprocess.output.h5ad,
        mask=f"{R}/{{dataset}}/masks/{{mask}}/seed{SEEDS[0]}.npz",
        task=f"{R}/{{dataset}}/tasks/{{mask}}/seed{SEEDS[0]}.npz",
        imputed=lambda wc: list(heatmap_inputs(wc).values()),
    output:
        f"{R}/figures/heatmap_{{dataset}}_{{mask}}.png",
    params:
        labels=lambda wc: list(heatmap_inputs(wc)),
    log:
        f"{LOGS}/heatmap/{{dataset}}_{{mask}}.log",
    conda:
        CORE_ENV
    script:
        "../scripts/heatmap.py"


rule figure3:
    input:
        f"{R}/tables/figure3.csv",
    output:
        f"{R}/figures/figure3.png",
    log:
        f"{LOGS}/figure3.log",
    conda:
        CORE_ENV
    script:
        "../scripts/figure3.py"


rule figure4:
    input:
        data=rules.preprocess.output.h5ad,
        mask=f"{R}/{{dataset}}/masks/{{mask}}/seed{SEEDS[0]}.npz",
        task=f"{R}/{{dataset}}/tasks/{{mask}}/seed{SEEDS[0]}.npz",
        imputed=lambda wc: list(figure4_inputs(wc).values()),
    output:
        f"{R}/figures/figure4_{{dataset}}_{{mask}}.png",
    params:
        labels=lambda wc: list(figure4_inputs(wc)),
    log:
        f"{LOGS}/figure4/{{dataset}}_{{mask}}.log",
    conda:
        CORE_ENV
    script:
        "../scripts/figure4.py"


rule rank_stability:
    input:
        f"{R}/tables/rank_stability.csv",
    output:
        f"{R}/figures/rank_stability_{{base}}.png",
    log:
        f"{LOGS}/rank_stability/{{base}}.log",
    conda:
        CORE_ENV
    script:
        "../scripts/rank_stability.py"


# cost table, spatial maps, mask-ratio robustness figure and the run's one-page HTML report (stbench/results/report.py).
rule cost:
    input:
        run_files(),
    output:
        f"{R}/tables/cost.csv",
        f"{R}/tables/cost.md",
        f"{R}/tables/cost_totals.csv",
    params:
        variants=[{"method": v.method, "name": v.name, "label": v.label} for v in VARIANTS],
        out_dir=lambda wc, output: str(Path(output[0]).parent),
    log:
        f"{LOGS}/cost.log",
    conda:
        CORE_ENV
    script:
        "../scripts/cost.py"


rule failures:
    input:
        metrics=metric_files(),
        runs=run_files(),
    output:
        csv=f"{R}/tables/failures.csv",
        md=f"{R}/tables/failures.md",
    log:
        f"{LOGS}/failures.log",
    conda:
        CORE_ENV
    script:
        "../scripts/failures.py"


rule spatial:
    input:
        data=rules.preprocess.output.h5ad,
        mask=f"{R}/{{dataset}}/masks/{{mask}}/seed{SEEDS[0]}.npz",
        task=f"{R}/{{dataset}}/tasks/{{mask}}/seed{SEEDS[0]}.npz",
        imputed=lambda wc: list(heatmap_inputs(wc).values()),
    output:
        f"{R}/figures/spatial_{{dataset}}_{{mask}}.png",
    params:
        labels=lambda wc: list(heatmap_inputs(wc)),
    log:
        f"{LOGS}/spatial/{{dataset}}_{{mask}}.log",
    conda:
        CORE_ENV
    script:
        "../scripts/spatial.py"


rule mask_ratio:
    input:
        f"{R}/tables/table1_long.csv",
    output:
        f"{R}/figures/mask_ratio.png",
    log:
        f"{LOGS}/mask_ratio.log",
    conda:
        CORE_ENV
    script:
        "../scripts/mask_ratio.py"


rule summary:
    input:
        f"{R}/tables/table1_long.csv",
    output:
        csv=f"{R}/tables/summary.csv",
        ranks=f"{R}/tables/summary_ranks.csv",
        md=f"{R}/tables/summary.md",
        png=f"{R}/figures/summary.png",
    params:
        out_dir=lambda wc, output: str(Path(output.csv).parent),
    log:
        f"{LOGS}/summary.log",
    conda:
        CORE_ENV
    script:
        "../scripts/summary.py"


rule provenance:
    """What made the tables (stbench/results/provenance.py). The command line of the snakemake invocation is read from the
    process tree (stbench.results.provenance.invocation), not passed as a parameter: a parameter would rerun the report on
    every new command line."""
    input:
        tables=table_files(),
        runs=run_files(),
        data=[f"{R}/{d}/{f}" for d in DATASETS for f in ("prepare.json", "prepared.h5ad", "preprocessed.h5ad")],
    output:
        f"{R}/tables/provenance.json",
    params:
        run=RUN,
        config=dict(config),
        config_files=list(workflow.configfiles),
        repo_dir=workflow.basedir,
        protocols=cfg.protocols(config),
        datasets={d: {"prepare": f"{R}/{d}/prepare.json", "prepared": f"{R}/{d}/prepared.h5ad",
                      "preprocessed": f"{R}/{d}/preprocessed.h5ad"} for d in DATASETS},
    log:
        f"{LOGS}/provenance.log",
    conda:
        CORE_ENV
    script:
        "../scripts/provenance.py"


rule report:
    input:
        tables=table_files() + [f"{R}/tables/cost.csv", f"{R}/tables/cost_totals.csv", f"{R}/tables/failures.csv",
                                f"{R}/tables/summary.csv", f"{R}/tables/provenance.json"],
        summary=f"{R}/figures/summary.png",
        metrics=metric_files(),
        heatmaps=heatmap_files(),
        figure3=[f"{R}/figures/figure3.png"] if HAS_FIGURE3 else [],
        figure4=figure4_files(),
        mask_ratio=[f"{R}/figures/mask_ratio.png"] if HAS_MASK_RATIO else [],
        rank_stability=[f"{R}/figures/rank_stability_{b}.png" for b in sorted(set(SWEEP.values()))],
        spatial=spatial_files(),
        augmentation=reference_targets(),  # the reference-augmentation table and figure (reference.smk), when configured
        qc=[f"{R}/{d}/qc.json" for d in DATASETS],
        prepare=[f"{R}/{d}/prepare.json" for d in DATASETS],
    output:
        f"{R}/report.html",
    params:
        run=RUN,
        protocols=cfg.protocols(config),
        datasets={d: {"spec": cfg.dataset_spec(config, d), "qc": f"{R}/{d}/qc.json", "prepare": f"{R}/{d}/prepare.json"}
                  for d in DATASETS},
        tables_dir=lambda wc, input: str(Path(input.tables[0]).parent),  # {R}/tables
        figures_dir=lambda wc, input: str(Path(input.summary).parent),  # {R}/figures
        sweeps=SWEEP,
        ratios=RATIOS,
        metric_definitions=config.get("metric_definitions", "spatialbenchmarking"),
    log:
        f"{LOGS}/report.log",
    conda:
        CORE_ENV
    script:
        "../scripts/report.py"
