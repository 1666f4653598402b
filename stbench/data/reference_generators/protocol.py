"""The reference-augmentation protocol: named reference settings in the config, applied to every reference method.

    reference_settings:
      full: {}                                                     # the reference as prepared
      thinned: {reference_transform: {subsample: 0.1, by: cell_type, seed: 0}}
      thinned_scld: {reference_transform: {subsample: 0.1, by: cell_type, seed: 0}, augment: scld,
                     generator: {preset: quick}}

Each reference method's variant runs once per setting (variant ``<variant>__<setting>``). The workflow step
``reference_transform`` (workflow/rules/reference.smk) writes each setting's reference once per
(dataset, setting, seed): ``results/<run>/<dataset>/references/<setting>/seed<k>.h5ad`` with a JSON report
beside it, and every reference method of that dataset and seed reads that same file. The step reads only the
prepared scRNA-seq reference, never the spatial data or a mask: the generator receives the thinned reference
object and the number of cells to make per type, nothing else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from stbench.atomic import write_h5ad, write_json
from stbench.errors import ConfigError
from stbench.data import reference_generators as generators  # generators.generate: looked up per call
from stbench.data.reference_generators import GENERATORS, generator_params
from stbench.data.reference_generators.thinning import ReferenceTransform, thin
from stbench.kit.reference_protocol import reference_counts
# Imported inside functions on purpose: torch, anndata, pandas, scipy (import cost).

AUGMENTS = ("none",) + GENERATORS
SETTING_KEYS = ("reference_transform", "augment", "generator", "label")


@dataclass(frozen=True)
class ReferenceSetting:
    name: str
    transform: ReferenceTransform | None = None
    augment: str = "none"
    generator: dict | None = None       # {preset: ..., params: {...}} of the augment generator
    label: str = ""

    @property
    def identity(self) -> bool:
        """True when the setting leaves the reference as prepared (no job, the prepared file is used)."""
        return self.transform is None and self.augment == "none"

    def describe(self) -> str:
        if self.label:
            return self.label
        if self.identity:
            return "full reference"
        t = self.transform
        what = "full" if t is None else (f"{t.subsample:g} per type" if t.subsample is not None else f"{t.n_cells} cells per type")
        if t is not None and t.types:
            what += f" of {', '.join(t.types)}"
        return what + ("" if self.augment == "none" else f" + {self.augment}")


def _error(msg: str):
    return ConfigError(msg)


def parse_settings(block) -> dict:
    """{name: ReferenceSetting} from the config's ``reference_settings``; a ConfigError naming the setting,
    the key and the problem on a bad value."""
    if block is None:
        return {}
    if not isinstance(block, dict) or not block:
        raise _error(f"config: reference_settings must be a non-empty mapping of setting names, got {block!r}")
    out = {}
    for name, s in block.items():
        where = f"config: reference_settings/{name}"
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise _error(f"{where}: a setting name may hold only letters, digits, '_' and '-'")
        s = dict(s or {})
        unknown = set(s) - set(SETTING_KEYS)
        if unknown:
            raise _error(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(SETTING_KEYS)}")
        augment = s.get("augment", "none")
        if augment is None or augment is False:
            augment = "none"
        if augment not in AUGMENTS:
            raise _error(f"{where}/augment: must be one of {' | '.join(AUGMENTS)}, got {augment!r}")
        transform = None
        if s.get("reference_transform") is not None:
            try:
                transform = ReferenceTransform.from_dict(s["reference_transform"])
            except ValueError as e:
                raise _error(f"{where}: {e}") from None
        gen = s.get("generator")
        if gen is not None:
            if augment == "none":
                raise _error(f"{where}/generator: given, but augment is none")
            if not isinstance(gen, dict) or set(gen) - {"preset", "params"}:
                raise _error(f"{where}/generator: must be {{preset: NAME, params: {{...}}}}, got {gen!r}")
        if augment != "none":
            if transform is None:
                raise _error(f"{where}/augment: {augment} fills a thinned reference back up; give a reference_transform")
            try:
                generator_params(augment, (gen or {}).get("preset"), (gen or {}).get("params"))
            except ValueError as e:
                raise _error(f"{where}/generator: {e}") from None
        out[name] = ReferenceSetting(name, transform, augment, dict(gen or {}), str(s.get("label") or ""))
    return out


def expand_variants(config: dict, variants: list, available: dict) -> list:
    """Each variant of a reference method once per reference setting (``<variant>__<setting>``); the other
    methods' variants unchanged. No ``reference_settings``: the list unchanged."""
    settings = parse_settings(config.get("reference_settings"))
    if not settings:
        return variants
    out = []
    for v in variants:
        if not available[v.method].needs_reference:
            out.append(v)
            continue
        for s in settings.values():
            out.append(replace(v, name=f"{v.name}__{s.name}", label=f"{v.label} [{s.describe()}]",
                               reference_setting=s.name))
    return out


def transform_reference(reference, setting: ReferenceSetting, run_seed: int, device: str = "cpu"):
    """The setting's reference (thinned, then filled back up to each type's count before thinning with
    synthetic cells) and a JSON-ready report. The generator sees only the thinned reference."""
    if setting.transform is None:
        return reference.copy(), {"setting": setting.name, "identity": True}
    by = setting.transform.by
    t0 = time.time()
    thinned, counts = thin(reference, setting.transform, run_seed)
    thinned.obs["synthetic"] = False
    report = {"setting": setting.name, "label": setting.describe(), "run_seed": int(run_seed), "by": by,
              "transform": {k: v for k, v in setting.transform.__dict__.items()},
              "cells": {t: {"before": b, "kept": k} for t, (b, k) in counts.items()}, "augment": setting.augment}
    if setting.augment == "none":
        report["wall_time_s"] = round(time.time() - t0, 3)
        return thinned, report
    want = {t: b - k for t, (b, k) in counts.items() if b > k}
    gen = setting.generator or {}
    syn = generators.generate(setting.augment, thinned, want, by=by, seed=int(run_seed), preset=gen.get("preset"),
                   params=gen.get("params"), device=device)
    out = concat_real_synthetic(thinned, syn, by)
    for t in counts:
        report["cells"][t]["synthetic"] = int(want.get(t, 0))
    report["generator"] = {"name": setting.augment, "preset": gen.get("preset"), "params": gen.get("params") or {},
                           "info": syn.uns.get("generator_info", {})}
    report["wall_time_s"] = round(time.time() - t0, 3)
    return out, report


def concat_real_synthetic(real, syn, by: str):
    """Real cells then synthetic ones: raw counts in X and layers['counts'], obs[by] and obs['synthetic']."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    x = sp.vstack([sp.csr_matrix(reference_counts(real).astype(np.float32)), sp.csr_matrix(syn.layers["counts"])]).tocsr()
    obs = pd.DataFrame({by: np.concatenate([real.obs[by].astype(str).to_numpy(), syn.obs[by].astype(str).to_numpy()]),
                        "synthetic": np.r_[np.zeros(real.n_obs, bool), np.ones(syn.n_obs, bool)]},
                       index=list(map(str, real.obs_names)) + list(map(str, syn.obs_names)))
    out = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=real.var_names.copy()))
    out.layers["counts"] = x.copy()
    out.uns["source"] = dict(real.uns.get("source", {}) or {})
    return out


def reference_transform_step(prepared, setting: ReferenceSetting, run_seed: int, out_json, device: str = "cpu",
                             threads: int = 1) -> dict:
    """Workflow step: read the prepared dataset's reference (``reference.h5ad`` beside ``prepared``; only that
    file), write the setting's reference beside ``out_json`` (same name, .h5ad) and the report."""
    import anndata as ad

    src = Path(prepared).with_name("reference.h5ad")
    out_json = Path(out_json)
    out_h5ad = out_json.with_suffix(".h5ad")
    if not src.exists():
        report = {"setting": setting.name, "reference": "none: the dataset has no scRNA-seq reference"}
        if out_h5ad.exists():
            out_h5ad.unlink()
        write_json(out_json, report)
        return report
    try:
        import torch

        torch.set_num_threads(max(int(threads), 1))
    except ImportError:
        pass
    reference = ad.read_h5ad(src)
    try:
        out, report = transform_reference(reference, setting, run_seed, device)
    except ValueError as e:
        raise ValueError(f"{src}: reference setting {setting.name!r}: {e}") from None
    report["n_cells"] = int(out.n_obs)
    write_h5ad(out_h5ad, out)
    write_json(out_json, report)
    return report
