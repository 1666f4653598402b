# Batched ensembles (`ensemble: true` in a method block; README "Batched ensembles"): per (dataset, mask, seed),
# one job trains the method's variants that share every parameter shape (method.yaml's `ensemble` rule,
# stbench/ensembles.py) as one model, in the same sandbox as an impute job and from the same truth-free task
# file. It may write only its members' checkpoint folders, where it leaves each member's finished training;
# each member's impute job waits for it, finds that checkpoint, trains no step and only samples, and writes
# its own row. Its output is its record (the parent's); a failed ensemble is recorded, and its members' impute
# jobs then train on their own.
from stbench.config import ensemble_groups

ENSEMBLES = ensemble_groups(config, VARIANTS)  # {(method, group): [variant, ...]}
ENSEMBLE_OF = {(m, v): g for (m, g), vs in ENSEMBLES.items() for v in vs}


def checkpoint_dir(dataset, mask, seed, method, variant):
    """A job's training checkpoints (model state only), outside the sandbox: a killed job's rerun resumes from them."""
    return f"{R}/checkpoints/{dataset}/{mask}/seed{seed}/{method}/{variant}"


def ensemble_members(wc):
    key = (wc.method, wc.group)
    if key not in ENSEMBLES:
        raise ValueError(f"no ensemble '{wc.group}' of method '{wc.method}' in the config")
    return ENSEMBLES[key]


def ensemble_record(wc):
    """An impute job's ensemble input: the record of the job that trains its variant, or nothing."""
    g = ENSEMBLE_OF.get((wc.method, wc.variant))
    return [] if g is None else f"{R}/ensembles/{wc.dataset}/{wc.mask}/seed{wc.seed}/{wc.method}/{g}.json"


def _member(wc):
    return VMAP[(wc.method, ensemble_members(wc)[0])]


def _ensemble_timeout(wc):
    """The members' limits added up (the ensemble trains them all; it never samples), or the default."""
    t = _member(wc).timeout_s
    return None if t is None else t * len(ensemble_members(wc))


def _ensemble_gpu(wc):
    """A whole device: K members in one step fill it (the H200 profile: kernels busy 21% of a one-model step)."""
    res = _member(wc).resources
    gpu = int(res.get("gpu", 0) or 0)
    return gpu * SLOTS if GPU_SHARING else gpu


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
