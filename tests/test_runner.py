import json

import numpy as np
import pytest

from stbench.errors import MethodError
from stbench.registry import Method, discover, get_method, validate_manifest
from stbench.runner import check_output, run_method
from stbench.task import build_task


def _write_method(root, name, body, params="{}"):
    d = root / name
    d.mkdir(parents=True)
    (d / "method.yaml").write_text(f"name: {name}\ntitle: {name}\ncitation: test\nenv: envs/core.yaml\nparams: {params}\n")
    (d / "impute.py").write_text(body)
    return d


def test_failing_method_becomes_a_failed_record(tmp_path, small_pre, small_mask):
    _write_method(tmp_path / "m", "boom", "def impute(task):\n    raise RuntimeError('kaboom')\n")
    m = get_method("boom", tmp_path / "m")
    rec = run_method(m, {}, build_task(small_pre, *small_mask), tmp_path / "out")
    assert rec["status"] == "failed" and "kaboom" in rec["error"]
    saved = json.loads((tmp_path / "out" / "run.json").read_text())
    assert saved["status"] == "failed" and saved["wall_time_s"] >= 0 and "versions" in saved
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
    rec = run_method(m, {}, build_task(small_pre, *small_mask), tmp_path / "out")
    assert rec["status"] == "failed" and msg in rec["error"] and "method 'bad'" in rec["error"]


def test_successful_run_records_provenance(tmp_path, small_pre, small_mask):
    m = discover()["knn"]
    rec = run_method(m, {"k": 3}, build_task(small_pre, *small_mask, seed=4), tmp_path / "out")
    assert rec["status"] == "ok" and rec["seed"] == 4 and rec["peak_rss_mb"] > 0 and rec["device"] == "cpu"
    with np.load(tmp_path / "out" / "imputed.npz") as z:
        assert z["imputed"].dtype == np.float32


def test_unknown_method_and_parameters_are_clear(tmp_path):
    from stbench.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown method 'nosuch'; available methods: .*knn"):
        get_method("nosuch")
    with pytest.raises(ConfigError, match="unknown parameter.*kk.*known: k"):
        discover()["knn"].params(overrides={"kk": 2})


def test_manifest_validation_names_the_file(tmp_path):
    d = tmp_path / "x"; d.mkdir(); (d / "impute.py").write_text("")
    with pytest.raises(MethodError, match="method.yaml: missing required key 'citation'"):
        validate_manifest({"name": "x", "title": "X", "params": {}}, d)
    with pytest.raises(MethodError, match="differs from the folder name"):
        validate_manifest({"name": "y", "title": "X", "citation": "c", "params": {}}, d)
