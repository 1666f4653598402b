"""The workflow configuration: which datasets, masks, seeds, methods and variants run.

The Snakefile validates the config against ``workflow/schemas/config.schema.yaml`` and then
expands it here; unknown dataset formats, recipes, methods or parameters give a ConfigError
that lists what exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stbench.errors import ConfigError
from stbench.masks import MaskSpec
from stbench.preprocess import PreprocessConfig

DATASET_FORMATS = ("simulate", "h5ad", "tables")  # plus every loader in stbench.loaders.LOADERS, and `recipe:`


@dataclass(frozen=True)
class Variant:
    """One (method, variant) pair with its resolved parameters and where it is reported."""
    method: str
    name: str
    params: dict
    table: str = "table1"
    label: str = ""
    figure: str | None = None
    x: float | None = None
    resources: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.method}/{self.name}"


def known_formats() -> list[str]:
    from stbench.loaders import LOADERS

    return sorted(set(DATASET_FORMATS) | set(LOADERS))


def dataset_spec(config: dict, name: str) -> dict:
    datasets = config.get("datasets") or {}
    if name not in datasets:
        raise ConfigError(f"unknown dataset '{name}'; datasets in this config: {', '.join(datasets) or 'none'}")
    return dict(datasets[name] or {})


def check_datasets(config: dict) -> None:
    for name, spec in (config.get("datasets") or {}).items():
        spec = spec or {}
        if "recipe" in spec:
            from stbench import datasets as recipes

            known = recipes.list_recipes()
            if spec["recipe"] not in known:
                raise ConfigError(f"dataset '{name}': unknown recipe '{spec['recipe']}'; known recipes: {', '.join(known)}")
            continue
        fmt = spec.get("format")
        if fmt not in known_formats():
            raise ConfigError(f"dataset '{name}': unknown or missing format {fmt!r}; "
                              f"use 'recipe: <{'|'.join(_recipes())}>' or format one of {', '.join(known_formats())}")


def _recipes() -> list[str]:
    try:
        from stbench import datasets as recipes

        return recipes.list_recipes()
    except ImportError:
        return []


def masks(config: dict) -> dict[str, MaskSpec]:
    out = {}
    for m in config.get("masks") or [{}]:
        try:
            spec = MaskSpec.from_dict(dict(m))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"invalid mask {m}: {e}") from None
        out[spec.id] = spec
    return out


def preprocess_config(config: dict, dataset: str) -> PreprocessConfig:
    block = dict(config.get("preprocess") or {})
    block.update(dataset_spec(config, dataset).get("preprocess") or {})
    try:
        return PreprocessConfig.from_dict(block)
    except ValueError as e:
        raise ConfigError(f"dataset '{dataset}': {e}") from None


def variants(config: dict, methods_dir=None) -> list[Variant]:
    """Every (method, variant) the config asks for, with parameters resolved against method.yaml."""
    from stbench.registry import discover

    available = discover(methods_dir or config.get("methods_dir"))
    out = []
    for mname, block in (config.get("methods") or {}).items():
        if mname not in available:
            raise ConfigError(f"unknown method '{mname}' in config; available methods: {', '.join(available)}")
        method = available[mname]
        block = dict(block or {})
        preset = block.get("preset")
        resources = {**method.resources, **(block.get("resources") or {})}  # config may override method.yaml
        vblock = block.get("variants") or {"default": {}}
        for vname, v in vblock.items():
            v = dict(v or {})
            unknown = set(v) - {"params", "table", "label", "figure", "x", "preset"}
            if unknown:
                raise ConfigError(f"method '{mname}' variant '{vname}': unknown key(s) {', '.join(sorted(unknown))}")
            params = method.params(v.get("preset", preset), v.get("params"))
            out.append(Variant(mname, str(vname), params, table=v.get("table", "table1"),
                               label=v.get("label") or (method.title if vname == "default" else f"{method.title} ({vname})"),
                               figure=v.get("figure"), x=v.get("x"), resources=resources))
    if not out:
        raise ConfigError(f"config selects no method; available methods: {', '.join(available)}")
    return out


def seeds(config: dict) -> list[int]:
    s = config.get("seeds", [0])
    return [int(x) for x in (s if isinstance(s, list) else range(int(s)))]
