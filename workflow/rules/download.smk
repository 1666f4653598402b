# download: fetch and verify one recipe source (stbench/datasets/recipes/<recipe>.yaml) into the cache.
# The only rule that touches the network; `prepare` reads the manifest and never downloads.
# A dataset block `{recipe: MOB, source: authors}` needs {cache_dir}/MOB/authors/manifest.json.
from stbench.datasets.recipes import RECIPE_DIR


rule download:
    input:
        recipe=str(RECIPE_DIR / "{recipe}.yaml"),  # a recipe edit re-runs the (cached, verified) fetch
    output:
        f"{CACHE}/{{recipe}}/{{source}}/manifest.json",
    params:
        cache=CACHE,
    wildcard_constraints:
        recipe=r"[A-Za-z0-9_]+",
        source=r"[A-Za-z0-9_]+",
    localrule: True
    retries: 2
    log:
        f"{CACHE}/logs/{{recipe}}_{{source}}.log",
    script:
        "../scripts/download.py"
