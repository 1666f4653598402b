"""The paper's six datasets (stMCDI App. E, Table 4) as recipes: download, verify, load.

    list_recipes() -> ids            get_recipe(id) -> dict
    fetch(id, source, cache_dir) -> <cache_dir>/<id>/<source>/manifest.json   (downloads)
    load_recipe(id, source, cache_dir) -> (spatial AnnData, reference AnnData | None)   (never downloads)
"""

from stbench.data.datasets.download import fetch
from stbench.data.datasets.prepare import load_recipe
from stbench.data.datasets.recipes import get_recipe, list_recipes

__all__ = ["fetch", "get_recipe", "list_recipes", "load_recipe"]
