import numpy as np
import anndata as ad
import pytest

from stbench.data.preprocess import PreprocessConfig, coefficient_of_variation, log_normalise, preprocess, select_genes


def test_log_normalise_matches_eq41_by_hand():
    c = np.array([[1, 3, 0], [2, 2, 4]], dtype=float)  # totals 4 and 8, median 6
    d, n = log_normalise(c)
    assert n == 6.0
    np.testing.assert_allclose(d[0], np.log([1 + 6 * 1 / 4, 1 + 6 * 3 / 4, 1]))
    np.testing.assert_allclose(d[1], np.log([1 + 6 * 2 / 8, 1 + 6 * 2 / 8, 1 + 6 * 4 / 8]))


def test_cv_and_selection_respect_detection_filter():
    rng = np.random.default_rng(0)
    d = rng.random((100, 5)) + 1.0          # 5 broadly expressed genes, low CV
    rare = np.zeros((100, 1)); rare[0] = 5.0  # expressed in a single spot: huge CV
    d = np.hstack([d, rare])
    cv = coefficient_of_variation(d)
    assert np.argmax(cv) == 5
    assert 5 in select_genes(d, 1, min_detection=0.0)       # the paper's literal rule picks it
    assert 5 not in select_genes(d, 3, min_detection=0.1)   # the default filter does not
    assert list(select_genes(d, 10, 0.1)) == [0, 1, 2, 3, 4]  # original order kept


def test_preprocess_selects_top_genes_and_keeps_spot_totals(small_dataset):
    a = small_dataset[0]
    pre, qc = preprocess(a, PreprocessConfig(n_genes=20, min_detection=0.1))
    assert pre.shape == (a.n_obs, 20)
    assert qc["genes_kept"] == 20 and qc["spots_kept"] == a.n_obs
    assert 0 < qc["zero_fraction_selected"] < 1
    assert (pre.layers["counts"] >= 0).all()
    np.testing.assert_array_equal(pre.var_names, [g for g in a.var_names if g in set(pre.var_names)])
    total = np.asarray(a.layers["counts"].sum(1)).ravel()
    np.testing.assert_allclose(pre.obs["total_counts"], total)
    np.testing.assert_allclose(pre.obs["other_counts"] + pre.layers["counts"].sum(1), total)


def test_preprocess_neither_takes_nor_writes_the_task_steps_options(small_dataset):
    """scale and library_size belong to the task step (stbench.data.task.TaskSpec): preprocessing does not accept them,
    and neither the h5ad (uns, obs, var, layers) nor qc.json names them."""
    with pytest.raises(ValueError, match="unknown preprocess option"):
        PreprocessConfig.from_dict({"scale": "zscore"})
    with pytest.raises(TypeError):
        PreprocessConfig(library_size="all")
    pre, qc = preprocess(small_dataset[0], PreprocessConfig(n_genes=20, min_detection=0.1))

    def keys(x):
        if isinstance(x, dict):
            return set(x) | {k for v in x.values() for k in keys(v)}
        return set()
    stored = keys(dict(pre.uns)) | set(pre.obs) | set(pre.var) | set(pre.layers) | set(pre.obsm)
    assert not {"scale", "library_size"} & stored, sorted(stored)
    assert not {"scale", "library_size"} & set(qc["config"])
    assert "protocol" not in pre.uns


def test_preprocess_config_rejects_unknown_options():
    with pytest.raises(ValueError, match="unknown preprocess option"):
        PreprocessConfig.from_dict({"n_gene": 10})
    with pytest.raises(ValueError, match="preprocess.n_genes must be of type integer"):
        PreprocessConfig(n_genes="many")


def test_too_few_detected_genes_is_a_clear_error():
    from stbench.errors import DatasetError

    x = np.zeros((30, 12)); x[:, 0] = 5; x[0, 1:] = 1
    a = ad.AnnData(X=x)
    with pytest.raises(DatasetError, match="detected in >= 50% of spots"):
        preprocess(a, PreprocessConfig(min_detection=0.5), path="toy.h5ad")


@pytest.mark.parametrize("how", ["cv", "hvg", "mean", "all"])
def test_gene_selection_options(small_dataset, how):
    a = small_dataset[0]
    pre, _ = preprocess(a, PreprocessConfig(gene_selection=how, n_genes=15, min_detection=0.1))
    d, _ = log_normalise(a.layers["counts"])
    eligible = ((d > 0).mean(0) >= 0.1)
    assert pre.n_vars == (int(eligible.sum()) if how == "all" else 15)
    assert set(pre.var_names) <= set(a.var_names[eligible])
    if how == "mean":
        kept = np.isin(a.var_names, pre.var_names)
        assert d[:, kept].mean(0).min() >= d[:, eligible & ~kept].mean(0).max()


def test_gene_selection_hvg_matches_scanpy_and_list_reads_a_file(small_dataset, tmp_path):
    import scanpy as sc

    a = small_dataset[0]
    pre, _ = preprocess(a, PreprocessConfig(gene_selection="hvg", n_genes=12, min_detection=0.0, hvg_flavor="seurat_v3"))
    ref = a.copy()
    ref.X = a.layers["counts"].copy()
    sc.pp.highly_variable_genes(ref, n_top_genes=12, flavor="seurat_v3", layer="counts")
    assert set(pre.var_names) == set(ref.var_names[ref.var["highly_variable"]])
    f = tmp_path / "genes.txt"
    f.write_text("# my panel\n" + "\n".join(list(a.var_names[:5]) + ["NOT_A_GENE"]) + "\n")
    pre, _ = preprocess(a, PreprocessConfig(gene_selection="list", gene_list=str(f), min_detection=0.0))
    assert list(pre.var_names) == list(a.var_names[:5])
    from stbench.errors import DatasetError

    with pytest.raises(DatasetError, match="gene_selection 'list' needs gene_list"):
        preprocess(a, PreprocessConfig(gene_selection="list"))
