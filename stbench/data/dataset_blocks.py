"""A config's dataset block -> its input files and its AnnData: recipes, simulations and file formats, one dispatch.

A block is either ``{recipe: ID, source: authors|geo}`` (one of the paper's datasets, read from the
download cache) or ``{format: F, ...}`` with F one of ``FORMATS``. ``load_dataset`` returns the spatial
AnnData and the optional scRNA-seq reference (a ``reference:`` block or path). It sits above both
``stbench.data.datasets`` (recipes) and ``stbench.data.loaders`` (file formats), so neither imports the other's caller.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from stbench.data.datasets import get_recipe, list_recipes, load_recipe
from stbench.data.datasets.download import manifest_path
from stbench.data.datasets.prepare import reference_source_of
from stbench.errors import ConfigError
from stbench.data.loaders import INPUT_KEYS as FILE_INPUT_KEYS
from stbench.data.loaders import get_loader
from stbench.data.simulate import simulate_demo

DEFAULT_CACHE_DIR = "resources/downloads"  # the download cache (config key `cache_dir`)
# the config keys of each block format that name input files (declared as Snakemake inputs)
INPUT_KEYS = {**FILE_INPUT_KEYS, "simulate": (), "recipe": ()}
FORMATS = tuple(sorted(INPUT_KEYS))


def format_of(spec: dict) -> str:
    """The block's format: ``recipe`` for the ``{recipe: ID}`` shorthand, else its ``format`` key."""
    return "recipe" if "recipe" in (spec or {}) else (spec or {}).get("format")


def reference_spec(spec: dict) -> dict | None:
    """The ``reference:`` block as a scrna spec (a bare path is shorthand for ``{path: ...}``)."""
    ref = (spec or {}).get("reference")
    if not ref:
        return None
    return dict(ref) if isinstance(ref, dict) else {"path": ref}


def check_spec(name: str, spec: dict) -> None:
    """A ConfigError naming the dataset for an unknown format or recipe, or a missing input key."""
    fmt = format_of(spec)
    if fmt == "recipe":
        if spec["recipe"] not in list_recipes():
            raise ConfigError(f"dataset '{name}': unknown recipe '{spec['recipe']}'; known recipes: {', '.join(list_recipes())}")
        try:
            reference_source_of(get_recipe(spec["recipe"]), spec.get("source", "authors"), spec.get("reference_source"))
        except ConfigError as e:
            raise ConfigError(f"dataset '{name}': {e}") from None
        return
    if fmt not in INPUT_KEYS:
        raise ConfigError(f"dataset '{name}': unknown or missing format {fmt!r}; use 'recipe: <ID>' or format one of "
                          f"{', '.join(f for f in FORMATS if f != 'recipe')}")


def dataset_inputs(spec: dict, cache_dir: str = DEFAULT_CACHE_DIR) -> list[str]:
    """Every input file of a dataset block (a recipe's download manifest, or the block's paths and its reference's)."""
    fmt = format_of(spec)
    if fmt == "recipe":
        source = spec.get("source", "authors")
        files = [str(manifest_path(cache_dir, spec["recipe"], source))]
        ref_source = reference_source_of(get_recipe(spec["recipe"]), source, spec.get("reference_source"))
        if ref_source not in ("none", source):
            files.append(str(manifest_path(cache_dir, spec["recipe"], ref_source, reference_only=True)))
        return files
    files = [str(spec[k]) for k in INPUT_KEYS.get(fmt, ()) if spec.get(k)]
    ref = reference_spec(spec)
    if ref:
        files += [str(ref[k]) for k in INPUT_KEYS["scrna"] if ref.get(k)]
    return files


def load_dataset(name: str, spec: dict, *, base=None, cache_dir: str = DEFAULT_CACHE_DIR):
    """(spatial AnnData, reference AnnData or None, a description for messages) of a dataset block."""
    spec = dict(spec)
    check_spec(name, spec)
    fmt = format_of(spec)
    if fmt == "recipe":
        source = spec.get("source", "authors")
        adata, ref = load_recipe(spec["recipe"], source, cache_dir, spec.get("reference_source"))
        return adata, ref, f"recipe {spec['recipe']} ({source})"
    if fmt == "simulate":
        kw = {k: v for k, v in spec.items() if k not in ("format", "preprocess", "source", "sweep_of")}
        secret = kw.get("seed") == "secret"
        if secret:  # drawn now; kept only in prepare.json (results/, which no method sees under bwrap)
            kw["seed"] = secrets.randbelow(2**31)
        adata, ref = simulate_demo(**kw)
        if secret:
            for a in (adata, ref):  # the reference reaches the method: no seed in its metadata
                a.uns["source"] = dict(a.uns["source"], accession="simulated(seed=secret)")
            adata.uns["prepare_report"] = {"simulation_seed": int(kw["seed"]),
                                           "simulation_seed_note": "drawn at run time (seed: secret)"}
        return adata, ref, f"simulated dataset '{name}'"
    adata = get_loader(fmt)(spec, base)
    rspec = reference_spec(spec)
    ref = get_loader(rspec.get("format", "scrna"))(rspec, base) if rspec else None
    where = next((spec[k] for k in INPUT_KEYS[fmt] if spec.get(k)), name)
    return adata, ref, str(where)


def input_folders(spec: dict, cache_dir: str = DEFAULT_CACHE_DIR) -> list[str]:
    """The folders holding a dataset's raw inputs (hidden from method processes: they carry the truth)."""
    return sorted({str(Path(f).resolve().parent) for f in dataset_inputs(spec, cache_dir)})
