"""The dataset recipes (``recipes/<ID>.yaml``): where each of the paper's six datasets comes from.

A recipe names the dataset, the paper's figures (Table 4), optionally ``size:`` (the spatial matrix's shape
known before download, a number or a [low, high] range of candidates, with its evidence: what ``stbench
estimate`` prices an undownloaded dataset at), and per source (``authors``: the stMCDI
authors' matrices; ``geo``: the original deposits) the files to download (name, role, and either a
fixed ``url`` or ``resolve:``, a pattern over the source's own file listing; optional sha256/size pins)
and how to read them (``spatial`` / ``reference`` loader specs, paths relative to the download
folder, ``*``/``**`` globs allowed). ``check_recipe`` rejects a malformed recipe up front.
"""

from __future__ import annotations

import copy
import re
from functools import lru_cache
from pathlib import Path

import yaml

from stbench.data.datasets.listings import spec_of
from stbench.errors import ConfigError
from stbench.data.task import split_protocol

RECIPE_DIR = Path(__file__).with_name("recipes")
REQUIRED = ("id", "title", "tissue", "species", "platform", "citation", "paper", "default_source", "sources")
FILE_KEYS = ("name", "role")
ROLES = ("spatial", "reference")
SIZE_CONFIDENCE = ("verified", "strong", "inferred", "weak")


def list_recipes() -> list[str]:
    """Ids of the packaged recipes, sorted."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


@lru_cache(maxsize=None)
def _load(recipe_id: str) -> dict:
    path = RECIPE_DIR / f"{recipe_id}.yaml"
    with open(path) as fh:
        recipe = yaml.safe_load(fh)
    check_recipe(recipe, path)
    return recipe


def get_recipe(recipe_id: str) -> dict:
    """The recipe ``recipe_id`` as a dict (a fresh copy); ConfigError listing the known ids if unknown."""
    known = list_recipes()
    if recipe_id not in known:
        raise ConfigError(f"unknown recipe '{recipe_id}'; known recipes: {', '.join(known)}")
    return copy.deepcopy(_load(recipe_id))


def get_source(recipe: dict, source: str) -> dict:
    """One source block of a recipe; ConfigError listing the recipe's sources if absent."""
    sources = recipe.get("sources") or {}
    if source not in sources:
        raise ConfigError(f"recipe '{recipe.get('id')}' has no source '{source}'; sources: {', '.join(sources)}")
    return sources[source]


def _check_origin(f: dict, where: str) -> None:
    """A file comes either from a fixed ``url`` or from its source's listing (``resolve:``), not both."""
    if bool(f.get("url")) == bool(f.get("resolve")):
        raise ConfigError(f"{where}: give exactly one of url: or resolve:")
    res = f.get("resolve")
    if res is None:
        return
    if not isinstance(res, dict):
        raise ConfigError(f"{where}: resolve: must be a mapping such as {{zenodo: 13329582, pattern: '...', count: 1}}")
    try:
        spec_of(res)
        re.compile(res.get("pattern") or "")
    except (ValueError, re.error) as e:
        raise ConfigError(f"{where}: resolve: {e}") from None
    if not (isinstance(res.get("count", 1), int) and res.get("count", 1) >= 1):
        raise ConfigError(f"{where}: resolve: count must be a positive integer")
    unknown = set(res) - {"zenodo", "figshare", "geo", "pattern", "count"}
    if unknown:
        raise ConfigError(f"{where}: resolve: unknown key(s) {', '.join(sorted(unknown))}")


def size_range(value) -> tuple[int, int]:
    """A ``size:`` count as (low, high): a number n is (n, n), a [low, high] pair is itself."""
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _check_size(size, where: str) -> None:
    """``size: {spots, genes, folder, confidence, evidence}``: counts are positive integers or [low, high]."""
    if not isinstance(size, dict):
        raise ConfigError(f"{where}: must be a mapping such as {{spots: 2177, genes: 1000, confidence: verified, evidence: ...}}")
    for key in ("spots", "genes"):
        v = size.get(key)
        ok = (isinstance(v, int) and not isinstance(v, bool) and v > 0) or (
            isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v)
            and v[0] <= v[1])
        if not ok:
            raise ConfigError(f"{where}: {key} must be a positive integer or a [low, high] pair of them, got {v!r}")
    if size.get("confidence") not in SIZE_CONFIDENCE:
        raise ConfigError(f"{where}: confidence must be one of {', '.join(SIZE_CONFIDENCE)}, got {size.get('confidence')!r}")
    if not str(size.get("evidence") or "").strip():
        raise ConfigError(f"{where}: evidence: say where the numbers come from")
    unknown = set(size) - {"spots", "genes", "folder", "confidence", "evidence"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")


def check_recipe(recipe, where) -> None:
    """Structural checks of a recipe dict (so that a typo fails before any download)."""
    if not isinstance(recipe, dict):
        raise ConfigError(f"{where}: a recipe must be a mapping")
    missing = [k for k in REQUIRED if k not in recipe]
    if missing:
        raise ConfigError(f"{where}: recipe lacks key(s) {', '.join(missing)}")
    if recipe.get("preprocess") is not None:
        try:
            split_protocol(recipe["preprocess"])
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: preprocess: {e}") from None
    if recipe.get("size") is not None:
        _check_size(recipe["size"], f"{where}: size")
    if recipe["default_source"] not in recipe["sources"]:
        raise ConfigError(f"{where}: default_source '{recipe['default_source']}' is not one of its sources")
    for name, src in recipe["sources"].items():
        files = src.get("files") or []
        if not files:
            raise ConfigError(f"{where}: source '{name}' lists no files")
        seen = set()
        for f in files:
            lack = [k for k in FILE_KEYS if not f.get(k)]
            if lack:
                raise ConfigError(f"{where}: a file of source '{name}' lacks {', '.join(lack)}: {f}")
            if f["role"] not in ROLES:
                raise ConfigError(f"{where}: file '{f['name']}' has role '{f['role']}'; roles: {', '.join(ROLES)}")
            _check_origin(f, f"{where}: file '{f['name']}' of source '{name}'")
            if "/" in f["name"] or f["name"] in seen:
                raise ConfigError(f"{where}: file name '{f['name']}' of source '{name}' must be unique and contain no '/'")
            seen.add(f["name"])
            if f.get("size") is not None and not (isinstance(f["size"], int) and f["size"] > 0):
                raise ConfigError(f"{where}: file '{f['name']}' has a malformed size '{f['size']}' (bytes, a positive integer)")
            sha = f.get("sha256")
            if sha is not None and (len(str(sha)) != 64 or any(c not in "0123456789abcdef" for c in str(sha).lower())):
                raise ConfigError(f"{where}: file '{f['name']}' has a malformed sha256 '{sha}'")
        for block in ("spatial", "reference"):
            spec = src.get(block)
            if spec is not None and not (isinstance(spec, dict) and spec.get("format")):
                raise ConfigError(f"{where}: source '{name}': '{block}' must be null or a loader spec with a 'format'")
