"""The method registry: discovery, manifests, the one parameter resolver, in-process imports."""

import pytest

from stbench.errors import ConfigError, MethodError
from stbench.run.registry import discover, get_method, validate_manifest


def test_resolution_order_is_defaults_then_preset_then_overrides():
    m = discover()["stmcdi"]
    paper, quick = m.params(), m.params("quick")
    assert paper["epochs"] == 2000 and quick["epochs"] == 40 and quick["sampler"] == "ddim"
    assert m.params("quick", {"epochs": 5})["epochs"] == 5
    assert m.params("paper") == paper


def test_unknown_method_preset_and_parameters_are_clear():
    with pytest.raises(ConfigError, match="unknown method 'nosuch'; available methods: .*knn"):
        get_method("nosuch")
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) kk; known: k"):
        discover()["knn"].params(overrides={"kk": 2})
    with pytest.raises(ConfigError, match="has no preset 'fast'"):
        discover()["knn"].params("fast")


def test_param_schema_rejects_wrong_types_and_choices():
    with pytest.raises(ConfigError, match=r"parameter k='banana' is invalid .*allowed: type: integer, minimum: 1"):
        discover()["knn"].params(overrides={"k": "banana"})
    with pytest.raises(ConfigError, match=r"parameter optimizer='sgd' is invalid .*enum: \['adamw', 'adam'\]"):
        discover()["stmcdi"].params(overrides={"optimizer": "sgd"})
    with pytest.raises(ConfigError, match="parameter axis='row'"):
        discover()["mean"].params(overrides={"axis": "row"})


def test_manifest_validation_names_the_file(tmp_path):
    d = tmp_path / "x"
    d.mkdir()
    (d / "impute.py").write_text("")
    with pytest.raises(MethodError, match="method.yaml: missing required key 'citation'"):
        validate_manifest({"name": "x", "title": "X", "params": {}}, d)
    with pytest.raises(MethodError, match="differs from the folder name"):
        validate_manifest({"name": "y", "title": "X", "citation": "c", "params": {}}, d)
    with pytest.raises(MethodError, match="unknown key.*quick_params"):
        validate_manifest({"name": "x", "title": "X", "citation": "c", "params": {}, "quick_params": {}}, d)
    with pytest.raises(MethodError, match="param_schema names unknown parameter"):
        validate_manifest({"name": "x", "title": "X", "citation": "c", "params": {}, "param_schema": {"a": {}}}, d)


def test_load_module_imports_sibling_modules():
    m = discover()["stmcdi"]
    assert hasattr(m.load_module("graph"), "knn_edge_index")
    assert callable(m.load_impute())
