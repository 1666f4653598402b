"""A method's parameters have one home: defaults in method.yaml ``params``, limits in ``param_schema``.

``impute(task, **params)`` gets every parameter resolved by the registry (the sandbox resolves whatever a
caller passes), so a keyword default in the method's code is a second copy that can drift (gimVI's
``normalized`` once did). Read from the source (no method is imported), so this is fast.
"""

import ast
import re

import pytest

from stbench.errors import ConfigError
from stbench.run.registry import discover
from stbench.run.sandbox import run_in_sandbox

METHODS = discover()
ENTRY_FILES = ("impute.py", "ensemble.py")  # impute/run and every helper they hand parameters to live here


def repeated_defaults(source: str, params) -> list[str]:
    """``function(name=...)`` for every top-level function (or method of a top-level class) of ``source`` that gives
    a default to a parameter named in ``params``."""
    found = []
    for node in ast.parse(source).body:
        funcs = [node] if isinstance(node, ast.FunctionDef) else \
            [f for f in node.body if isinstance(f, ast.FunctionDef)] if isinstance(node, ast.ClassDef) else []
        for fn in funcs:
            a = fn.args
            positional = a.posonlyargs + a.args
            named = list(zip(positional[len(positional) - len(a.defaults):], a.defaults))
            named += [(arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]
            found += [f"{fn.name}({arg.arg}={ast.unparse(d)})" for arg, d in named if arg.arg in params]
    return found


def test_the_scan_sees_a_repeated_default():
    """The check below can fail: a keyword default of a declared parameter, positional or keyword-only, is found."""
    src = "def impute(task, k=5, *, axis='spot', other=1):\n    pass\nclass M:\n    def run(self, k=3):\n        pass\n"
    assert repeated_defaults(src, {"k", "axis"}) == ["impute(k=5)", "impute(axis='spot')", "run(k=3)"]
    assert repeated_defaults("def impute(task, *, k, axis):\n    pass\n", {"k", "axis"}) == []


@pytest.mark.parametrize("name", sorted(METHODS))
def test_no_method_repeats_a_manifest_default(name):
    m = METHODS[name]
    params = set(m.manifest.get("params") or {})
    found = []
    for file in ENTRY_FILES:
        path = m.folder / file
        if path.exists():
            found += [f"{path.relative_to(m.folder.parent.parent)}: {f}"
                      for f in repeated_defaults(path.read_text(), params)]
    assert not found, (f"{name}: method.yaml is the only home of its defaults; remove the keyword default(s) "
                       f"(keyword-only without a default is fine): {'; '.join(found)}")


def test_resolve_completes_and_keeps_a_resolved_set():
    m = METHODS["stmcdi"]
    assert m.resolve({}) == m.params()
    test = m.params("test")
    assert m.resolve(test) == test
    assert m.resolve({"n_samples": 3}) == {**m.params(), "n_samples": 3}


# limits that were hand-written checks in the method code (`_check` / `check_params`) and live in param_schema now
FORMER_CHECKS = [
    ("cpg_transformer", "window", 4),              # odd
    ("cpg_transformer", "mask_random_p", 1.0),
    ("dca", "validation_split", 1.0),
    ("dca", "activation", "swish"),
    ("graphsci", "corr_threshold", 1.0),
    ("scgnn", "knn_distance", "manhattan"),
    ("scgnn", "gae_lr", 0.0),
    ("spaformer", "mask_node_rate", 0.0),
    ("spaformer", "nb_features", 0),
    ("stagate", "hidden_dims", [512]),
    ("stagate", "pre_n_neighbors", 1),
    ("graphcpg", "segment_size", 20),              # odd: the window is centred on the target locus
    ("graphcpg", "max_cells", 1),
    ("csdi", "aggregate", "mode"),
    ("stmcdi", "train_mask_ratio", 1.0),
    ("stmcdi", "encoder", "transformer"),
]


@pytest.mark.parametrize("name,param,bad", FORMER_CHECKS, ids=[f"{n}-{p}" for n, p, _ in FORMER_CHECKS])
def test_a_former_hand_written_limit_is_rejected_by_the_registry(name, param, bad):
    m = METHODS[name]
    m.params("test")  # the preset itself is fine
    with pytest.raises(ConfigError, match=re.escape(f"method '{name}': parameter {param}={bad!r} is invalid (") + ".*allowed: "):
        m.params("test", {param: bad})


def test_the_sandbox_rejects_a_bad_value_before_any_child_starts(tmp_path):
    """Whoever calls the runner (the workflow, a test, a benchmark): the parameters are resolved and validated
    before the box is built, so the error names the method and the parameter, not a crash inside the method."""
    missing = tmp_path / "no_such_task.npz"  # never opened: the parameters fail first
    with pytest.raises(ConfigError, match=r"method 'stagate': parameter hidden_dims=\[512\]"):
        run_in_sandbox(METHODS["stagate"], {"hidden_dims": [512]}, missing)
    with pytest.raises(ConfigError, match="method 'knn'.*unknown parameter"):
        run_in_sandbox(METHODS["knn"], {"kk": 3}, missing)
    with pytest.raises(ConfigError, match=r"method 'stmcdi': parameter sampler='euler'"):
        run_in_sandbox(METHODS["stmcdi"], {"v1": {}, "v2": {"sampler": "euler"}}, missing, entry="ensemble",
                       checkpoint_dir={"v1": tmp_path / "a", "v2": tmp_path / "b"})
    assert not (tmp_path / "a").exists()


def test_the_reference_protocol_repeats_no_method_default():
    """The reference methods' protocol parameters (n_folds, fill, fill_k, calibrate) have their defaults in each
    method.yaml; the shared function they pass them to keeps none of its own that could drift from them."""
    import inspect

    from stbench.kit.reference_protocol import reference_impute

    sig = inspect.signature(reference_impute).parameters
    assert all(sig[k].default is inspect.Parameter.empty for k in ("n_folds", "fill", "fill_k", "calibrate"))
    users = [m for m in discover().values() if "fill_k" in (m.manifest.get("params") or {})]
    assert len(users) >= 9 and all("calibrate" in m.manifest["params"] for m in users)
