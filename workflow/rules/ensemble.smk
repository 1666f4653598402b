# Batched ensembles (`ensemble: true` in a method block; README "Batched ensembles"): per (dataset, mask, seed),
# one job trains the method's variants that share every parameter shape (method.yaml's `ensemble` rule,
# stbench/run/ensembles.py) as one model, in the same sandbox as an impute job and from the same truth-free task
# file. It may write only its members' checkpoint folders, where it leaves each member's finished training;
# each member's impute job waits for it, finds that checkpoint, trains no step and only samples, and writes
# its own row. Its output is its record (the parent's); a failed ensemble is recorded, and its members' impute
# jobs then train on their own.
rule ensemble:
    wildcard_constraints:
        group=r"[^/]+",
    input:
        task=rules.task.output[0],
    output:
        f"{R}/ensembles/{{dataset}}/{{mask}}/seed{{seed}}/{{method}}/{{group}}.json",
    params:
        members=lambda wc: {v: VMAP[(wc.method, v)].params for v in ensemble_members(wc)},
        checkpoint_dirs=lambda wc: {v: checkpoint_dir(wc.dataset, wc.mask, wc.seed, wc.method, v)
                                    for v in ensemble_members(wc)},
        hide=truth_folders,
        device=lambda wc: cfg.job_device(config["device"], _member(wc).resources),
        gpu_slots=lambda wc: SLOTS * int(_member(wc).resources.get("gpu", 0) or 0),
        slots_per_device=SLOTS,
        isolation=config["isolation"],
        methods_dir=config.get("methods_dir"),
        timeout_s=_ensemble_timeout,
    threads: lambda wc: int(_member(wc).resources["threads"])
    priority: lambda wc: _member(wc).priority + 1  # before the members' own jobs and the other work
    resources:
        gpu=_ensemble_gpu,
        mem_mb=lambda wc: int(_member(wc).resources["mem_mb"]),
    log:
        f"{LOGS}/ensemble/{{dataset}}_{{mask}}_seed{{seed}}_{{method}}_{{group}}.log",
    conda:
        lambda wc: _member(wc).env
    container:
        lambda wc: _member(wc).container
    script:
        "../scripts/ensemble.py"
