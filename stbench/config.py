"""The workflow configuration: which datasets, masks, seeds, methods and variants run.

``validate`` checks the config against ``workflow/schemas/config.schema.yaml`` completed with the
protocol options declared in ``PreprocessConfig``, ``TaskSpec`` and ``MaskSpec`` (their one home), then every
name and every method parameter value, so a bad config fails before any job runs.

The ``preprocess`` block (global, a recipe's, a dataset's) is where users write the whole data protocol; its
``scale`` and ``library_size`` belong to the task step (:class:`stbench.data.task.TaskSpec`, the task rule's
parameters), the rest to preprocessing (:class:`stbench.data.preprocess.PreprocessConfig`).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jsonschema
import yaml

from stbench.data.dataset_blocks import check_spec
from stbench.data.datasets import get_recipe
from stbench.run.ensembles import groups as ensemble_rule_groups
from stbench.errors import ConfigError
from stbench.data.masks import MaskSpec
from stbench.options import json_schema
from stbench.data.preprocess import PreprocessConfig
from stbench.data.reference_generators.protocol import expand_variants
from stbench.run.registry import discover
from stbench.data.task import TaskSpec, split_protocol

SCHEMA = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"
VARIANT_KEYS = ("params", "table", "label", "figure", "x", "preset", "use_defaults")


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
    priority: int = 0
    env: str = ""
    container: str | None = None
    timeout_s: float | None = None
    reference_setting: str = ""   # reference_settings name (stbench/data/reference_generators/protocol.py); "": as prepared


def schema() -> dict:
    """The config's JSON Schema: the YAML file plus the preprocess, task and mask options from their dataclasses."""
    with open(SCHEMA) as fh:
        s = yaml.safe_load(fh)
    s["properties"]["preprocess"] = {**protocol_schema(), "default": {}}
    s["properties"]["masks"]["items"] = json_schema(MaskSpec)
    s["properties"]["masks"]["default"] = [{}]
    ds = s["properties"]["datasets"]["additionalProperties"]["properties"]
    ds["preprocess"] = {**protocol_schema(), "description": "per-dataset overrides of `preprocess`"}
    for p in ds["preprocess"]["properties"].values():
        p.pop("default", None)
    return s


def protocol_schema() -> dict:
    """The ``preprocess`` block's schema: the preprocess step's options and the task step's (scale, library_size)."""
    pre, task = json_schema(PreprocessConfig), json_schema(TaskSpec)
    return {**pre, "properties": {**pre["properties"], **task["properties"]}}


def validate(config: dict, methods_dir=None) -> None:
    """Raise ConfigError with the offending path and value, for the schema and every name and parameter."""
    try:
        jsonschema.validate(config, schema())
    except jsonschema.ValidationError as e:
        where = "/".join(map(str, e.absolute_path)) or "<top level>"
        raise ConfigError(f"config: {where}: {e.message}") from None
    check_datasets(config)
    for d in config["datasets"]:
        preprocess_config(config, d)
        task_spec(config, d)
    masks(config)
    variants(config, methods_dir)


def dataset_spec(config: dict, name: str) -> dict:
    datasets = config.get("datasets") or {}
    if name not in datasets:
        raise ConfigError(f"unknown dataset '{name}'; datasets in this config: {', '.join(datasets) or 'none'}")
    return dict(datasets[name] or {})


def check_datasets(config: dict) -> None:
    for name, spec in (config.get("datasets") or {}).items():
        check_spec(name, spec or {})


def masks(config: dict) -> dict[str, MaskSpec]:
    out = {}
    for m in config.get("masks") or [{}]:
        try:
            spec = MaskSpec.from_dict(dict(m))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"invalid mask {m}: {e}") from None
        out[spec.id] = spec
    return out


def protocol_block(config: dict, dataset: str) -> dict:
    """The dataset's resolved ``preprocess`` block: the global block, then a recipe's pinned protocol (the paper's
    rule for the paper's datasets), then the dataset block's own overrides."""
    block = dict(config.get("preprocess") or {})
    spec = dataset_spec(config, dataset)
    if "recipe" in spec:
        block.update(get_recipe(spec["recipe"]).get("preprocess") or {})
    block.update(spec.get("preprocess") or {})
    return block


def _protocol(config: dict, dataset: str) -> tuple[PreprocessConfig, TaskSpec]:
    try:
        return split_protocol(protocol_block(config, dataset))
    except ValueError as e:
        raise ConfigError(f"dataset '{dataset}': {e}") from None


def preprocess_config(config: dict, dataset: str) -> PreprocessConfig:
    """The dataset's resolved preprocessing options (the preprocess rule's parameters)."""
    return _protocol(config, dataset)[0]


def task_spec(config: dict, dataset: str) -> TaskSpec:
    """The dataset's evaluation scale and library sizes (the task rule's parameters)."""
    return _protocol(config, dataset)[1]


def protocols(config: dict) -> dict:
    """Per dataset: its resolved preprocess options, its task spec (the task step's), the masks and the seeds
    (what every table names)."""
    ms = [asdict(m) for m in masks(config).values()]
    return {d: {"preprocess": asdict(preprocess_config(config, d)), "task": asdict(task_spec(config, d)), "masks": ms,
                "seeds": seeds(config)} for d in config["datasets"]}


def variants(config: dict, methods_dir=None) -> list[Variant]:
    """Every (method, variant) the config asks for, parameters resolved once by the registry.

    A method block's ``variant_defaults`` (params, preset, ...) applies to each of its variants
    that does not say ``use_defaults: false``; the variant's own keys win.
    """
    available = discover(methods_dir or config.get("methods_dir"))
    out = []
    for mname, block in (config.get("methods") or {}).items():
        if mname not in available:
            raise ConfigError(f"unknown method '{mname}' in config; available methods: {', '.join(available)}")
        method = available[mname]
        block = dict(block or {})
        resources = {**method.resources, **(block.get("resources") or {})}  # config may override method.yaml
        shared = dict(block.get("variant_defaults") or {})
        for vname, v in (block.get("variants") or {"default": {}}).items():
            v = dict(v or {})
            unknown = set(v) - set(VARIANT_KEYS)
            if unknown:
                raise ConfigError(f"method '{mname}' variant '{vname}': unknown key(s) {', '.join(sorted(unknown))}")
            if v.pop("use_defaults", True):
                v = {**shared, **v, "params": {**(shared.get("params") or {}), **(v.get("params") or {})}}
            try:
                params = method.params(v.get("preset", block.get("preset")), v.get("params"))
            except ConfigError as e:
                raise ConfigError(f"variant '{vname}': {e}") from None
            out.append(Variant(mname, str(vname), params, table=v.get("table", "table1"),
                               label=v.get("label") or (method.label(params) if vname == "default" else f"{method.title} ({vname})"),
                               figure=v.get("figure"), x=v.get("x"), resources=resources,
                               priority=int(block.get("priority") or 0), env=str(method.env),
                               container=method.container, timeout_s=_timeout(block, method)))
    if not out:
        raise ConfigError(f"config selects no method; available methods: {', '.join(available)}")

    return expand_variants(config, out, available)  # reference methods: once per reference setting


def _timeout(block: dict, method) -> float | None:
    """A method block's ``timeout_s`` (seconds per run), else method.yaml's, else None (the sandbox's default)."""
    t = block.get("timeout_s", method.timeout_s)
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or t <= 0):
        raise ConfigError(f"method '{method.name}': timeout_s must be a positive number of seconds, got {t!r}")
    return float(t) if t is not None else None


def job_device(device: str, resources: dict) -> str:
    """The device one job runs on: what its method declares. A method (or method block) with
    ``resources.gpu`` 0 runs on cpu whatever ``device`` says, so it never takes a GPU the scheduler did
    not give it; a GPU method gets ``device`` (``auto``: cuda when available, else cpu)."""
    return device if int(resources.get("gpu", 0) or 0) > 0 else "cpu"


def seeds(config: dict) -> list[int]:
    s = config.get("seeds", [0])
    return [int(x) for x in (s if isinstance(s, list) else range(int(s)))]


def expand_sweep(config: dict) -> dict:
    """``protocol_sweep: {option: [values]}`` -> one dataset per protocol, ``<dataset>__<v1>_<v2>``, each with
    those preprocess options and ``sweep_of: <dataset>`` (the rank-stability figure groups by it)."""
    sweep = dict(config.get("protocol_sweep") or {})
    if not sweep:
        return config
    keys = list(sweep)
    out = {}
    for name, spec in (config.get("datasets") or {}).items():
        spec = dict(spec or {})
        for combo in itertools.product(*(list(sweep[k]) for k in keys)):
            over = dict(zip(keys, combo))
            out[f"{name}__{'_'.join(map(str, combo))}"] = {**spec, "preprocess": {**(spec.get("preprocess") or {}), **over},
                                                          "sweep_of": name}
    return {**config, "datasets": out}


def sweep_groups(config: dict) -> dict:
    """{dataset: the dataset it was expanded from} for the datasets of a protocol sweep."""
    return {d: s["sweep_of"] for d, s in (config.get("datasets") or {}).items() if (s or {}).get("sweep_of")}


def with_defaults(config: dict) -> dict:
    """The config with the schema's top-level defaults filled in (run, cache_dir, device, isolation, seeds)."""
    out = dict(config)
    for key, prop in schema()["properties"].items():
        if "default" in prop and key not in out and key not in ("preprocess", "masks"):
            out[key] = prop["default"]
    return out


def ensemble_groups(config: dict, variants, methods_dir=None, *, switch_only: bool = True) -> dict[tuple, list[str]]:
    """{(method, group): [variant, ...]}: the ensemble jobs of a config, per (dataset, mask, seed). A method block
    with ``ensemble: true`` (``switch_only`` False: every method with a rule, as the cost estimate asks "what
    would it give") has its variants (``variants``) grouped by its method.yaml rule; a group is
    named for its first member. A method block asking for it without a rule is a ConfigError."""
    out: dict[tuple, list[str]] = {}
    available = None
    for mname, block in (config.get("methods") or {}).items():
        on = bool((block or {}).get("ensemble"))
        if switch_only and not on:
            continue
        available = available or discover(methods_dir or config.get("methods_dir"))
        rule = available[mname].ensemble if mname in available else None
        if rule is None:
            if on:
                raise ConfigError(f"method '{mname}': `ensemble: true`, but its method.yaml declares no ensemble rule "
                                  "(only methods with an ensemble.py can train variants together)")
            continue
        for names in ensemble_rule_groups(rule, {v.name: v.params for v in variants if v.method == mname}):
            out[(mname, names[0])] = names
    return out
