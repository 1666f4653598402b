"""stMCDI batched ensembles (methods/stmcdi/ensemble.py): each member equals the separate run of its variant."""

import numpy as np
import pytest

from stbench.run.registry import get_method
from tests.test_stmcdi import make_task, smooth_data

METHOD = get_method("stmcdi")
METHOD.load_impute()
from stbench_methods.stmcdi import ensemble as ens  # noqa: E402
from stbench_methods.stmcdi import impute as stm  # noqa: E402

# the variants of config.yaml that share parameter shapes (Table 2 rows, Figure 3 ratios), at the test preset
VARIANTS = {"default": {}, "mask_spot": {"train_mask_strategy": "spot"}, "mask_gene": {"train_mask_strategy": "gene"},
            "no_or_mask": {"or_mask": False}, "no_lr_mask": {"lr_mask": False},
            "no_mask": {"or_mask": False, "lr_mask": False}, "ratio_0.2": {"train_mask_ratio": 0.2}}


def _params(over, **extra):
    return METHOD.params("test", {**over, "checkpoints": 0, "epochs": 4, "dropout": 0.1, **extra})


@pytest.mark.parametrize("names,extra", [(list(VARIANTS), {}),  # dropout 0.1 and EMA on
                                         (["default", "mask_spot"], {"recon_weight": 1.0, "ema": 0, "grad_clip": 0.05})])
def test_ensemble_equals_separate_runs(tmp_path, names, extra):
    x, xy, held = smooth_data(n_side=7, n_genes=24)
    members = {v: _params(VARIANTS[v], **extra) for v in names}
    got = ens.run_ensemble(make_task(x, xy, held, tmp_path / "e"), members)
    assert list(got) == names
    for v, p in members.items():
        sep = stm.run(make_task(x, xy, held, tmp_path / v), **p)
        e = got[v]
        assert e["history"]["steps"] == sep["history"]["steps"] > 4
        np.testing.assert_allclose(e["history"]["loss"], sep["history"]["loss"], rtol=1e-4, atol=1e-5, err_msg=v)
        np.testing.assert_allclose(e["imputed"], sep["imputed"], rtol=1e-4, atol=1e-4, err_msg=v)
        assert e["n_parameters"] == sep["n_parameters"]
    # the members really differ from each other (the test would pass trivially otherwise)
    assert not np.allclose(got["default"]["imputed"], got[names[-1]]["imputed"], atol=1e-3)


def test_groups_and_refusals():
    base = METHOD.params("paper")
    variants = {"default": base, "spot": {**base, "train_mask_strategy": "spot"}, "r2": {**base, "train_mask_ratio": 0.2},
                "gat": {**base, "encoder": "gat"}, "gin": {**base, "encoder": "gin"},
                "gain": {**base, "generator": "gain"}, "lr": {**base, "lr": 1e-3}}
    assert ens.groups(variants) == [["default", "spot", "r2"]]
    with pytest.raises(ValueError, match="cannot be batched: encoder='gat'"):
        ens.run_ensemble(None, {"default": base, "gat": variants["gat"]})
    with pytest.raises(ValueError, match="differ in more than"):
        ens.run_ensemble(None, {"default": base, "lr": variants["lr"]})


def test_member_checkpoints_let_each_variants_own_run_only_sample(tmp_path):
    """The ensemble writes each member's finished training in train.fit's checkpoint format; the variant's
    separate run finds it in its scratch folder, trains no step, and imputes what a full separate run imputes."""
    x, xy, held = smooth_data(n_side=7, n_genes=24)
    members = {v: _params(VARIANTS[v], checkpoints=2) for v in ("default", "mask_gene", "no_lr_mask")}
    ens.run_ensemble(make_task(x, xy, held, tmp_path / "e"), members, checkpoint_dir=tmp_path / "ckpt")
    assert len(list((tmp_path / "ckpt").glob("stmcdi-*.pt"))) == 3
    for v, p in members.items():
        resumed = stm.run(make_task(x, xy, held, tmp_path / "ckpt"), **p)
        assert resumed["history"]["resumed_from"] == resumed["history"]["steps"] > 4  # no training step ran
        full = stm.run(make_task(x, xy, held, tmp_path / f"full-{v}"), **p)
        np.testing.assert_allclose(resumed["imputed"], full["imputed"], rtol=1e-4, atol=1e-4, err_msg=v)


def test_killed_ensemble_resumes_from_its_member_checkpoints(tmp_path, monkeypatch):
    """An ensemble killed after its mid-training checkpoint resumes from the members' files (train.fit's format),
    and each member's own run then samples what an uninterrupted ensemble gives."""
    x, xy, held = smooth_data(n_side=7, n_genes=24)
    members = {v: _params(VARIANTS[v], checkpoints=2) for v in ("default", "no_lr_mask")}
    full = ens.run_ensemble(make_task(x, xy, held, tmp_path / "full"), members)
    total = full["default"]["history"]["steps"]
    dirs = {v: tmp_path / "ckpt" / v for v in members}
    real = ens.member_checkpoint

    def killed(path, model, m0, params, opt, opt_cls, sched, ema, i, step, *rest):
        real(path, model, m0, params, opt, opt_cls, sched, ema, i, step, *rest)
        if i == len(members) - 1 and step < total:  # every member's mid-training file is written
            raise RuntimeError("killed")

    monkeypatch.setattr(ens, "member_checkpoint", killed)
    with pytest.raises(RuntimeError, match="killed"):
        ens.train_ensemble(make_task(x, xy, held, tmp_path / "e1"), members, dirs)
    monkeypatch.setattr(ens, "member_checkpoint", real)
    info = ens.train_ensemble(make_task(x, xy, held, tmp_path / "e2"), members, dirs)
    assert 0 < info["resumed_from"] < info["steps"] == total
    for v, p in members.items():
        own = stm.run(make_task(x, xy, held, dirs[v]), **p)
        assert own["history"]["resumed_from"] == total  # the finished file: no step trained
        np.testing.assert_allclose(own["history"]["loss"], full[v]["history"]["loss"], rtol=1e-4, atol=1e-5, err_msg=v)
        np.testing.assert_allclose(own["imputed"], full[v]["imputed"], rtol=1e-4, atol=1e-4, err_msg=v)
