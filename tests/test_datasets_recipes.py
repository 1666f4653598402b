"""The packaged recipes, and load_recipe on a fake download cache (manifest + small files, no network)."""

import json

import numpy as np
import pytest

from stbench.data.contract import SOURCE_KEYS, validate_dataset, validate_reference
from stbench.data.datasets import get_recipe, list_recipes, load_recipe
from stbench.data.datasets.recipes import check_recipe
from stbench.data.datasets.download import file_digests
from stbench.errors import ConfigError, DatasetError
from stbench.data.loaders import LOADERS

PAPER = {"MOB": 6225, "HBC": 4785, "HP": 2278, "HO": 1646, "ML": 2178, "MK": 1889}  # stMCDI Table 4


def test_six_recipes_match_table4():
    assert [r for r in list_recipes() if not r.startswith("SpaDiT_")] == sorted(PAPER)  # SpaDiT's: test_spadit_datasets.py
    for rid, spots in PAPER.items():
        r = get_recipe(rid)
        assert r["id"] == rid and r["paper"]["table4"]["spots"] == spots
        assert r["default_source"] == "authors" and set(r["sources"]) == {"authors", "geo"}
        for src in r["sources"].values():
            for block in ("spatial", "reference"):
                if src.get(block):
                    assert src[block]["format"] in LOADERS
            lo, hi = src["expect"]["spots"]
            assert lo <= hi


def test_unknown_recipe_lists_known():
    with pytest.raises(ConfigError, match="known recipes: HBC, HO, HP, MK, ML, MOB"):
        get_recipe("DLPFC")


def fake_cache(cache, rid, recipe, files, source="authors"):
    """Write ``files`` (name -> text) and a manifest as `fetch` would."""
    d = cache / rid / source
    (d / "files").mkdir(parents=True)
    entries = []
    for name, text in files.items():
        (d / "files" / name).write_text(text)
        sha, _, size = file_digests(d / "files" / name)
        entries.append({"name": name, "url": f"https://example.org/{name}", "sha256": sha, "size": size,
                        "role": "reference" if name.startswith("scRNA") else "spatial", "path": f"files/{name}",
                        "unpacked": None, "checksum": "pinned"})
    (d / "manifest.json").write_text(json.dumps({"recipe": rid, "source": source, "recipe_data": recipe, "files": entries}))
    return d


def sb_text(n_spots, genes, rng):
    m = rng.poisson(3, size=(n_spots, len(genes)))
    m[:, 0] += 1
    counts = "\t".join(genes) + "\n" + "\n".join("\t".join(map(str, r)) for r in m) + "\n"
    locs = "x\ty\n" + "\n".join(f"{i % 7}.0\t{i // 7}.0" for i in range(n_spots)) + "\n"
    return counts, locs, m


def test_load_recipe_packaged_hbc_on_fake_cache(tmp_path):
    rng = np.random.default_rng(1)
    genes = [f"GENE{i}" for i in range(15)]
    counts, locs, m = sb_text(40, genes, rng)
    fake_cache(tmp_path, "HBC", get_recipe("HBC"), {"Insitu_count.txt": counts, "Locations.txt": locs})
    with pytest.warns(UserWarning) as rec:
        adata, ref = load_recipe("HBC", "authors", tmp_path, reference_source="authors")
    msgs = [str(w.message) for w in rec]
    assert any("40 spots, expected 4784-4785" in s for s in msgs) and any("15 genes, expected 1000-1000" in s for s in msgs)
    assert ref is None
    validate_dataset(adata, "HBC")
    assert set(SOURCE_KEYS) <= set(adata.uns["source"]) and adata.uns["source"]["species"] == "Homo sapiens"
    assert adata.uns["source"]["checksum"].startswith("sha256:")
    np.testing.assert_array_equal(adata.layers["counts"].toarray(), m)
    np.testing.assert_array_equal(adata.X.toarray(), m)
    assert adata.obsm["spatial"].shape == (40, 2)
    rep = adata.uns["prepare_report"]
    assert rep["spots"] == 40 and rep["table4_spots"] == 4785 and len(rep["warnings"]) == 2


def test_load_recipe_reference_overlap_and_empty_spots(tmp_path):
    rng = np.random.default_rng(2)
    recipe = get_recipe("ML")
    src = recipe["sources"]["authors"]
    src["expect"] = {"spots": [20, 40], "genes": [10, 20]}
    src["spatial"] = {"format": "spatialbenchmarking", "counts": "Insitu_count.txt", "locations": "Locations.txt"}
    src["reference"] = {"format": "scrna", "path": "scRNA_count.txt", "orientation": "genes_x_cells"}
    genes = ["Alb", "Apoa1", "Cyp2e1"] + [f"Gm{i}" for i in range(9)]
    counts, locs, m = sb_text(30, genes, rng)
    counts = counts.rstrip("\n") + "\n" + "\t".join(["0"] * len(genes)) + "\n"  # one empty spot
    locs += "9.0\t9.0\n"
    ref = rng.poisson(1, size=(8, 50))  # genes x cells, upper-case symbols (as in some SpatialBenchmarking files)
    ref_genes = ["ALB", "APOA1", "CYP2E1", "Ttr", "Apoc1", "Fabp1", "Gm0", "Gm1"]
    scrna = "\t" + "\t".join(f"cell{j}" for j in range(50)) + "\n"
    scrna += "\n".join(g + "\t" + "\t".join(map(str, r)) for g, r in zip(ref_genes, ref)) + "\n"
    fake_cache(tmp_path, "ML", recipe, {"Insitu_count.txt": counts, "Locations.txt": locs, "scRNA_count.txt": scrna})
    adata, reference = load_recipe("ML", "authors", tmp_path, reference_source="authors")
    rep = adata.uns["prepare_report"]
    assert adata.n_obs == 30 and rep["dropped_empty_spots"] == 1 and "warnings" not in rep
    assert reference.shape == (50, 8) and {"Alb", "Apoa1", "Cyp2e1"} <= set(reference.var_names)
    assert rep["reference_gene_overlap"] == 5 and rep["reference_gene_overlap_exact_case"] == 2
    validate_dataset(adata, "ML")
    validate_reference(reference, "ML ref", adata.var_names)


def test_load_recipe_never_downloads(tmp_path):
    with pytest.raises(DatasetError, match=r"manifest\.json: no download manifest; run the download step"):
        load_recipe("MK", "authors", tmp_path)
    d = fake_cache(tmp_path, "MK", get_recipe("MK"), {"MK.zip": "x"})
    (d / "files" / "MK.zip").unlink()
    with pytest.raises(DatasetError, match=r"MK\.zip: listed in the manifest but missing"):
        load_recipe("MK", "authors", tmp_path)


def test_load_recipe_hbc_geo_layout(tmp_path):
    """The packaged HBC `geo` spec (Visium section 1142243F + Wu et al. scRNA tarball) on a fake unpacked cache."""
    from tests.test_loaders_formats import write_mtx, write_positions

    rng = np.random.default_rng(3)
    recipe = get_recipe("HBC")
    recipe["sources"]["geo"]["expect"] = {"spots": [20, 30], "genes": [10, 12]}
    d = fake_cache(tmp_path, "HBC", recipe, {}, source="geo")
    files = d / "files"
    genes = [f"G{i}" for i in range(12)]
    bars = [f"AC-{i}" for i in range(30)]
    write_mtx(files / "filtered_count_matrices/filtered_count_matrices/1142243F_filtered_count_matrix",
              rng.poisson(2, (30, 12)) + 1, genes, bars)
    write_mtx(files / "filtered_count_matrices/filtered_count_matrices/CID4290_filtered_count_matrix",
              rng.poisson(2, (30, 12)) + 1, genes, bars)
    (files / "spatial/spatial/1142243F_spatial").mkdir(parents=True)
    write_positions(files / "spatial/spatial/1142243F_spatial/tissue_positions_list.csv", bars, [1] * 25 + [0] * 5, False)
    sc = files / "GSE176078_Wu_etal_2021_BRCA_scRNASeq/Wu_etal_2021_BRCA_scRNASeq"
    write_mtx(sc, rng.poisson(1, (40, 12)), genes, [f"cell{i}" for i in range(40)], gz=False)
    for a, b in (("matrix.mtx", "count_matrix_sparse.mtx"), ("features.tsv", "count_matrix_genes.tsv"),
                 ("barcodes.tsv", "count_matrix_barcodes.tsv")):
        (sc / a).rename(sc / b)
    major = ["Cancer Epithelial", "T-cells", "CAFs", "Myeloid"]
    (sc / "metadata.csv").write_text('"","orig.ident","celltype_major"\n'
                                     + "".join(f'"cell{i}","CID4290","{major[i % 4]}"\n' for i in range(40)))
    adata, ref = load_recipe("HBC", "geo", tmp_path)
    assert adata.shape == (25, 12) and ref.shape == (40, 12)
    assert ref.obs["cell_type"].tolist() == [major[i % 4] for i in range(40)]  # Tangram's clusters mode reads it
    assert adata.uns["source"]["platform"] == "10x Visium" and "4739739" in adata.uns["source"]["accession"]
    validate_dataset(adata, "HBC geo")
    validate_reference(ref, "HBC geo ref", adata.var_names)


def _ref_manifest(cache, rid, recipe):
    d = cache / rid / "geo"
    (d / "files").mkdir(parents=True)
    (d / "manifest_reference.json").write_text(json.dumps({"recipe": rid, "source": "geo", "recipe_data": recipe, "files": []}))
    return d / "files"


def test_packaged_mob_and_ml_references_read_with_labels(tmp_path):
    """The packaged `geo` reference specs of MOB (GSE121891 dge + Seurat metadata) and ML (Tabula Muris
    FACS matrix + annotations), on files laid out as the deposits are, give labelled references."""
    import gzip

    rng = np.random.default_rng(5)
    genes = ["Th", "Penk", "Doc2g", "Alb", "Apoa1", "Cyp2e1"] + [f"Gm{i}" for i in range(6)]
    cells = [f"WT1_AAAC{i}" for i in range(12)]
    dge = "," + ",".join(f'"{c}"' for c in cells) + "\n" + "".join(
        f'"{g}",' + ",".join(str(v) for v in rng.poisson(1, 12)) + "\n" for g in genes)
    for rid, layout in (("MOB", "mob"), ("ML", "ml")):
        recipe = get_recipe(rid)
        recipe["sources"]["authors"]["expect"] = {"spots": [20, 40], "genes": [10, 20]}
        counts, locs, _ = sb_text(30, genes, rng)
        fake_cache(tmp_path / rid, rid, recipe, {"Insitu_count.txt": counts, "Locations.txt": locs})
        src = recipe["sources"]["authors"]
        src["spatial"] = {"format": "spatialbenchmarking", "counts": "Insitu_count.txt", "locations": "Locations.txt"}
        (tmp_path / rid / rid / "authors" / "manifest.json").write_text(json.dumps(
            {"recipe": rid, "source": "authors", "recipe_data": recipe, "files": []}))
        files = _ref_manifest(tmp_path / rid, rid, recipe)
        if layout == "mob":
            with gzip.open(files / "GSE121891_OB_6_runs.raw.dge.csv.gz", "wt") as fh:
                fh.write(dge)
            with gzip.open(files / "GSE121891_OB_metaData_seurat.csv.gz", "wt") as fh:
                fh.write('"","orig.ident","ClusterName"\n' + "".join(f'"{c}","WT1","N{i % 3 + 1}"\n' for i, c in enumerate(cells)))
            want = [f"N{i % 3 + 1}" for i in range(12)]
        else:
            (files / "FACS" / "FACS").mkdir(parents=True)
            (files / "FACS" / "FACS" / "Liver-counts.csv").write_text(dge)
            (files / "annotations_FACS.csv").write_text("cell,cell_ontology_class,tissue\n" + "".join(
                f"{c},{'hepatocyte' if i % 2 else 'Kupffer cell'},Liver\n" for i, c in enumerate(cells[:10])))
            want = ["hepatocyte" if i % 2 else "Kupffer cell" for i in range(10)]
        adata, ref = load_recipe(rid, "authors", tmp_path / rid)
        assert ref.obs["cell_type"].tolist() == want, rid
        assert adata.uns["prepare_report"]["reference_gene_overlap"] == len(genes), rid
        validate_reference(ref, f"{rid} ref", adata.var_names, min_cells=5)


@pytest.mark.parametrize("size,msg", [
    ({"spots": 0, "genes": 10, "confidence": "strong", "evidence": "x"}, "spots must be a positive integer"),
    ({"spots": [900, 100], "genes": 10, "confidence": "strong", "evidence": "x"}, "spots must be"),
    ({"spots": 10, "genes": 10, "confidence": "sure", "evidence": "x"}, "confidence must be one of"),
    ({"spots": 10, "genes": 10, "confidence": "weak", "evidence": ""}, "evidence"),
    ({"spots": 10, "genes": 10, "confidence": "weak", "evidence": "x", "cells": 5}, "unknown key"),
])
def test_a_malformed_size_block_is_rejected_before_any_download(size, msg):
    """A recipe's size: (what the estimate prices an undownloaded dataset at) is checked with the recipe."""
    r = get_recipe("SpaDiT_MG")
    check_recipe(r, "ok")
    r["size"] = size
    with pytest.raises(ConfigError, match=f"bad: size: .*{msg}"):
        check_recipe(r, "bad")
