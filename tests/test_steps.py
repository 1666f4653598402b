"""The workflow steps as plain functions, and the one home of dataset entry (stbench.data.loaders)."""

import numpy as np
import pytest

from stbench.errors import DatasetError
from stbench.data.dataset_blocks import FORMATS, dataset_inputs, format_of, input_folders, load_dataset
from stbench.steps import mask_step, prepare, preprocess_step, task_step


def test_every_format_is_known_in_one_place():
    assert {"h5ad", "tables", "visium", "st", "spatialbenchmarking", "scrna", "simulate", "recipe"} == set(FORMATS)
    assert format_of({"recipe": "MOB"}) == "recipe" and format_of({"format": "visium"}) == "visium"


def test_dataset_inputs_list_every_file_of_a_block():
    assert dataset_inputs({"format": "visium", "matrix": "d/m.h5", "positions": "d/p.csv"}) == ["d/m.h5", "d/p.csv"]
    assert dataset_inputs({"format": "tables", "counts": "c.csv", "locations": "l.csv", "reference": "r.h5ad"}) == \
        ["c.csv", "l.csv", "r.h5ad"]
    assert dataset_inputs({"format": "h5ad", "path": "x.h5ad", "reference": {"path": "mtx/", "genes": "g.tsv"}}) == \
        ["x.h5ad", "mtx/", "g.tsv"]
    assert dataset_inputs({"recipe": "MOB", "source": "authors"}, "cache") == \
        ["cache/MOB/authors/manifest.json", "cache/MOB/geo/manifest_reference.json"]  # the recipe's reference_source
    assert dataset_inputs({"format": "st", "counts": "c.tsv", "reference": {"path": "r.csv", "labels": "meta.csv"}}) == \
        ["c.tsv", "r.csv", "meta.csv"]
    assert dataset_inputs({"format": "simulate"}) == []
    assert input_folders({"format": "tables", "counts": "/a/b/c.csv", "locations": "/a/l.csv"}) == ["/a", "/a/b"]


def test_simulate_is_a_format_with_a_reference(tmp_path):
    adata, ref, where = load_dataset("s", {"format": "simulate", "n_rows": 5, "n_cols": 5, "n_genes": 30, "n_cells": 50})
    assert adata.n_obs == 25 and ref is not None and "simulated" in where
    rep = prepare("s", {"format": "simulate", "n_rows": 5, "n_cols": 5, "n_genes": 30, "n_cells": 50},
                  tmp_path / "prepared.h5ad", tmp_path / "prepare.json")
    assert rep["has_reference"] and (tmp_path / "reference.h5ad").exists()


def test_task_step_refuses_a_mask_of_another_shape(tmp_path, small_dataset):
    from stbench.atomic import write_h5ad
    from stbench.data.masks import MaskSpec, make_mask, save_mask
    from stbench.data.preprocess import PreprocessConfig

    write_h5ad(tmp_path / "prepared.h5ad", small_dataset[0])
    preprocess_step(tmp_path / "prepared.h5ad", PreprocessConfig(n_genes=30), tmp_path / "pre.h5ad", tmp_path / "qc.json")
    mask_step(tmp_path / "pre.h5ad", MaskSpec(), 0, tmp_path / "mask.npz", dataset="d")
    task_step(tmp_path / "pre.h5ad", tmp_path / "mask.npz", tmp_path / "task.npz", dataset="d")
    with np.load(tmp_path / "task.npz") as z:
        assert set(z.files) >= {"observed", "observed_mask", "observed_counts", "coords", "library_size", "meta"}
    held, train = make_mask(np.ones((4, 4), bool), MaskSpec(), 0)
    save_mask(tmp_path / "bad.npz", held, train, MaskSpec(), 0)
    with pytest.raises(DatasetError, match=r"bad.npz: mask shape \(4, 4\) does not match"):
        task_step(tmp_path / "pre.h5ad", tmp_path / "bad.npz", tmp_path / "t2.npz")
    assert not (tmp_path / "t2.npz").exists()
