# impute: one job per (dataset, mask, seed, method, variant), in the method's own environment
# (`env:` / `container:` of method.yaml with --use-conda / --use-apptainer) and its own sandboxed
# process (stbench/run/sandbox.py). Its only data input is the truth-free task file (and, for a member of a
# batched ensemble, the record of the ensemble job that left its trained model in its checkpoint folder).


include: "ensemble.smk"


rule impute:
    input:
        task=rules.task.output[0],
        ensemble=ensemble_record,
        reference=reference_input,  # a reference setting's transformed reference (workflow/rules/reference.smk)
    output:
        imputed=f"{R}/{{dataset}}/{{mask}}/seed{{seed}}/{{method}}/{{variant}}/imputed.npz",
        run=f"{R}/{{dataset}}/{{mask}}/seed{{seed}}/{{method}}/{{variant}}/run.json",
    params:
        params=lambda wc: variant_of(wc).params,
        reference=reference_file,
        hide=truth_folders,
        device=lambda wc: cfg.job_device(config["device"], variant_of(wc).resources),
        gpu_slots=job_slots,
        slots_per_device=SLOTS,
        isolation=config["isolation"],
        methods_dir=config.get("methods_dir"),
        timeout_s=lambda wc: variant_of(wc).timeout_s,
        # training checkpoints (model state only), outside the sandbox: a killed job's rerun resumes from them
        checkpoint_dir=lambda wc: checkpoint_dir(wc.dataset, wc.mask, wc.seed, wc.method, wc.variant),
    threads: lambda wc: int(variant_of(wc).resources["threads"])
    priority: lambda wc: variant_of(wc).priority
    resources:
        gpu=gpu_request,
        mem_mb=lambda wc: int(variant_of(wc).resources["mem_mb"]),
    log:
        f"{LOGS}/impute/{{dataset}}_{{mask}}_seed{{seed}}_{{method}}_{{variant}}.log",
    conda:
        lambda wc: variant_of(wc).env
    container:
        lambda wc: variant_of(wc).container
    script:
        "../scripts/impute.py"


rule evaluate:
    input:
        data=rules.preprocess.output.h5ad,
        mask=rules.mask.output[0],
        task=rules.task.output[0],
        imputed=rules.impute.output.imputed,
        run=rules.impute.output.run,
    output:
        metrics=f"{R}/{{dataset}}/{{mask}}/seed{{seed}}/{{method}}/{{variant}}/metrics.json",
        per_gene=f"{R}/{{dataset}}/{{mask}}/seed{{seed}}/{{method}}/{{variant}}/per_gene.csv",
    log:
        f"{LOGS}/evaluate/{{dataset}}_{{mask}}_seed{{seed}}_{{method}}_{{variant}}.log",
    conda:
        CORE_ENV
    script:
        "../scripts/evaluate.py"
