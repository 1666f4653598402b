"""The newcomer path: `stbench new-method` writes a folder whose row appears on the first run, through
an interpreter reached by a symlinked venv; a missing `env:` file fails `snakemake -n` at once, by name."""

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from stbench.errors import ConfigError
from stbench.run.registry import discover
from stbench.scaffold import new_method

ROOT = Path(__file__).resolve().parents[1]


def _config(wd: Path, methods: Path) -> Path:
    cfg = {"run": "nm", "seeds": [0], "methods_dir": str(methods),
           "preprocess": {"n_genes": 20, "min_detection": 0.1},
           "datasets": {"sim": {"format": "simulate", "seed": 1, "n_rows": 6, "n_cols": 6, "n_genes": 40,
                                "n_cells": 50}},
           "methods": {"mymethod": {}}}
    (wd / "c.yaml").write_text(yaml.safe_dump(cfg))
    return wd / "c.yaml"


def _snakemake(python, wd, *extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([str(python), "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(wd),
                           "--configfile", "c.yaml", "--cores", "2", *extra],
                          capture_output=True, text=True, env=env, timeout=600, cwd=wd)


def test_new_method_shows_its_row_on_the_first_run_through_a_symlinked_venv(tmp_path):
    from stbench.run.sandbox import resolve_isolation

    methods = tmp_path / "methods"
    dest = new_method("mymethod", methods)
    assert sorted(p.name for p in dest.iterdir()) == ["README.md", "impute.py", "method.yaml"]
    assert "mymethod" in discover(methods)
    _config(tmp_path, methods)
    # the venv reached through a symlink: the sandbox must start an interpreter that exists inside its box
    link = tmp_path / "venvlink"
    link.symlink_to(Path(sys.prefix).resolve(), target_is_directory=True)
    python = link / "bin" / Path(sys.executable).name
    r = _snakemake(python, tmp_path, "results/nm/tables/table1.csv")
    assert r.returncode == 0, r.stderr[-3000:]
    t1 = pd.read_csv(tmp_path / "results/nm/tables/table1.csv")
    assert list(t1["label"]) == ["Mymethod"]
    pcc = float(str(t1["sim PCC"].iloc[0]).replace("±", " ").split()[0])  # "0.635 (n=1)" or "0.635±0.010"
    assert 0.0 < pcc <= 1.0
    run = json.loads(next((tmp_path / "results/nm").glob("sim/*/seed0/mymethod/default/run.json")).read_text())
    assert run["error"] is None
    if resolve_isolation("auto") == "bwrap":  # where bubblewrap works, the symlinked venv must not push the job out of it
        assert run["isolation"] == "bwrap"


def test_a_missing_env_file_fails_the_dry_run_by_name(tmp_path):
    methods = tmp_path / "methods"
    dest = new_method("mymethod", methods)
    manifest = dest / "method.yaml"
    manifest.write_text(manifest.read_text().replace("env: envs/core.yaml", "env: envs/mymethod.yaml"))
    _config(tmp_path, methods)
    r = _snakemake(sys.executable, tmp_path, "-n")
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "envs/mymethod.yaml" in out and str(manifest) in out and "does not exist" in out


def test_the_scaffold_repeats_no_default_and_refuses_bad_names(tmp_path):
    methods = tmp_path / "methods"
    dest = new_method("mymethod", methods)
    method = discover(methods)["mymethod"]
    sig = inspect.signature(method.load_impute())
    assert all(p.default is inspect.Parameter.empty for p in sig.parameters.values())
    assert set(sig.parameters) - {"task"} == set(method.manifest["params"])
    for bad in ("MyMethod", "1x", "my-method", ""):
        with pytest.raises(ConfigError, match="must match"):
            new_method(bad, methods)
    with pytest.raises(ConfigError, match="already exists"):
        new_method("mymethod", methods)
    assert sorted(p.name for p in methods.iterdir()) == [dest.name]  # nothing half-written beside it
