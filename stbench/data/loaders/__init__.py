"""File formats, one loader each: ``load(spec: dict, base: Path) -> AnnData`` (paths relative to ``base``).

Which loader a config's dataset block uses, and how recipes and simulations enter, is decided one
level up, in ``stbench.data.dataset_blocks``; this package imports nothing of the datasets or the workflow.
"""

from __future__ import annotations

from stbench.errors import ConfigError
from stbench.data.loaders.h5ad import load_h5ad
from stbench.data.loaders.scrna import load_scrna
from stbench.data.loaders.spatialbenchmarking import load_spatialbenchmarking
from stbench.data.loaders.st import load_st
from stbench.data.loaders.tables import load_tables
from stbench.data.loaders.visium import load_visium

LOADERS = {
    "h5ad": load_h5ad,
    "tables": load_tables,
    "visium": load_visium,  # 10x Visium: .h5 or mtx folder + tissue positions (in-tissue spots)
    "st": load_st,  # Spatial Transcriptomics tables with "XxY" spot names
    "spatialbenchmarking": load_spatialbenchmarking,  # Insitu_count.txt + Locations.txt
    "scrna": load_scrna,  # scRNA-seq reference matrices (no coordinates; for `reference:` blocks)
}
# the spec keys of each file format that name input files (declared as Snakemake inputs)
INPUT_KEYS = {"h5ad": ("path",), "tables": ("counts", "locations"), "visium": ("matrix", "positions"),
              "st": ("counts",), "spatialbenchmarking": ("counts", "locations"), "scrna": ("path", "genes", "barcodes", "labels")}


def get_loader(fmt: str):
    try:
        return LOADERS[fmt]
    except KeyError:
        raise ConfigError(f"unknown dataset format '{fmt}'; known formats: {', '.join(sorted(LOADERS))}") from None
