"""Reference generators: synthetic scRNA-seq cells per cell type, to fill a thinned reference back up.

``scld`` (Wang et al. 2023, reimplemented from the paper: autoencoder, latent diffusion, pre-guidance by
cell type, post-guidance scorer), and two simple comparators: ``resample`` (real cells of the type with
negative-binomial noise) and ``vae`` (a conditional VAE). Every generator has the same entry point,
``generate(reference, n_per_type, *, by, seed, params, device)``: it sees only the reference AnnData
(cells x genes, raw counts) and returns synthetic cells as an AnnData with the same genes. The thinning
transform is :mod:`stbench.data.reference_generators.thinning`; the workflow step that applies both is
:mod:`stbench.data.reference_generators.protocol`. See README.md beside this file.
"""

from __future__ import annotations

import importlib

GENERATORS = ("scld", "resample", "vae")


def get_generator(name: str):
    """The module of generator ``name`` (it defines ``PRESETS`` and ``generate``)."""
    if name not in GENERATORS:
        raise ValueError(f"unknown reference generator {name!r}; available: {', '.join(GENERATORS)}")
    return importlib.import_module(f"stbench.data.reference_generators.{name}")


def generator_params(name: str, preset: str | None = None, params: dict | None = None) -> dict:
    """The generator's parameters: its ``default`` preset, then ``preset``'s values, then ``params``; an
    unknown preset or parameter is a ValueError naming it."""
    mod = get_generator(name)
    out = dict(mod.PRESETS["default"])
    if preset is not None:
        if preset not in mod.PRESETS:
            raise ValueError(f"generator {name!r}: unknown preset {preset!r}; presets: {', '.join(mod.PRESETS)}")
        out.update(mod.PRESETS[preset])
    unknown = set(params or {}) - set(out)
    if unknown:
        raise ValueError(f"generator {name!r}: unknown parameter(s) {', '.join(sorted(unknown))}; known: "
                         f"{', '.join(sorted(out))}")
    out.update(params or {})
    return out


def generate(name: str, reference, n_per_type: dict, *, by: str, seed: int = 0, preset: str | None = None,
             params: dict | None = None, device: str = "cpu"):
    """Synthetic cells from generator ``name``: an AnnData with ``n_per_type[t]`` cells of each type ``t``."""
    return get_generator(name).generate(reference, n_per_type, by=by, seed=seed,
                                        params=generator_params(name, preset, params), device=device)
