"""Method discovery: every folder under ``methods/`` with a ``method.yaml`` and an ``impute.py``.

A method folder is imported as the package ``stbench_methods.<name>``, so ``impute.py`` may use
relative imports of sibling modules (``from .model import Net``).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import re
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import yaml

from stbench.run.ensembles import check_rule
from stbench.errors import ConfigError, MethodError

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ENV = "envs/core.yaml"  # the harness's own environment: numpy, torch, scanpy (a method without `env:` runs in it)
MANIFEST_KEYS = {"name", "title", "label", "citation", "needs", "resources", "env", "container", "params", "param_schema",
                 "presets", "fidelity", "implementation", "url", "timeout_s", "network", "ensemble"}
DEFAULT_RESOURCES = {"gpu": 0, "mem_mb": 2000, "threads": 1}


def default_methods_dir() -> Path:
    """``methods/`` of the project checkout (the folder next to the ``stbench`` package)."""
    return Path(__file__).resolve().parents[2] / "methods"


@dataclass
class Method:
    name: str
    folder: Path
    manifest: dict = field(repr=False)

    @property
    def title(self) -> str:
        return self.manifest.get("title", self.name)

    def label(self, params: dict) -> str:
        """The default variant's row label: ``label`` in method.yaml, a format string over the resolved
        parameters (e.g. ``"stMCDI (target: {target})"``), else the title."""
        template = self.manifest.get("label")
        return template.format(**params) if template else self.title

    @property
    def needs_reference(self) -> bool:
        return bool((self.manifest.get("needs") or {}).get("reference", False))

    @property
    def resources(self) -> dict:
        return {**DEFAULT_RESOURCES, **(self.manifest.get("resources") or {})}

    @property
    def timeout_s(self) -> float | None:
        """The method's wall-clock limit per run (``timeout_s`` in method.yaml; the config may override it)."""
        t = self.manifest.get("timeout_s")
        return float(t) if t is not None else None

    @property
    def network(self) -> bool:
        """Whether the method's process may use the network (``network: true`` in method.yaml); off by default."""
        return bool(self.manifest.get("network", False))

    @property
    def ensemble(self) -> dict | None:
        """The method's batched-ensemble rule (``ensemble`` in method.yaml; stbench.run.ensembles), or None."""
        return self.manifest.get("ensemble")

    @property
    def env(self) -> Path:
        """The method's conda environment file (``env:`` in method.yaml, relative to the project root)."""
        return (PROJECT_ROOT / self.manifest.get("env", DEFAULT_ENV)).resolve()

    @property
    def container(self) -> str | None:
        return self.manifest.get("container")

    @property
    def presets(self) -> dict:
        """Named parameter overrides; ``paper`` (the defaults) always exists."""
        return {"paper": {}, **{k: dict(v or {}) for k, v in (self.manifest.get("presets") or {}).items()}}

    def params(self, preset: str | None = None, overrides: dict | None = None) -> dict:
        """The one parameter resolver: manifest defaults (the paper's), then a preset, then overrides;
        unknown names and values outside ``param_schema`` raise ConfigError."""
        p = dict(self.manifest.get("params") or {})
        if preset:
            if preset not in self.presets:
                raise ConfigError(f"method '{self.name}' has no preset '{preset}'; presets: {', '.join(sorted(self.presets))}")
            p.update(self.presets[preset])
        for label, block in (("preset " + repr(preset), self.presets.get(preset or "paper", {})), ("config", overrides or {})):
            unknown = set(block) - set(self.manifest.get("params") or {})
            if unknown:
                raise ConfigError(f"method '{self.name}' ({label}): unknown parameter(s) {', '.join(sorted(unknown))}; "
                                  f"known: {', '.join(sorted(self.manifest.get('params') or {})) or 'none'}")
        p.update(overrides or {})
        self.check_params(p)
        return p

    def resolve(self, params: dict | None) -> dict:
        """Every parameter of the method: ``params`` over method.yaml's defaults, validated (a resolved set comes
        back unchanged). The sandbox applies it to every run, so ``impute`` never gets a partial set and no method
        needs keyword defaults of its own."""
        return self.params(None, params)

    def check_params(self, p: dict) -> None:
        """Validate values against ``param_schema`` (JSON Schema per parameter)."""
        for name, schema in (self.manifest.get("param_schema") or {}).items():
            if name not in p:
                continue
            try:
                jsonschema.validate(p[name], schema)
            except jsonschema.ValidationError as e:
                allowed = ", ".join(f"{k}: {v}" for k, v in schema.items() if k != "description")
                raise ConfigError(f"method '{self.name}': parameter {name}={p[name]!r} is invalid ({e.message}); "
                                  f"allowed: {allowed}") from None

    def load_module(self, module: str = "impute"):
        """Import one module of the method folder (as ``stbench_methods.<name>.<module>``), in this process:
        for unit tests and benchmarks. Workflow runs go through the sandbox (stbench.run.sandbox)."""
        pkg = f"stbench_methods.{self.name}"
        if "stbench_methods" not in sys.modules:
            ns = types.ModuleType("stbench_methods")
            ns.__path__ = []
            sys.modules["stbench_methods"] = ns
        cached = sys.modules.get(pkg)
        if cached is not None and list(getattr(cached, "__path__", [])) != [str(self.folder)]:
            for mod in [m for m in sys.modules if m == pkg or m.startswith(pkg + ".")]:
                del sys.modules[mod]  # a different folder of the same name (e.g. a user's methods_dir)
        if pkg not in sys.modules:
            spec = importlib.machinery.ModuleSpec(pkg, None, is_package=True)
            mod = importlib.util.module_from_spec(spec)
            mod.__path__ = [str(self.folder)]
            sys.modules[pkg] = mod
        try:
            return importlib.import_module(f"{pkg}.{module}")
        except ImportError as e:
            raise MethodError(self.name, f"cannot import {self.folder / (module + '.py')}: {e}") from e

    def load_impute(self):
        """The method's ``impute`` function, imported in this process (see :meth:`load_module`)."""
        fn = getattr(self.load_module("impute"), "impute", None)
        if not callable(fn):
            raise MethodError(self.name, f"{self.folder / 'impute.py'} defines no function impute(task, **params)")
        return fn


def validate_manifest(manifest, folder: Path) -> dict:
    path = folder / "method.yaml"
    if not isinstance(manifest, dict):
        raise MethodError(folder.name, f"{path}: must be a YAML mapping")
    for k in ("name", "title", "citation", "params"):
        if k not in manifest:
            raise MethodError(folder.name, f"{path}: missing required key '{k}'")
    if manifest["name"] != folder.name:
        raise MethodError(folder.name, f"{path}: name '{manifest['name']}' differs from the folder name")
    if not NAME_RE.match(manifest["name"]):
        raise MethodError(folder.name, f"{path}: name must match {NAME_RE.pattern}")
    unknown = set(manifest) - MANIFEST_KEYS
    if unknown:
        raise MethodError(folder.name, f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    if not isinstance(manifest.get("params") or {}, dict):
        raise MethodError(folder.name, f"{path}: 'params' must be a mapping")
    for k in ("needs", "resources", "presets", "param_schema"):
        if k in manifest and not isinstance(manifest[k] or {}, dict):
            raise MethodError(folder.name, f"{path}: '{k}' must be a mapping")
    t = manifest.get("timeout_s")
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or t <= 0):
        raise MethodError(folder.name, f"{path}: timeout_s must be a positive number of seconds, got {t!r}")
    if not isinstance(manifest.get("network", False), bool):
        raise MethodError(folder.name, f"{path}: network must be true or false")
    if "ensemble" in manifest:
        try:
            check_rule(manifest["ensemble"], str(path))
        except ConfigError as e:
            raise MethodError(folder.name, str(e)) from None
        if not (folder / "ensemble.py").exists():
            raise MethodError(folder.name, f"{path}: declares 'ensemble' but {folder / 'ensemble.py'} does not exist")
    schema_unknown = set(manifest.get("param_schema") or {}) - set(manifest.get("params") or {})
    if schema_unknown:
        raise MethodError(folder.name, f"{path}: param_schema names unknown parameter(s) {', '.join(sorted(schema_unknown))}")
    env = manifest.get("env", DEFAULT_ENV)
    if not isinstance(env, str) or not (PROJECT_ROOT / env).is_file():
        raise MethodError(folder.name, f"{path}: env file {env!r} does not exist (a path relative to the project root, "
                                       f"{PROJECT_ROOT}; copy {DEFAULT_ENV} to start one)")
    if not (folder / "impute.py").exists():
        raise MethodError(folder.name, f"{folder}: no impute.py")
    return manifest


def discover(methods_dir=None) -> dict[str, Method]:
    """All valid method folders, by name."""
    root = Path(methods_dir) if methods_dir else default_methods_dir()
    out = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and (p / "method.yaml").exists()):
        with open(folder / "method.yaml") as fh:
            manifest = validate_manifest(yaml.safe_load(fh), folder)
        out[manifest["name"]] = Method(manifest["name"], folder, manifest)
    return out


def get_method(name: str, methods_dir=None) -> Method:
    methods = discover(methods_dir)
    if name not in methods:
        raise ConfigError(f"unknown method '{name}'; available methods: {', '.join(methods) or 'none'}")
    return methods[name]
