"""Each bad input gives a clear error naming the file and the problem, and leaves no output."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from stbench.errors import DatasetError
from stbench.steps import prepare


def _tables(tmp_path, counts: pd.DataFrame, locs: pd.DataFrame | None = None):
    c, l = tmp_path / "counts.csv", tmp_path / "locations.csv"
    counts.to_csv(c)
    if locs is None:
        rng = np.random.default_rng(0)
        locs = pd.DataFrame(rng.random((len(counts), 2)) * 100, index=counts.index, columns=["x", "y"])
    locs.to_csv(l)
    return {"format": "tables", "counts": str(c), "locations": str(l)}


def _good_counts(n=30, g=15, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.poisson(3, (n, g)) + 1, index=[f"s{i}" for i in range(n)], columns=[f"G{j}" for j in range(g)])


def _run(tmp_path, spec):
    out = tmp_path / "out" / "prepared.h5ad"
    try:
        prepare("toy", spec, out, tmp_path / "out" / "prepare.json")
    finally:
        leftovers = list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else []
        assert leftovers == [], f"partial output left behind: {leftovers}"


def test_good_tables_prepare(tmp_path):
    out = tmp_path / "ok" / "prepared.h5ad"
    rep = prepare("toy", _tables(tmp_path, _good_counts()), out, tmp_path / "ok" / "prepare.json")
    assert rep["spots"] == 30 and out.exists()


def test_missing_coordinates(tmp_path):
    c = _good_counts()
    locs = pd.DataFrame({"x": np.arange(29.0), "y": np.arange(29.0)}, index=c.index[:29])
    with pytest.raises(DatasetError, match=r"locations\.csv: missing coordinates for 1 spot"):
        _run(tmp_path, _tables(tmp_path, c, locs))


def test_nan_coordinates(tmp_path):
    c = _good_counts()
    locs = pd.DataFrame({"x": np.arange(30.0), "y": np.arange(30.0)}, index=c.index)
    locs.iloc[3, 0] = np.nan
    with pytest.raises(DatasetError, match=r"locations\.csv: missing spot coordinates"):
        _run(tmp_path, _tables(tmp_path, c, locs))


@pytest.mark.parametrize("value,msg", [(np.nan, "1 NaN value"), (-2, "1 negative value"), (2.5, "1 non-integer value")])
def test_bad_count_values(tmp_path, value, msg):
    c = _good_counts().astype(float)
    c.iloc[2, 3] = value
    with pytest.raises(DatasetError, match=rf"counts\.csv: counts contain {msg}"):
        _run(tmp_path, _tables(tmp_path, c))


def test_non_numeric_count(tmp_path):
    c = _good_counts().astype(object)
    c.iloc[1, 1] = "abc"
    with pytest.raises(DatasetError, match=r"counts\.csv: counts table has a non-numeric value 'abc' at row 's1', column 'G1'"):
        _run(tmp_path, _tables(tmp_path, c))


def test_duplicate_gene_names(tmp_path):
    c = _good_counts()
    c.columns = ["G0"] + list(c.columns[1:-1]) + ["G0"]
    with pytest.raises(DatasetError, match=r"counts\.csv: 1 duplicate gene name\(s\): G0"):
        _run(tmp_path, _tables(tmp_path, c))


def test_duplicate_spot_names_h5ad(tmp_path):
    a = ad.AnnData(X=sp.csr_matrix(_good_counts().to_numpy().astype(np.float32)))
    a.obs_names = ["s0", "s0"] + [f"s{i}" for i in range(2, 30)]
    a.var_names = [f"G{j}" for j in range(15)]
    a.obsm["spatial"] = np.random.default_rng(0).random((30, 2))
    a.write_h5ad(tmp_path / "dup.h5ad")
    with pytest.raises(DatasetError, match=r"dup\.h5ad: 1 duplicate spot name\(s\): s0"):
        _run(tmp_path, {"format": "h5ad", "path": str(tmp_path / "dup.h5ad")})


def test_missing_spatial_in_h5ad(tmp_path):
    a = ad.AnnData(X=_good_counts().to_numpy().astype(np.float32))
    a.write_h5ad(tmp_path / "nospatial.h5ad")
    with pytest.raises(DatasetError, match=r"nospatial\.h5ad: missing spot coordinates: obsm\['spatial'\] is absent"):
        _run(tmp_path, {"format": "h5ad", "path": str(tmp_path / "nospatial.h5ad")})


def test_empty_spots(tmp_path):
    c = _good_counts()
    c.iloc[5] = 0
    with pytest.raises(DatasetError, match=r"counts\.csv: 1 empty spot\(s\) with zero total count: s5"):
        _run(tmp_path, _tables(tmp_path, c))


def test_too_few_spots_and_genes(tmp_path):
    with pytest.raises(DatasetError, match=r"too few spots: 5 \(need at least 20\)"):
        _run(tmp_path, _tables(tmp_path, _good_counts(n=5)))
    with pytest.raises(DatasetError, match=r"too few genes: 3 \(need at least 10\)"):
        _run(tmp_path, _tables(tmp_path, _good_counts(g=3)))


def test_no_gene_overlap_with_reference(tmp_path):
    spec = _tables(tmp_path, _good_counts())
    ref = ad.AnnData(X=sp.csr_matrix(np.ones((25, 5), np.float32)))
    ref.obs_names = [f"c{i}" for i in range(25)]
    ref.var_names = [f"ENSG{i:011d}" for i in range(5)]
    ref.write_h5ad(tmp_path / "ref.h5ad")
    spec["reference"] = str(tmp_path / "ref.h5ad")
    with pytest.raises(DatasetError, match=r"\(reference\): no gene overlap with the spatial data"):
        _run(tmp_path, spec)


def test_missing_and_unparsable_files(tmp_path):
    with pytest.raises(DatasetError, match=r"nosuch\.csv: file not found"):
        _run(tmp_path, {"format": "tables", "counts": str(tmp_path / "nosuch.csv"), "locations": "x"})
    bad = tmp_path / "corrupt.h5ad"
    bad.write_bytes(b"not an hdf5 file")
    with pytest.raises(DatasetError, match=r"corrupt\.h5ad: cannot be read as h5ad"):
        _run(tmp_path, {"format": "h5ad", "path": str(bad)})


@pytest.mark.parametrize("where,value", [("one", 1e12), ("gene", 1e20)])
def test_implausibly_large_counts(tmp_path, where, value):
    """Issue 22: one count of 1e12, or a whole gene at 1e20, used to be scored 'ok' (contract.MAX_COUNT)."""
    c = _good_counts().astype(float)
    if where == "one":
        c.iloc[2, 3] = value
    else:
        c.iloc[:, 0] = value
    with pytest.raises(DatasetError, match=r"counts\.csv: counts contain \d+ value\(s\) above 1e\+07"):
        _run(tmp_path, _tables(tmp_path, c))


@pytest.mark.parametrize("xy,msg", [((5.0, 5.0), "every spot has the same coordinate"),
                                    ((1e300, 0.0), "beyond 1e\\+08")])
def test_degenerate_coordinates_are_errors(tmp_path, xy, msg):
    c = _good_counts()
    locs = pd.DataFrame({"x": np.full(30, xy[0]), "y": np.full(30, xy[1])}, index=c.index)
    if xy[0] > 1e100:
        locs["y"] = np.arange(30.0)
    with pytest.raises(DatasetError, match=msg):
        _run(tmp_path, _tables(tmp_path, c, locs))


def test_spots_on_one_line_are_a_named_warning(tmp_path):
    from stbench.data.contract import CoordinateWarning

    c = _good_counts()
    locs = pd.DataFrame({"x": np.arange(30.0), "y": np.zeros(30)}, index=c.index)
    with pytest.warns(CoordinateWarning, match="degenerate"):
        prepare("toy", _tables(tmp_path, c, locs), tmp_path / "ok" / "prepared.h5ad", tmp_path / "ok" / "prepare.json")


def test_zero_genes_after_filtering_names_the_users_file_and_leaves_nothing(tmp_path):
    from stbench.data.preprocess import PreprocessConfig
    from stbench.steps import preprocess_step

    spec = _tables(tmp_path, _good_counts())
    d = tmp_path / "results" / "toy"
    prepare("toy", spec, d / "prepared.h5ad", d / "prepare.json")
    opts = PreprocessConfig(gene_selection="list", gene_list=str(tmp_path / "none.txt"), min_detection=0.0)
    (tmp_path / "none.txt").write_text("NotAGene\n")
    with pytest.raises(DatasetError, match=r"counts\.csv \(prepared as .*prepared\.h5ad\): only 0 gene\(s\) kept"):
        preprocess_step(d / "prepared.h5ad", opts, d / "preprocessed.h5ad", d / "qc.json")
    assert list(d.iterdir()) == []
