"""Every method folder gets these tests for free: manifest, output contract, and no leakage.

Methods run with their ``test`` preset if they define one (tiny settings), else ``quick``.
"""

import hashlib

import numpy as np
import pytest

from stbench.registry import discover
from stbench.task import build_task

METHODS = discover()


def _params(method):
    presets = method.manifest.get("presets") or {}
    return method.params("test" if "test" in presets else "quick")


def _fingerprint(task) -> str:
    """A hash of everything the task exposes to a method (arrays, names, reference)."""
    h = hashlib.sha256()
    for name in task.__dataclass_fields__:
        v = getattr(task, name)
        if name == "scratch":
            continue
        if isinstance(v, np.ndarray):
            h.update(name.encode()); h.update(np.ascontiguousarray(v).tobytes())
        elif hasattr(v, "X"):  # AnnData reference
            x = v.X.toarray() if hasattr(v.X, "toarray") else np.asarray(v.X)
            h.update(x.tobytes())
        else:
            h.update(repr(v).encode())
    return h.hexdigest()


def _task(pre, held, train, reference, tmp_path, seed=0):
    return build_task(pre, held, train, reference=reference, seed=seed, device="cpu", scratch=tmp_path, dataset="small")


def test_methods_are_discovered():
    assert {"mean", "knn"} <= set(METHODS)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_manifest_is_complete(name):
    m = METHODS[name]
    for key in ("title", "citation", "params", "env"):
        assert m.manifest.get(key), f"{name}: method.yaml lacks {key}"
    assert set(m.resources) >= {"gpu", "mem_mb", "threads"}
    assert (m.folder.parent.parent / m.manifest["env"]).exists(), f"{name}: env file {m.manifest['env']} missing"
    m.params("quick")  # presets resolve


@pytest.mark.parametrize("name", sorted(METHODS))
def test_output_contract_on_demo(name, small_dataset, small_pre, small_mask, tmp_path):
    m = METHODS[name]
    held, train = small_mask
    task = _task(small_pre, held, train, small_dataset[1], tmp_path)
    out = m.load_impute()(task, **_params(m))
    out = np.asarray(out)
    assert out.shape == (task.n_spots, task.n_genes)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_no_leakage_of_held_out_truth(name, small_dataset, small_pre, small_mask, tmp_path):
    """Changing the truth of the held-out entries changes neither the task nor the method's output."""
    m = METHODS[name]
    held, train = small_mask
    task_a = _task(small_pre, held, train, small_dataset[1], tmp_path / "a")
    other = small_pre.copy()
    rng = np.random.default_rng(123)
    x = np.asarray(other.X).copy()
    x[held] = rng.normal(5.0, 3.0, size=held.sum())
    other.X = x
    counts = np.asarray(other.layers["counts"]).copy()
    counts[held] = rng.integers(0, 1000, size=held.sum())
    other.layers["counts"] = counts
    task_b = _task(other, held, train, small_dataset[1], tmp_path / "b")
    assert _fingerprint(task_a) == _fingerprint(task_b), "the task exposes held-out truth"
    for t in (task_a, task_b):
        assert np.isnan(t.observed[held]).all() and np.isnan(t.observed_counts[held]).all()
    fn = m.load_impute()
    out_a = np.asarray(fn(task_a, **_params(m)))
    out_b = np.asarray(fn(task_b, **_params(m)))
    np.testing.assert_array_equal(out_a, out_b)


def test_task_arrays_are_read_only(small_pre, small_mask):
    task = build_task(small_pre, *small_mask)
    with pytest.raises(ValueError):
        task.observed[0, 0] = 1.0
