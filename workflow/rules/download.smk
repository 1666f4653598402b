# download: fetch and verify one recipe source (stbench/data/datasets/recipes/<recipe>.yaml) into the cache.
# The only rule that touches the network; `prepare` reads the manifest and never downloads.
# A dataset block `{recipe: MOB, source: authors}` needs {cache_dir}/MOB/authors/manifest.json, and
# its scRNA-seq reference, when it comes from another source (the recipe's `reference_source`, or the
# block's), {cache_dir}/MOB/geo/manifest_reference.json: that source's reference files only.
from stbench.data.datasets.recipes import RECIPE_DIR


rule download:
    input:
        recipe=str(RECIPE_DIR / "{recipe}.yaml"),  # a recipe edit re-runs the (cached, verified) fetch
    output:
        f"{CACHE}/{{recipe}}/{{source}}/manifest.json",
    params:
        cache=lambda wc, output: str(Path(output[0]).parents[2]),  # {cache_dir}/{recipe}/{source}/manifest.json
    wildcard_constraints:
        recipe=r"[A-Za-z0-9_]+",
        source=r"[A-Za-z0-9_]+",
    localrule: True
    retries: 2
    log:
        f"{CACHE}/logs/{{recipe}}_{{source}}.log",
    conda:
        CORE_ENV
    script:
        "../scripts/download.py"


use rule download as download_reference with:
    output:
        f"{CACHE}/{{recipe}}/{{source}}/manifest_reference.json",
    log:
        f"{CACHE}/logs/{{recipe}}_{{source}}_reference.log",
