"""The batched ensemble as a workflow lever (`ensemble: true`): one sandboxed ensemble job trains the member variants
into their own checkpoint folders; each member's impute job then trains no step, only samples, and gives the row a
separate training gives. Also: the job may write only those folders, and the DAG has one ensemble job per
(dataset, mask, seed) that only the members' impute jobs wait for."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from stbench.errors import ConfigError
from stbench.run.registry import get_method
from stbench.run.sandbox import bwrap_available
from stbench.steps import ensemble_step, impute_step
from stbench.data.task import save_task
from tests.test_stmcdi import make_task, smooth_data

ROOT = Path(__file__).resolve().parents[1]
METHOD = get_method("stmcdi")
# two members of one group (the default and a Table 2 row) at the test preset, with checkpoints on
VARIANTS = {"default": {}, "mask_spot": {"train_mask_strategy": "spot"}}


def _members():
    return {v: METHOD.params("test", {**over, "epochs": 4, "checkpoints": 2}) for v, over in VARIANTS.items()}


def _task_file(tmp_path) -> Path:
    x, xy, held = smooth_data(n_side=6, n_genes=16)
    path = tmp_path / "task.npz"
    save_task(path, make_task(x, xy, held, tmp_path))
    return path


def _impute(task_file, v, p, out, ckpt):
    out.mkdir(parents=True)
    rec = impute_step(task_file, "stmcdi", v, p, out, device="cpu", threads=1, isolation="auto", checkpoint_dir=ckpt,
                      log_file=out / "impute.log")
    assert rec["status"] == "ok", rec.get("error")
    with np.load(out / "imputed.npz") as z:
        return rec, z["imputed"]


def test_ensemble_job_then_sampling_only_impute_jobs_equal_separate_jobs(tmp_path):
    task_file = _task_file(tmp_path)
    members = _members()
    dirs = {v: tmp_path / "ckpt" / v for v in members}
    rec = ensemble_step(task_file, "stmcdi", members, dirs, tmp_path / "ens.json", device="cpu", threads=1,
                        isolation="auto", log_file=tmp_path / "ens.log")
    assert rec["status"] == "ok", rec.get("error")
    assert json.loads((tmp_path / "ens.json").read_text())["members"] == list(members)
    assert rec["method_info"]["members"] == 2 and rec["method_info"]["steps"] > 4
    for v in members:  # each member's finished training in its own folder, and nothing else there
        assert [f.suffix for f in dirs[v].iterdir()] == [".pt"]
    assert "stMCDI ensemble train (2 members)" in (tmp_path / "ens.log").read_text()  # progress lines in its log
    for v, p in members.items():
        on, got = _impute(task_file, v, p, tmp_path / "on" / v, dirs[v])
        off, want = _impute(task_file, v, p, tmp_path / "off" / v, tmp_path / "sep" / v)
        # the member's job trained no step (it resumed at the last step); the separate job trained them all
        assert on["method_info"]["training"]["resumed_from"] == on["method_info"]["training"]["steps"] \
            == rec["method_info"]["steps"]
        assert off["method_info"]["training"]["resumed_from"] == 0
        assert "resuming from checkpoint" in (tmp_path / "on" / v / "impute.log").read_text()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=v)
        assert not dirs[v].exists()  # consumed: the ok row removes its checkpoint folder


def test_failed_ensemble_is_recorded_and_leaves_the_members_to_train(tmp_path):
    task_file = _task_file(tmp_path)
    members = _members()
    members["mask_spot"] = {**members["mask_spot"], "lr": 2e-3}  # not one group: the child refuses
    dirs = {v: tmp_path / "ckpt" / v for v in members}
    rec = ensemble_step(task_file, "stmcdi", members, dirs, tmp_path / "ens.json", device="cpu", threads=1,
                        isolation="auto", log_file=tmp_path / "ens.log")
    assert rec["status"] == "failed" and "differ in more than" in rec["error"]
    assert json.loads((tmp_path / "ens.json").read_text())["status"] == "failed"
    assert "each member's impute job trains on its own" in (tmp_path / "ens.log").read_text()


@pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not usable here")
def test_ensemble_child_may_write_only_its_members_folders(tmp_path):
    """A fake method's ensemble entry writes into each member folder it is given and tries the host's paths."""
    methods = tmp_path / "methods"
    (methods / "fake").mkdir(parents=True)
    (methods / "fake" / "method.yaml").write_text(
        "name: fake\ntitle: Fake\ncitation: test\nenv: envs/core.yaml\nparams: {a: 1}\n"
        "ensemble: {may_differ_in: [a]}\n")
    (methods / "fake" / "impute.py").write_text("def impute(task, **p):\n    raise NotImplementedError\n")
    host = tmp_path / "results"
    (methods / "fake" / "host.txt").write_text(str(host))
    (methods / "fake" / "ensemble.py").write_text('''from pathlib import Path


def train_ensemble(task, members, checkpoint_dirs):
    for v, d in checkpoint_dirs.items():
        (Path(d) / "state.pt").write_text(v + str(members[v]["a"]))
    tried = {}
    host = Path((Path(__file__).parent / "host.txt").read_text())
    for name, target in (("host_root", host / "intruder.txt"), ("other_job", host / "ckpt" / "other" / "x.pt"),
                         ("box_root", Path(next(iter(checkpoint_dirs.values()))).parent.parent / "x.txt")):
        try:
            target.write_text("x")
            tried[name] = "written"
        except OSError as e:
            tried[name] = type(e).__name__
    return tried
''')
    (host / "ckpt" / "other").mkdir(parents=True)
    dirs = {"v1": host / "ckpt" / "v1", "v2": host / "ckpt" / "v2"}
    rec = ensemble_step(_task_file(tmp_path), "fake", {"v1": {"a": 1}, "v2": {"a": 2}}, dirs, tmp_path / "e.json",
                        device="cpu", isolation="bwrap", methods_dir=methods, hide=[host])
    assert rec["status"] == "ok", rec.get("error")
    assert (dirs["v1"] / "state.pt").read_text() == "v11" and (dirs["v2"] / "state.pt").read_text() == "v22"
    assert rec["method_info"]["host_root"] != "written" and rec["method_info"]["other_job"] != "written"
    assert rec["method_info"]["box_root"] == "written"  # inside its own box, deleted with it
    assert sorted(p.relative_to(host).as_posix() for p in host.rglob("*")) == \
        ["ckpt", "ckpt/other", "ckpt/v1", "ckpt/v1/state.pt", "ckpt/v2", "ckpt/v2/state.pt"]


def test_sandbox_refuses_a_member_name_that_is_a_path(tmp_path):
    from stbench.run.sandbox import run_in_sandbox

    with pytest.raises(ValueError, match="plain names"):
        run_in_sandbox(METHOD, {}, _task_file(tmp_path), checkpoint_dir={"../x": tmp_path / "x"}, entry="ensemble",
                       isolation="process")
    with pytest.raises(ValueError, match="needs a mapping"):
        run_in_sandbox(METHOD, {}, _task_file(tmp_path), checkpoint_dir=tmp_path / "x", entry="ensemble")


def _config(tmp_path, ensemble=True, methods=None):
    return {"run": "ens", "seeds": [0, 1], "isolation": "process",
            "preprocess": {"n_genes": 20, "min_detection": 0.1},
            "datasets": {"sim": {"format": "simulate", "seed": 1, "n_rows": 6, "n_cols": 6, "n_genes": 40,
                                 "n_cells": 50}},
            "methods": methods or {"stmcdi": {"preset": "test", "ensemble": ensemble, "variants": {
                "default": {}, "mask_spot": {"params": {"train_mask_strategy": "spot"}, "table": "table2"},
                "ratio_0.2": {"params": {"train_mask_ratio": 0.2}, "table": "none"},
                "gat": {"params": {"encoder": "gat"}, "table": "table3"}}}}}


def _dry_run(tmp_path, cfg) -> str:
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s", str(ROOT / "Snakefile"), "--directory",
                        str(tmp_path), "--configfile", str(tmp_path / "c.yaml"), "--cores", "2", "--resources", "gpu=1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-3000:]
    return r.stdout


def _jobs(out: str) -> dict[str, dict]:
    """rule -> {output: input} of a dry run's job listing."""
    jobs: dict[str, dict] = {}
    for block in out.split("\nrule ")[1:]:
        name = block.split(":", 1)[0]
        fields = dict(line.strip().split(": ", 1) for line in block.splitlines()[1:] if ": " in line)
        jobs.setdefault(name, {})[fields.get("output", "")] = fields.get("input", "")
    return jobs


def test_dry_run_has_one_ensemble_job_per_seed_that_only_its_members_wait_for(tmp_path):
    jobs = _jobs(_dry_run(tmp_path, _config(tmp_path)))
    assert sorted(jobs["ensemble"]) == [f"results/ens/ensembles/sim/random-0.1-all/seed{s}/stmcdi/default.json"
                                        for s in (0, 1)]
    for out, inp in jobs["impute"].items():
        variant = out.split("/")[-2]
        waits = "ensembles/sim" in inp
        assert waits == (variant in ("default", "mask_spot", "ratio_0.2")), (out, inp)
    off = _jobs(_dry_run(tmp_path, _config(tmp_path, ensemble=False)))
    assert "ensemble" not in off and not any("ensembles" in i for i in off["impute"].values())
    assert len(off["impute"]) == len(jobs["impute"]) == 8  # the same rows either way


def test_ensemble_switch_on_a_method_without_a_rule_is_a_config_error():
    from stbench import config as cfg
    from stbench.config import ensemble_groups

    c = cfg.with_defaults(_config(None, methods={"knn": {"ensemble": True}}))
    with pytest.raises(ConfigError, match="method 'knn'.*declares no ensemble rule"):
        ensemble_groups(c, cfg.variants(c))


def test_workflow_groups_follow_the_method_rule():
    from stbench import config as cfg
    from stbench.config import ensemble_groups

    c = cfg.with_defaults(yaml.safe_load((ROOT / "config.yaml").read_text()))
    groups = ensemble_groups(c, cfg.variants(c))
    assert groups == {("stmcdi", "default"): ["default", "mask_spot", "mask_gene", "no_or_mask", "no_lr_mask", "no_mask",
                                              "ratio_0.1", "ratio_0.2", "ratio_0.4", "ratio_0.8", "ratio_0.9"]}
    c["methods"]["stmcdi"]["ensemble"] = False
    assert ensemble_groups(c, cfg.variants(c)) == {}
    assert ensemble_groups(c, cfg.variants(c), switch_only=False) == groups  # what the estimate prices


def test_estimate_prices_the_workflows_ensemble_jobs_and_says_whether_the_switch_is_on():
    from stbench.results import cost_estimate as ce

    c = yaml.safe_load((ROOT / "config.yaml").read_text())
    c["methods"] = {"stmcdi": c["methods"]["stmcdi"]}
    dev = next(d for d in ce.devices() if d != "cpu")
    costs = ce.estimate(c, dev, results_dir=ROOT / "no-such-run")
    members = sorted(x.variant for x in costs if x.ensemble == 11 and x.dataset == "MOB")
    assert len(members) == 11 and "gat" not in members and all(x.ensemble_on for x in costs)
    text = ce.report(costs, dev, (1, 8), 4)
    assert "ON in this config for stmcdi: 30 ensemble jobs" in text and "UNMEASURED on a GPU" in text
    # the longest job under the lever is an ensemble job: its 11 members' training at the lever's factor
    ens = next(x for x in costs if x.ensemble == 11)
    lv = ce.levers(dev, 4, 11, rows=[])
    assert ce.longest_job_hours(ens, None, lv["ensemble"]) == pytest.approx(11 * ens.train_s / lv["ensemble"].factor / 3600)
    c["methods"]["stmcdi"]["ensemble"] = False
    text = ce.report(ce.estimate(c, dev, results_dir=ROOT / "no-such-run"), dev, (1,), 4)
    assert "OFF in this config for stmcdi" in text


def test_a_method_yaml_ensemble_rule_is_checked(tmp_path):
    from stbench.errors import MethodError
    from stbench.run.registry import validate_manifest

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "impute.py").write_text("")
    base = {"name": "m", "title": "M", "citation": "c", "params": {"a": 1}}
    with pytest.raises(MethodError, match="ensemble.py does not exist"):
        validate_manifest({**base, "ensemble": {"may_differ_in": ["a"]}}, folder)
    (folder / "ensemble.py").write_text("")
    with pytest.raises(MethodError, match="'ensemble' must be a mapping with may_differ_in"):
        validate_manifest({**base, "ensemble": {"requires": {"a": 1}}}, folder)
    assert validate_manifest({**base, "ensemble": {"may_differ_in": ["a"]}}, folder)
