# prepare (raw -> contract AnnData), preprocess (paper App. E), mask (one per dataset/mask/seed).


def prepare_inputs(wc):
    spec = cfg.dataset_spec(config, wc.dataset)
    if "recipe" in spec:
        return [f"{CACHE}/{spec['recipe']}/{spec.get('source', 'authors')}/manifest.json"]
    files = [spec[k] for k in ("path", "counts", "locations") if k in spec]
    ref = spec.get("reference")
    if ref:
        files.append(ref["path"] if isinstance(ref, dict) else ref)
    return files


rule prepare:
    input:
        prepare_inputs,
    output:
        h5ad=f"{R}/{{dataset}}/prepared.h5ad",
        report=f"{R}/{{dataset}}/prepare.json",
    params:
        spec=lambda wc: cfg.dataset_spec(config, wc.dataset),
        cache=CACHE,
    resources:
        mem_mb=8000,
    script:
        "../scripts/prepare.py"


rule preprocess:
    input:
        rules.prepare.output.h5ad,
    output:
        h5ad=f"{R}/{{dataset}}/preprocessed.h5ad",
        qc=f"{R}/{{dataset}}/qc.json",
    params:
        cfg=lambda wc: cfg.preprocess_config(config, wc.dataset),
    resources:
        mem_mb=8000,
    script:
        "../scripts/preprocess.py"


rule mask:
    input:
        rules.preprocess.output.h5ad,
    output:
        f"{R}/{{dataset}}/masks/{{mask}}/seed{{seed}}.npz",
    params:
        spec=lambda wc: MASKS[wc.mask],
    script:
        "../scripts/mask.py"
