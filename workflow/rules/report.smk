# tables (Table 1-3 with the paper beside them) and figures (Figure 2 heatmaps, Figure 3 curve).


rule tables:
    input:
        metric_files(),
    output:
        table_files() + ([f"{R}/tables/figure3.csv"] if HAS_FIGURE3 else []) + ([f"{R}/tables/rank_stability.csv"] if SWEEP else []),
    params:
        variants=[{"method": v.method, "name": v.name, "label": v.label, "table": v.table, "figure": v.figure, "x": v.x}
                  for v in VARIANTS],
        protocols=cfg.protocols(config),
        sweeps=SWEEP,
        out_dir=f"{R}/tables",
        paper_dir=str(Path(workflow.basedir) / "results" / "paper"),
    log:
        f"{LOGS}/tables.log",
    script:
        "../scripts/tables.py"


def heatmap_inputs(wc):
    seed = SEEDS[0]
    return {v.label: f"{run_dir(wc.dataset, wc.mask, seed, v.method, v.name)}/imputed.npz"
            for v in VARIANTS if v.table == "table1"}


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
    script:
        "../scripts/heatmap.py"


rule figure3:
    input:
        f"{R}/tables/figure3.csv",
    output:
        f"{R}/figures/figure3.png",
    log:
        f"{LOGS}/figure3.log",
    script:
        "../scripts/figure3.py"


rule rank_stability:
    input:
        f"{R}/tables/rank_stability.csv",
    output:
        f"{R}/figures/rank_stability_{{base}}.png",
    log:
        f"{LOGS}/rank_stability/{{base}}.log",
    script:
        "../scripts/rank_stability.py"
