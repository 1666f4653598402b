# download: fetch and verify one recipe source (stbench/datasets/recipes/<recipe>.yaml) into the cache.
# The only rule that touches the network; `prepare` reads the manifest and never downloads.
# A dataset block `{recipe: MOB, source: authors}` needs {cache_dir}/MOB/authors/manifest.json.
from stbench.datasets.recipes import RECIPE_DIR

DOWNLOAD_CACHE = config.get("cache_dir", "resources/downloads")


rule download:
    input:
        recipe=str(RECIPE_DIR / "{recipe}.yaml"),  # a recipe edit re-runs the (cached, verified) fetch
    output:
        f"{DOWNLOAD_CACHE}/{{recipe}}/{{source}}/manifest.json",
    params:
        cache=DOWNLOAD_CACHE,
    wildcard_constraints:
        recipe=r"[A-Za-z0-9_]+",
        source=r"[A-Za-z0-9_]+",
    localrule: True
    retries: 2
    log:
        f"{DOWNLOAD_CACHE}/logs/{{recipe}}_{{source}}.log",
    script:
        "../scripts/download.py"
