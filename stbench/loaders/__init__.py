"""One loader per on-disk format; each returns an AnnData that follows the dataset contract.

A loader is ``load(spec: dict, base: Path) -> AnnData`` where ``spec`` is the dataset's config
block (paths are relative to ``base``). ``LOADERS`` maps the config's ``format`` to the loader.
"""

from __future__ import annotations

from stbench.loaders.h5ad import load_h5ad
from stbench.loaders.scrna import load_scrna
from stbench.loaders.spatialbenchmarking import load_spatialbenchmarking
from stbench.loaders.st import load_st
from stbench.loaders.tables import load_tables
from stbench.loaders.visium import load_visium

LOADERS = {
    "h5ad": load_h5ad,
    "tables": load_tables,
    "visium": load_visium,  # 10x Visium: .h5 or mtx folder + tissue positions (in-tissue spots)
    "st": load_st,  # Spatial Transcriptomics tables with "XxY" spot names
    "spatialbenchmarking": load_spatialbenchmarking,  # Insitu_count.txt + Locations.txt
    "scrna": load_scrna,  # scRNA-seq reference matrices (no coordinates; for `reference:` blocks)
}


def get_loader(fmt: str):
    from stbench.errors import ConfigError

    try:
        return LOADERS[fmt]
    except KeyError:
        raise ConfigError(f"unknown dataset format '{fmt}'; known formats: {', '.join(sorted(LOADERS))}") from None
