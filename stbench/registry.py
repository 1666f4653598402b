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

import yaml

from stbench.errors import ConfigError, MethodError

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
MANIFEST_KEYS = {"name", "title", "citation", "needs", "resources", "env", "params", "quick_params",
                 "presets", "fidelity", "implementation", "url"}


def default_methods_dir() -> Path:
    """``methods/`` of the project checkout (the folder next to the ``stbench`` package)."""
    return Path(__file__).resolve().parent.parent / "methods"


@dataclass
class Method:
    name: str
    folder: Path
    manifest: dict = field(repr=False)

    @property
    def title(self) -> str:
        return self.manifest.get("title", self.name)

    @property
    def needs_reference(self) -> bool:
        return bool((self.manifest.get("needs") or {}).get("reference", False))

    @property
    def needs_gpu(self) -> bool:
        return bool((self.manifest.get("needs") or {}).get("gpu", False))

    @property
    def resources(self) -> dict:
        r = {"gpu": 0, "mem_mb": 2000, "threads": 1}
        r.update(self.manifest.get("resources") or {})
        return r

    def params(self, preset: str | None = None, overrides: dict | None = None) -> dict:
        """Parameters: manifest defaults (the paper's), then a preset, then per-variant overrides."""
        p = dict(self.manifest.get("params") or {})
        if preset:
            presets = dict(self.manifest.get("presets") or {})
            if "quick_params" in self.manifest:
                presets.setdefault("quick", self.manifest["quick_params"])
            if preset not in presets:
                if preset == "quick":
                    presets["quick"] = {}
                elif preset == "paper":
                    presets["paper"] = {}
                else:
                    raise ConfigError(f"method '{self.name}' has no preset '{preset}'; presets: {', '.join(sorted(presets)) or 'none'}")
            p.update(presets[preset] or {})
        if overrides:
            unknown = set(overrides) - set(p)
            if unknown:
                raise ConfigError(f"method '{self.name}': unknown parameter(s) {', '.join(sorted(unknown))}; "
                                  f"known: {', '.join(sorted(p)) or 'none'}")
            p.update(overrides)
        return p

    def load_impute(self):
        """Import the method's ``impute`` function."""
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
            module = importlib.import_module(f"{pkg}.impute")
        except ImportError as e:
            raise MethodError(self.name, f"cannot import {self.folder / 'impute.py'}: {e}") from e
        fn = getattr(module, "impute", None)
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
    for k in ("needs", "resources", "presets", "quick_params"):
        if k in manifest and not isinstance(manifest[k] or {}, dict):
            raise MethodError(folder.name, f"{path}: '{k}' must be a mapping")
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
