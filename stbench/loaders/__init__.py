"""One loader per on-disk format; each returns an AnnData that follows the dataset contract.

A loader is ``load(spec: dict, base: Path) -> AnnData`` where ``spec`` is the dataset's config
block (paths are relative to ``base``). ``LOADERS`` maps the config's ``format`` to the loader.
"""

from __future__ import annotations

from stbench.loaders.h5ad import load_h5ad
from stbench.loaders.tables import load_tables

LOADERS = {
    "h5ad": load_h5ad,
    "tables": load_tables,
}


def get_loader(fmt: str):
    from stbench.errors import ConfigError

    try:
        return LOADERS[fmt]
    except KeyError:
        raise ConfigError(f"unknown dataset format '{fmt}'; known formats: {', '.join(sorted(LOADERS))}") from None
