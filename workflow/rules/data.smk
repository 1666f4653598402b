# prepare (raw -> contract AnnData), preprocess (paper App. E), mask (one per dataset/mask/seed),
# task (the truth-free file every method run reads; the only link between the truth and the methods).


rule prepare:
    input:
        lambda wc: dataset_inputs(cfg.dataset_spec(config, wc.dataset), CACHE),
    output:
        h5ad=f"{R}/{{dataset}}/prepared.h5ad",
        report=f"{R}/{{dataset}}/prepare.json",
    params:
        spec=lambda wc: cfg.dataset_spec(config, wc.dataset),
        cache=CACHE,
    resources:
        mem_mb=8000,
    log:
        f"{LOGS}/prepare/{{dataset}}.log",
    conda:
        CORE_ENV
    script:
        "../scripts/prepare.py"


rule preprocess:
    input:
        rules.prepare.output.h5ad,
    output:
        h5ad=f"{R}/{{dataset}}/preprocessed.h5ad",
        qc=f"{R}/{{dataset}}/qc.json",
    params:
        options=lambda wc: cfg.preprocess_config(config, wc.dataset),
    resources:
        mem_mb=8000,
    log:
        f"{LOGS}/preprocess/{{dataset}}.log",
    conda:
        CORE_ENV
    script:
        "../scripts/preprocess.py"


rule mask:
    input:
        rules.preprocess.output.h5ad,
    output:
        f"{R}/{{dataset}}/masks/{{mask}}/seed{{seed}}.npz",
    params:
        spec=lambda wc: MASKS[wc.mask],
    log:
        f"{LOGS}/mask/{{dataset}}_{{mask}}_seed{{seed}}.log",
    conda:
        CORE_ENV
    script:
        "../scripts/mask.py"


rule task:
    input:
        data=rules.preprocess.output.h5ad,
        mask=rules.mask.output[0],
    output:
        f"{R}/{{dataset}}/tasks/{{mask}}/seed{{seed}}.npz",
    params:
        spec=lambda wc: cfg.task_spec(config, wc.dataset),  # scale, library_size: the task step's (stbench.data.task.TaskSpec)
    log:
        f"{LOGS}/task/{{dataset}}_{{mask}}_seed{{seed}}.log",
    conda:
        CORE_ENV
    script:
        "../scripts/task.py"
