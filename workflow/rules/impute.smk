# impute: one job per (dataset, mask, seed, method, variant); resources come from method.yaml.


rule impute:
    input:
        data=rules.preprocess.output.h5ad,
        mask=rules.mask.output[0],
    output:
        imputed=f"{R}/{{dataset}}/{{mask}}/seed{{seed}}/{{method}}/{{variant}}/imputed.npz",
        run=f"{R}/{{dataset}}/{{mask}}/seed{{seed}}/{{method}}/{{variant}}/run.json",
    params:
        params=lambda wc: variant_of(wc).params,
        device=DEVICE,
        methods_dir=config.get("methods_dir"),
    threads: lambda wc: int(variant_of(wc).resources.get("threads", 1))
    resources:
        gpu=lambda wc: int(variant_of(wc).resources.get("gpu", 0)),
        mem_mb=lambda wc: int(variant_of(wc).resources.get("mem_mb", 2000)),
    conda:
        "../../envs/core.yaml"
    script:
        "../scripts/impute.py"


rule evaluate:
    input:
        data=rules.preprocess.output.h5ad,
        mask=rules.mask.output[0],
        imputed=rules.impute.output.imputed,
        run=rules.impute.output.run,
    output:
        metrics=f"{R}/{{dataset}}/{{mask}}/seed{{seed}}/{{method}}/{{variant}}/metrics.json",
        per_gene=f"{R}/{{dataset}}/{{mask}}/seed{{seed}}/{{method}}/{{variant}}/per_gene.csv",
    script:
        "../scripts/evaluate.py"
