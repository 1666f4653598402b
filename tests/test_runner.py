import json

import numpy as np
import pytest

from stbench.run.registry import discover, get_method
from stbench.run.runner import run_method
from stbench.data.task import build_task, save_task


def _task_file(tmp_path, small_pre, small_mask, seed=0):
    save_task(tmp_path / "task.npz", build_task(small_pre, *small_mask, seed=seed))
    return tmp_path / "task.npz"


def _write_method(root, name, body, params="{}"):
    d = root / name
    d.mkdir(parents=True)
    (d / "method.yaml").write_text(f"name: {name}\ntitle: {name}\ncitation: test\nenv: envs/core.yaml\nparams: {params}\n")
    (d / "impute.py").write_text(body)
    return d


def test_failing_method_becomes_a_failed_record(tmp_path, small_pre, small_mask):
    _write_method(tmp_path / "m", "boom", "def impute(task):\n    raise RuntimeError('kaboom')\n")
    m = get_method("boom", tmp_path / "m")
    rec = run_method(m, {}, _task_file(tmp_path, small_pre, small_mask), tmp_path / "out")
    assert rec["status"] == "failed" and "kaboom" in rec["error"]
    saved = json.loads((tmp_path / "out" / "run.json").read_text())
    assert saved["status"] == "failed" and saved["wall_time_s"] >= 0 and "versions" in saved
    assert "RuntimeError: kaboom" in saved["traceback"]
    with np.load(tmp_path / "out" / "imputed.npz") as z:
        assert "imputed" not in z


@pytest.mark.parametrize("body,msg", [
    ("import numpy as np\ndef impute(task):\n    return np.zeros((3, 3))\n", "returned shape (3, 3)"),
    ("import numpy as np\ndef impute(task):\n    return np.full(task.observed.shape, np.nan)\n", "non-finite"),
    ("def impute(task):\n    return 'nope'\n", "non-numeric"),
])
def test_invalid_outputs_are_named(tmp_path, small_pre, small_mask, body, msg):
    _write_method(tmp_path / "m", "bad", body)
    m = get_method("bad", tmp_path / "m")
    rec = run_method(m, {}, _task_file(tmp_path, small_pre, small_mask), tmp_path / "out")
    assert rec["status"] == "failed" and msg in rec["error"] and "method 'bad'" in rec["error"]


def test_successful_run_records_provenance(tmp_path, small_pre, small_mask):
    m = discover()["knn"]
    rec = run_method(m, {"k": 3}, _task_file(tmp_path, small_pre, small_mask, seed=4), tmp_path / "out")
    assert rec["status"] == "ok" and rec["seed"] == 4 and rec["peak_rss_mb"] > 0 and rec["device"] == "cpu"
    with np.load(tmp_path / "out" / "imputed.npz") as z:
        assert z["imputed"].dtype == np.float32


def test_method_that_dies_is_failed_and_one_that_needs_a_missing_reference_is_skipped(tmp_path, small_pre, small_mask):
    _write_method(tmp_path / "m", "dies", "import os\ndef impute(task):\n    os._exit(3)\n")
    rec = run_method(get_method("dies", tmp_path / "m"), {}, _task_file(tmp_path, small_pre, small_mask), tmp_path / "o1")
    assert rec["status"] == "failed" and "exit code 3" in rec["error"]
    d = _write_method(tmp_path / "m2", "needsref", "def impute(task):\n    return task.observed\n")
    (d / "method.yaml").write_text((d / "method.yaml").read_text() + "needs: {reference: true}\n")
    rec = run_method(get_method("needsref", tmp_path / "m2"), {}, _task_file(tmp_path, small_pre, small_mask), tmp_path / "o2")
    assert rec["status"] == "skipped: no reference" and "needs a paired scRNA-seq reference" in rec["error"]
    assert json.loads((tmp_path / "o2" / "run.json").read_text())["status"] == "skipped: no reference"


def test_a_method_that_does_not_apply_is_skipped_with_its_reason(tmp_path, small_pre, small_mask):
    """methodkit.NotApplicable (e.g. Tangram's clusters mode without cell-type labels) gives a skipped row."""
    body = ("from stbench.kit.methodkit import NotApplicable\n"
            "def impute(task):\n    raise NotApplicable('no cell-type labels in the reference (obs columns: none)')\n")
    m = get_method("na", _write_method(tmp_path / "m", "na", body).parent)
    rec = run_method(m, {}, _task_file(tmp_path, small_pre, small_mask), tmp_path / "o")
    assert rec["status"] == "skipped: no cell-type labels in the reference"
    assert "obs columns: none" in rec["error"]
    assert json.loads((tmp_path / "o" / "run.json").read_text())["status"] == rec["status"]
