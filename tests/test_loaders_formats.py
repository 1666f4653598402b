"""Each new loader on a small fixture of its format, plus a malformed input whose error names the file."""

import gzip

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

from stbench.errors import DatasetError
from stbench.data.loaders import LOADERS

RNG = np.random.default_rng(0)


def counts(n_obs, n_var):
    m = RNG.poisson(2.0, size=(n_obs, n_var))
    m[:, 0] += 1  # no empty rows
    return m


# --- spatialbenchmarking --------------------------------------------------------------------------

def write_sb(folder, m, genes, header="x\ty", xy=None):
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(genes)] + ["\t".join(map(str, r)) for r in m]
    (folder / "Insitu_count.txt").write_text("\n".join(lines) + "\n")
    xy = xy if xy is not None else np.arange(2 * len(m)).reshape(-1, 2) * 10
    loc = ([header] if header else []) + [f"{a}\t{b}" for a, b in xy]
    (folder / "Locations.txt").write_text("\n".join(loc) + "\n")
    return folder


def test_spatialbenchmarking_reads_headerless_index(tmp_path):
    m = counts(30, 5)
    d = write_sb(tmp_path / "D", m, ["Gad1", "Sst", "Pvalb", "Vip", "Sst"])
    a = LOADERS["spatialbenchmarking"]({"counts": "D/Insitu_count.txt", "locations": "D/Locations.txt"}, tmp_path)
    assert a.shape == (30, 4)  # the duplicated Sst is summed
    assert list(a.obs_names[:2]) == ["spot0", "spot1"]
    np.testing.assert_array_equal(a[:, "Sst"].layers["counts"].toarray().ravel(), m[:, 1] + m[:, 4])
    np.testing.assert_array_equal(a.obsm["spatial"][1], [20, 30])
    assert a.uns["source"]["url"].endswith("Insitu_count.txt")
    # no header line in Locations.txt is accepted too
    write_sb(d, m, ["A", "B", "C", "D", "E"], header=None)
    b = LOADERS["spatialbenchmarking"]({"counts": d / "Insitu_count.txt", "locations": d / "Locations.txt"})
    assert b.shape == (30, 5)


def test_spatialbenchmarking_bad_locations_names_file(tmp_path):
    d = write_sb(tmp_path / "D", counts(10, 3), ["A", "B", "C"], xy=np.zeros((9, 2), int))
    with pytest.raises(DatasetError, match=r"Locations\.txt.*9 location rows but 10 spots"):
        LOADERS["spatialbenchmarking"]({"counts": d / "Insitu_count.txt", "locations": d / "Locations.txt"})


def test_spatialbenchmarking_non_numeric_names_file(tmp_path):
    d = tmp_path / "D"
    d.mkdir()
    (d / "Insitu_count.txt").write_text("A\tB\n1\t2\n3\toops\n")
    (d / "Locations.txt").write_text("x\ty\n0\t0\n1\t1\n")
    with pytest.raises(DatasetError, match=r"Insitu_count\.txt.*non-numeric value 'oops'"):
        LOADERS["spatialbenchmarking"]({"counts": d / "Insitu_count.txt", "locations": d / "Locations.txt"})


# --- st --------------------------------------------------------------------------------------------

def test_st_parses_coordinates_both_orientations(tmp_path):
    m = counts(6, 3)
    spots = ["10x11", "10.5x12.25", "X3x4", "1x1", "2x2", "7x9"]
    rows = ["\t" + "\t".join(["Doc2g", "Th", "Cdhr1"])] + [f"{s}\t" + "\t".join(map(str, r)) for s, r in zip(spots, m)]
    (tmp_path / "st.tsv").write_text("\n".join(rows) + "\n")
    a = LOADERS["st"]({"counts": "st.tsv"}, tmp_path)
    assert a.shape == (6, 3)
    np.testing.assert_allclose(a.obsm["spatial"][:3], [[10, 11], [10.5, 12.25], [3, 4]])
    # genes x spots, gzipped csv
    lines = ["," + ",".join(spots)] + [g + "," + ",".join(map(str, m[:, j])) for j, g in enumerate(["Doc2g", "Th", "Cdhr1"])]
    with gzip.open(tmp_path / "st_t.csv.gz", "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    b = LOADERS["st"]({"counts": tmp_path / "st_t.csv.gz"})
    np.testing.assert_array_equal(b.layers["counts"].toarray(), a.layers["counts"].toarray())


def test_st_without_spot_names_names_file(tmp_path):
    (tmp_path / "bad.tsv").write_text("\tA\tB\ncellA\t1\t2\ncellB\t3\t4\n")
    with pytest.raises(DatasetError, match=r"bad\.tsv.*XxY"):
        LOADERS["st"]({"counts": tmp_path / "bad.tsv"})


# --- scrna -----------------------------------------------------------------------------------------

def write_mtx(folder, m, genes, barcodes, prefix="", gz=True):
    """A 10x-style triplet (genes x cells matrix) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    sfx = ".gz" if gz else ""
    op = gzip.open if gz else open
    with op(folder / f"{prefix}matrix.mtx{sfx}", "wb") as fh:
        scipy.io.mmwrite(fh, sp.coo_matrix(m.T))
    with op(folder / f"{prefix}features.tsv{sfx}", "wt") as fh:
        fh.write("".join(f"ENSG{i:011d}.{i % 3 + 1}\t{g}\tGene Expression\n" for i, g in enumerate(genes)))
    with op(folder / f"{prefix}barcodes.tsv{sfx}", "wt") as fh:
        fh.write("".join(f"{b}\n" for b in barcodes))


def test_scrna_mtx_folder_concatenates_samples(tmp_path):
    m1, m2 = counts(20, 4), counts(15, 4)
    write_mtx(tmp_path / "raw", m1, ["Alb", "Apoa1", "Cyp2e1", "Alb"], [f"AAC{i}" for i in range(20)], prefix="GSM1_S1_")
    write_mtx(tmp_path / "raw", m2, ["Alb", "Apoa1", "Cyp2e1", "Alb"], [f"AAC{i}" for i in range(15)], prefix="GSM2_S2_")
    a = LOADERS["scrna"]({"path": "raw"}, tmp_path)
    assert a.shape == (35, 3)  # duplicated symbol summed, samples stacked
    assert a.obs_names[0].startswith("GSM1_S1:")
    assert a.layers["counts"].sum() == m1.sum() + m2.sum()


def test_scrna_dense_csv_and_h5ad(tmp_path):
    m = counts(12, 5)  # cells x genes
    genes = ["G1", "G2", "G3", "G4", "G5"]
    cells = [f"c{i}" for i in range(12)]
    lines = ["," + ",".join(cells)] + [g + "," + ",".join(map(str, m[:, j])) for j, g in enumerate(genes)]
    (tmp_path / "ref.dge.csv").write_text("\n".join(lines) + "\n")
    a = LOADERS["scrna"]({"path": tmp_path / "ref.dge.csv"})
    assert a.shape == (12, 5) and list(a.var_names) == genes
    np.testing.assert_array_equal(a.X.toarray(), m)
    h = ad.AnnData(X=sp.csr_matrix(m.astype(np.float32)))
    h.obs_names, h.var_names = cells, genes
    h.write_h5ad(tmp_path / "ref.h5ad")
    b = LOADERS["scrna"]({"path": tmp_path / "ref.h5ad"})
    np.testing.assert_array_equal(b.layers["counts"].toarray(), m)


def write_10x_h5(path, m, genes, barcodes):
    """A Cell Ranger v3 HDF5 matrix (genes x cells CSC) of cells x genes counts ``m``."""
    import h5py

    csc = sp.csc_matrix(np.asarray(m).T)
    with h5py.File(path, "w") as f:
        g = f.create_group("matrix")
        g["barcodes"] = np.array(barcodes, dtype="S")
        g["data"], g["indices"], g["indptr"] = csc.data.astype(np.int32), csc.indices, csc.indptr
        g["shape"] = np.array(csc.shape, dtype=np.int32)
        ft = g.create_group("features")
        ft["id"] = np.array([f"ENSG{i:011d}" for i in range(len(genes))], dtype="S")
        ft["name"] = np.array(genes, dtype="S")
        ft["feature_type"] = np.array(["Gene Expression"] * len(genes), dtype="S")
        ft["genome"] = np.array(["GRCh38"] * len(genes), dtype="S")


def test_scrna_folder_of_10x_h5_samples(tmp_path):
    """GEO's <GSE>_RAW.tar may hold one Cell Ranger .h5 per sample (HP's GSE142489 is 10x v3)."""
    m1, m2 = counts(9, 4), counts(6, 4)
    (tmp_path / "GSE1_RAW").mkdir()
    write_10x_h5(tmp_path / "GSE1_RAW" / "GSM1_veh_filtered_feature_bc_matrix.h5", m1, ["KRT5", "KRT8", "AR", "TP63"],
                 [f"AC{i}-1" for i in range(9)])
    write_10x_h5(tmp_path / "GSE1_RAW" / "GSM2_vitd_filtered_feature_bc_matrix.h5", m2, ["KRT5", "KRT8", "AR", "TP63"],
                 [f"AC{i}-1" for i in range(6)])
    a = LOADERS["scrna"]({"path": "GSE1_RAW"}, tmp_path)
    assert a.shape == (15, 4) and a.obs_names[0] == "GSM1_veh_filtered_feature_bc_matrix:AC0-1"
    np.testing.assert_array_equal(a.layers["counts"].toarray(), np.vstack([m1, m2]))


def test_scrna_labels_from_obs_column_and_bad_label_tables(tmp_path):
    """Cell-type labels land in obs['cell_type'] (Tangram's clusters mode); a wrong column or table is named."""
    from stbench.data.loaders.scrna import attach_labels

    m = counts(6, 3)
    a = ad.AnnData(X=sp.csr_matrix(m.astype(np.float32)))
    a.obs_names, a.var_names = [f"c{i}" for i in range(6)], ["A", "B", "C"]
    a.obs["integrated_snn_res.1"] = [0, 1, 1, 2, 0, 2]
    out = attach_labels(a.copy(), {"labels_column": "integrated_snn_res.1"})
    assert out.obs["cell_type"].tolist() == ["0", "1", "1", "2", "0", "2"]
    a.obs["with_na"] = pd.Categorical(["x", None, "y", "x", "y", None])
    assert attach_labels(a.copy(), {"labels_column": "with_na"}).obs["cell_type"].tolist() == \
        ["x", "unlabelled", "y", "x", "y", "unlabelled"]
    with pytest.raises(DatasetError, match=r"ref\.rds: has no cell metadata column 'seurat_clusters' \(columns: integrated_snn_res\.1"):
        attach_labels(a.copy(), {"labels_column": "seurat_clusters"}, where="ref.rds")
    (tmp_path / "meta.csv").write_text("barcode,type\nx1,T\nx2,B\n")
    with pytest.raises(DatasetError, match=r"meta\.csv: none of the reference's 6 cells is listed in column 'barcode'"):
        attach_labels(a.copy(), {"labels": "meta.csv", "labels_column": "type"}, tmp_path)
    with pytest.raises(DatasetError, match=r"meta\.csv: has no column 'celltype_major' \(columns: barcode, type\)"):
        attach_labels(a.copy(), {"labels": "meta.csv", "labels_column": "celltype_major"}, tmp_path)


def test_scrna_bad_inputs_name_the_file(tmp_path):
    write_mtx(tmp_path / "x", counts(5, 3), ["A", "B"], [f"b{i}" for i in range(5)], gz=False)
    with pytest.raises(DatasetError, match=r"matrix\.mtx.*lists 2 genes"):
        LOADERS["scrna"]({"path": tmp_path / "x"})
    (tmp_path / "ref.rds").write_bytes(b"X")
    with pytest.raises(DatasetError, match=r"ref\.rds.*convert"):
        LOADERS["scrna"]({"path": tmp_path / "ref.rds"})


# --- visium ----------------------------------------------------------------------------------------

def write_positions(path, barcodes, in_tissue, header):
    rows = [f"{b},{t},{i},{i + 1},{100 + i},{200 + i}" for i, (b, t) in enumerate(zip(barcodes, in_tissue))]
    if header:
        rows.insert(0, "barcode,in_tissue,array_row,array_col,pxl_row_in_fullres,pxl_col_in_fullres")
    path.write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("header", [False, True])
def test_visium_keeps_in_tissue_spots(tmp_path, header):
    m = counts(25, 4)
    bars = [f"ACGT-{i}" for i in range(25)]
    write_mtx(tmp_path / "filtered_feature_bc_matrix", m, ["Umod", "Kap", "Lrp2", "Slc34a1"], bars)
    extra = ["TTTT-1"]  # a position without counts is fine
    write_positions(tmp_path / "pos.csv", bars + extra, [1] * 20 + [0] * 5 + [1], header)
    a = LOADERS["visium"]({"matrix": "filtered_feature_bc_matrix", "positions": "pos.csv"}, tmp_path)
    assert a.shape == (20, 4)
    np.testing.assert_allclose(a.obsm["spatial"][3], [203, 103])  # (x, y) = (pxl_col, pxl_row)
    assert a.uns["source"]["platform"] == "10x Visium"


def test_visium_missing_positions_names_file(tmp_path):
    bars = [f"ACGT-{i}" for i in range(25)]
    write_mtx(tmp_path / "m", counts(25, 3), ["A", "B", "C"], bars)
    write_positions(tmp_path / "tissue_positions_list.csv", bars[:20], [1] * 20, False)
    with pytest.raises(DatasetError, match=r"tissue_positions_list\.csv.*5 barcode\(s\).*no position"):
        LOADERS["visium"]({"matrix": tmp_path / "m", "positions": tmp_path / "tissue_positions_list.csv"})
