import numpy as np

from stbench.data.contract import validate_dataset, validate_reference
from stbench.data.simulate import hex_grid, simulate_demo


def test_same_seed_identical_other_seed_different(tmp_path):
    a1, r1 = simulate_demo(seed=5, n_rows=6, n_cols=6, n_genes=30, n_cells=50)
    a2, r2 = simulate_demo(seed=5, n_rows=6, n_cols=6, n_genes=30, n_cells=50)
    a3, _ = simulate_demo(seed=6, n_rows=6, n_cols=6, n_genes=30, n_cells=50)
    assert (a1.X != a2.X).nnz == 0 and (r1.X != r2.X).nnz == 0
    assert (a1.X != a3.X).nnz > 0
    a1.write_h5ad(tmp_path / "a.h5ad"); a2.write_h5ad(tmp_path / "b.h5ad")
    import anndata as ad
    assert (ad.read_h5ad(tmp_path / "a.h5ad").X != ad.read_h5ad(tmp_path / "b.h5ad").X).nnz == 0


def test_demo_follows_the_contract_and_looks_like_visium():
    a, ref = simulate_demo(seed=0)
    validate_dataset(a, "demo")
    validate_reference(ref, "demo reference", a.var_names)
    assert a.shape == (600, 400) and 3 <= a.obs["domain"].nunique() <= 5
    c = a.layers["counts"].toarray()
    assert 0.4 < (c == 0).mean() < 0.8                      # realistic sparsity
    assert 500 < np.median(c.sum(1)) < 5000                 # realistic depth for 400 genes
    assert set(a.var_names) < set(ref.var_names)  # the reference covers the panel, and more
    assert np.median(np.asarray(ref.layers["counts"].sum(1))) > np.median(c.sum(1))  # other depth


def test_hex_grid_neighbours_are_equidistant():
    xy = hex_grid(4, 4, spacing=100.0)
    from scipy.spatial import cKDTree

    d, _ = cKDTree(xy).query(xy[5:6], k=7)
    np.testing.assert_allclose(d[0, 1:], 100.0, rtol=1e-9)  # an interior spot has 6 neighbours at one spacing
