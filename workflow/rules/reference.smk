# The reference-augmentation protocol (stbench/reference_generators/protocol.py): each setting of the
# config's `reference_settings` gives one reference per (dataset, setting, seed), written once here and read
# by every reference method of that dataset and seed. The step reads the prepared scRNA-seq reference only
# (reference.h5ad beside prepared.h5ad), never the spatial data or a mask.
from stbench.reference_generators.protocol import parse_settings

REF_SETTINGS = parse_settings(config.get("reference_settings"))
REF_VARIANTS = [v for v in VARIANTS if v.reference_setting]


def _ref_setting(wc):
    return REF_SETTINGS.get(variant_of(wc).reference_setting) if variant_of(wc).reference_setting else None


def reference_input(wc):
    """The impute job's reference-transform report (so the transform runs first); none for the prepared reference."""
    s = _ref_setting(wc)
    return [] if s is None or s.identity else f"{R}/{wc.dataset}/references/{s.name}/seed{wc.seed}.json"


def reference_file(wc):
    """The reference file an impute job hands to its method: the setting's, else the prepared one."""
    s = _ref_setting(wc)
    if s is None or s.identity:
        return f"{R}/{wc.dataset}/reference.h5ad"
    return f"{R}/{wc.dataset}/references/{s.name}/seed{wc.seed}.h5ad"


def reference_targets():
    """The augmentation table and figure, when the config has reference settings and a reference method."""
    if not REF_VARIANTS:
        return []
    return [f"{R}/tables/reference_augmentation.{x}" for x in ("csv", "md")] + [f"{R}/figures/reference_augmentation.png"]


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
    run:
        from stbench.atomic import write_csv, write_text
        from stbench.reference_generators.report import augmentation_figure, augmentation_table, to_markdown

        vs = [{"method": v.method, "name": v.name, "label": v.label, "table": v.table,
               "reference_setting": v.reference_setting} for v in REF_VARIANTS]
        df = augmentation_table(list(input), vs, REF_SETTINGS)
        write_csv(output.csv, df, index=False)
        write_text(output.md, "# Reference methods under each reference setting\n\n" + to_markdown(df))
        augmentation_figure(df, output.png)
