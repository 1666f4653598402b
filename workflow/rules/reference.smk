# The reference-augmentation protocol (stbench/data/reference_generators/protocol.py): each setting of the
# config's `reference_settings` gives one reference per (dataset, setting, seed), written once here and read
# by every reference method of that dataset and seed. The step reads the prepared scRNA-seq reference only
# (reference.h5ad beside prepared.h5ad), never the spatial data or a mask.
rule reference_transform:
    input:
        prepared=rules.prepare.output.h5ad,
    output:
        f"{R}/{{dataset}}/references/{{setting}}/seed{{seed}}.json",
    params:
        setting=lambda wc: REF_SETTINGS[wc.setting],
        device=lambda wc: config["device"],
    threads: 1  # torch on one thread: on a shared 2-core machine a second thread made the fit many times slower
    resources:
        mem_mb=8000,
    log:
        f"{LOGS}/reference/{{dataset}}_{{setting}}_seed{{seed}}.log",
    conda:
        CORE_ENV
    script:
        "../scripts/reference_transform.py"


rule reference_augmentation:
    input:
        [f"{run_dir(d, m, s, v.method, v.name)}/metrics.json" for d in DATASETS for m in MASKS for s in SEEDS
         for v in REF_VARIANTS],
    output:
        csv=f"{R}/tables/reference_augmentation.csv",
        md=f"{R}/tables/reference_augmentation.md",
        png=f"{R}/figures/reference_augmentation.png",
    log:
        f"{LOGS}/reference_augmentation.log",
    params:
        variants=[{"method": v.method, "name": v.name, "label": v.label, "table": v.table,
                   "reference_setting": v.reference_setting} for v in REF_VARIANTS],
        settings=REF_SETTINGS,
    conda:
        CORE_ENV
    script:
        "../scripts/reference_augmentation.py"
