"""Reference generators (SCLD, resample, VAE), the thinning transform and the reference-augmentation protocol."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from stbench.errors import ConfigError
from stbench.data.reference_generators import generate, generator_params
from stbench.data.reference_generators.protocol import parse_settings, reference_transform_step
from stbench.data.reference_generators.scld import SCLD
from stbench.data.reference_generators.thinning import ReferenceTransform, kept_per_type, thin

ROOT = Path(__file__).resolve().parent.parent


def toy_reference(sizes=(60, 120, 200), n_genes=30, seed=0):
    """Types with distinct marker genes (10 markers each, 8x expression), negative-binomial counts."""
    rng = np.random.default_rng(seed)
    base = rng.gamma(2.0, 0.5, size=n_genes)
    rows, labels = [], []
    for k, n in enumerate(sizes):
        mu = base.copy()
        mu[10 * k:10 * k + 10] *= 8.0
        mu = mu / mu.sum() * 400.0
        rows.append(rng.poisson(mu * rng.gamma(5.0, 0.2, size=(n, n_genes))))
        labels += [f"T{k}"] * n
    x = sp.csr_matrix(np.vstack(rows).astype(np.float32))
    ref = ad.AnnData(X=x, obs=pd.DataFrame({"cell_type": labels}, index=[f"c{i}" for i in range(x.shape[0])]),
                     var=pd.DataFrame(index=[f"G{j}" for j in range(n_genes)]))
    ref.layers["counts"] = x.copy()
    return ref


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("name", ["resample", "vae", "scld"])
def test_generator_shapes_types_and_counts(name):
    ref = toy_reference()
    out = generate(name, ref, {"T0": 7, "T2": 3}, by="cell_type", seed=1, preset="test")
    assert out.shape == (10, ref.n_vars)
    assert list(out.var_names) == list(ref.var_names)
    assert out.obs["cell_type"].astype(str).value_counts().to_dict() == {"T0": 7, "T2": 3}
    x = out.layers["counts"].toarray()
    assert x.dtype == np.float32 and np.isfinite(x).all() and (x >= 0).all() and np.array_equal(x, np.rint(x))
    assert out.obs["synthetic"].all()
    with pytest.raises(ValueError, match="reference has none"):
        generate(name, ref, {"T9": 2}, by="cell_type", preset="test")


def test_post_guidance_keeps_the_best_80_percent():
    """Per type, ceil(n / 0.8) candidates are drawn and the n best-scoring are kept."""
    m = SCLD(generator_params("scld", "test"))
    m.x = torch.zeros(1, 3)
    drawn = {}

    def fake_sample(labels, guidance=None):
        drawn["labels"] = np.asarray(labels)
        return np.arange(len(labels), dtype=np.float32)[:, None].repeat(3, 1)   # row i holds i

    scores = np.random.default_rng(0).random(100)
    m.sample = fake_sample
    m.score = lambda x: scores[: len(x)]
    want = np.array(["a"] * 10 + ["b"] * 7)
    kept, sc = m.sample_guided(want)
    lab = drawn["labels"]
    assert (lab == "a").sum() == math.ceil(10 / 0.8) == 13 and (lab == "b").sum() == math.ceil(7 / 0.8) == 9
    for t, n in (("a", 10), ("b", 7)):
        rows = np.flatnonzero(lab == t)
        best = set(rows[np.argsort(-scores[rows])[:n]].tolist())
        got = set(kept[want == t, 0].astype(int).tolist())
        assert got == best and len(got) == n


def test_guidance_changes_the_class_balance():
    """Asking for the rarest type: the unguided model (w = -1) makes cells in about the data's proportions,
    the guided one (w = 2) mostly of that type (nearest type centroid of the real cells)."""
    from stbench.data.reference_generators.cells import log_expression
    from stbench.kit.reference_protocol import reference_counts

    ref = toy_reference(sizes=(40, 160, 200))
    counts, labels = reference_counts(ref), ref.obs["cell_type"].to_numpy()
    p = generator_params("scld", "test", {"ae_steps": 200, "steps": 400, "num_steps": 50, "width": 64,
                                          "latent_dim": 8, "global_fraction": 0.3})
    m = SCLD(p, seed=0).fit(counts, labels)
    x, _ = log_expression(counts)
    cent = np.vstack([x[labels == t].mean(0) for t in m.types])

    def share_t0(w):
        s = m.sample(np.array(["T0"] * 300), guidance=w)
        d = ((s[:, None, :] - cent[None]) ** 2).sum(-1)
        return float((np.array(m.types)[d.argmin(1)] == "T0").mean())

    unguided, guided = share_t0(-1.0), share_t0(2.0)
    assert unguided < 0.35, unguided          # T0 is 10% of the cells
    assert guided > 0.7, guided
    assert guided - unguided > 0.4


def test_thinning_keeps_the_requested_counts_per_type():
    ref = toy_reference(sizes=(60, 125, 201))
    out, counts = thin(ref, ReferenceTransform(subsample=0.1, by="cell_type", seed=3), run_seed=0)
    assert out.obs["cell_type"].value_counts().to_dict() == {"T0": 6, "T1": 12, "T2": 20}
    assert counts == {"T0": (60, 6), "T1": (125, 12), "T2": (201, 20)}
    assert set(out.obs_names) <= set(ref.obs_names)
    np.testing.assert_array_equal(out.layers["counts"].toarray(), ref[out.obs_names].layers["counts"].toarray())
    # a few cells of chosen types, the others kept whole
    few, _ = thin(ref, ReferenceTransform(n_cells=4, types=("T0", "T2")), run_seed=0)
    assert few.obs["cell_type"].value_counts().to_dict() == {"T0": 4, "T1": 125, "T2": 4}
    assert kept_per_type(np.array(["a"] * 3), ReferenceTransform(subsample=0.01)) == {"a": 1}  # never an empty type
    # the draw is a function of (k, run seed)
    again, _ = thin(ref, ReferenceTransform(subsample=0.1, seed=3), run_seed=0)
    other, _ = thin(ref, ReferenceTransform(subsample=0.1, seed=3), run_seed=1)
    assert list(again.obs_names) == list(out.obs_names) and list(other.obs_names) != list(out.obs_names)
    with pytest.raises(ValueError, match="TX not in the reference"):
        thin(ref, ReferenceTransform(n_cells=2, types=("TX",)))


def test_the_generator_receives_only_the_thinned_reference(monkeypatch, tmp_path):
    """The step reads reference.h5ad only (prepared.h5ad, which holds the spatial truth, is unreadable junk
    here), and the generator is handed the thinned reference object and per-type counts, nothing else."""
    import stbench.data.reference_generators as rg

    ref = toy_reference()
    ref.write_h5ad(tmp_path / "reference.h5ad")
    (tmp_path / "prepared.h5ad").write_bytes(b"not an h5ad: the spatial data must not be read")
    seen = []
    real_generate = rg.generate

    def spy(name, reference, n_per_type, **kw):
        seen.append((name, reference, dict(n_per_type), kw))
        return real_generate(name, reference, n_per_type, **kw)

    monkeypatch.setattr(rg, "generate", spy)
    s = parse_settings({"aug": {"reference_transform": {"subsample": 0.25}, "augment": "resample"}})["aug"]
    rep = reference_transform_step(tmp_path / "prepared.h5ad", s, 0, tmp_path / "out" / "seed0.json")
    (name, given, want, kw), = seen
    assert name == "resample" and isinstance(given, ad.AnnData)
    assert set(kw) == {"by", "seed", "preset", "params", "device"}
    assert given.n_obs == 15 + 30 + 50 and set(given.obs_names) <= set(ref.obs_names)
    assert want == {"T0": 45, "T1": 90, "T2": 150}
    out = ad.read_h5ad(tmp_path / "out" / "seed0.h5ad")
    assert out.obs["cell_type"].value_counts().to_dict() == {"T0": 60, "T1": 120, "T2": 200}
    assert int(out.obs["synthetic"].sum()) == 285 and rep["n_cells"] == 380


def test_no_reference_writes_a_report_and_no_file(tmp_path):
    s = parse_settings({"t": {"reference_transform": {"subsample": 0.5}}})["t"]
    rep = reference_transform_step(tmp_path / "prepared.h5ad", s, 0, tmp_path / "seed0.json")
    assert rep["reference"].startswith("none") and not (tmp_path / "seed0.h5ad").exists()


def _config(settings):
    return {"datasets": {"demo": {"format": "simulate"}}, "methods": {"mean": {}, "tangram": {}, "spage": {}},
            "reference_settings": settings}


@pytest.mark.parametrize("settings, message", [
    ({"x": {"augment": "gan", "reference_transform": {"subsample": 0.1}}}, "reference_settings/x/augment: must be one of"),
    ({"x": {"reference_transform": {"subsample": 1.5}}}, "subsample must be a fraction in \\(0, 1\\]"),
    ({"x": {"reference_transform": {"subsample": 0.1, "n_cells": 3}}}, "exactly one of subsample"),
    ({"x": {"reference_transform": {"n_cells": 0}}}, "n_cells must be an integer >= 1"),
    ({"x": {"reference_transform": {"subsample": 0.1, "bogus": 1}}}, "unknown key\\(s\\) bogus"),
    ({"x": {"augment": "scld"}}, "give a reference_transform"),
    ({"x": {"augment": "scld", "reference_transform": {"subsample": 0.1}, "generator": {"preset": "huge"}}},
     "unknown preset 'huge'"),
    ({"x": {"augment": "scld", "reference_transform": {"subsample": 0.1}, "generator": {"params": {"stepz": 1}}}},
     "unknown parameter\\(s\\) stepz"),
    ({"x": {"thin": 0.1}}, "reference_settings/x: unknown key\\(s\\) thin"),
    ([1, 2], "reference_settings: \\[1, 2\\] is not of type .object."),
])
def test_augmentation_config_errors_are_clear(settings, message):
    from stbench import config as cfg

    with pytest.raises(ConfigError, match=message):
        cfg.validate(cfg.with_defaults(_config(settings)))


def test_reference_methods_run_once_per_setting():
    from stbench import config as cfg

    c = cfg.with_defaults(_config({"full": {}, "thin": {"reference_transform": {"subsample": 0.1}},
                                   "thin_scld": {"reference_transform": {"subsample": 0.1}, "augment": "scld"}}))
    cfg.validate(c)
    vs = {(v.method, v.name): v.reference_setting for v in cfg.variants(c)}
    assert vs == {("mean", "default"): "", ("tangram", "default__full"): "full", ("tangram", "default__thin"): "thin",
                  ("tangram", "default__thin_scld"): "thin_scld", ("spage", "default__full"): "full",
                  ("spage", "default__thin"): "thin", ("spage", "default__thin_scld"): "thin_scld"}


def test_every_reference_method_reads_the_same_transformed_reference(tmp_path):
    """Snakemake's dry run of workflow/demo_scld.yaml: one transform job per (dataset, setting, seed), and the
    impute jobs of both reference methods under a setting take that one file as input."""
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile",
                        str(ROOT / "workflow" / "demo_scld.yaml"), "--config", "run=dryrun-i28", "seeds=2",
                        "--directory", str(ROOT)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    import re

    blocks = re.split(r"^\[[^\]\n]*\]$", r.stdout + r.stderr, flags=re.M)   # each job block follows a [date] line
    jobs = [b for b in blocks if "rule impute:" in b or "rule reference_transform:" in b]
    transforms = [b for b in jobs if "rule reference_transform:" in b]
    assert len(transforms) == 3 * 2                         # 3 non-identity settings x 2 seeds, one dataset
    for setting in ("thinned", "thinned_scld", "thinned_resample"):
        for seed in (0, 1):
            ref = f"references/{setting}/seed{seed}.json"
            users = [b for b in jobs if "rule impute:" in b and ref in b]
            assert {m for m in ("tangram", "spage") if any(f"method={m}," in b for b in users)} == {"tangram", "spage"}
            assert all(f"variant=default__{setting}" in b for b in users)
    full = [b for b in jobs if "rule impute:" in b and "variant=default__full" in b]
    assert full and not any("references/" in b for b in full)
    report = [b for b in blocks if "rule report:" in b]                  # the report shows the table and figure
    assert len(report) == 1 and "tables/reference_augmentation.csv" in report[0]
    assert "figures/reference_augmentation.png" in report[0]


def test_synthetic_counts_keep_the_library_size_and_stay_finite():
    """A decoder far off the data (log expression 200) still gives finite cells of the drawn library size."""
    from stbench.data.reference_generators.cells import to_counts

    logx = np.array([[200.0, 1.0, 0.0], [0.5, 0.5, 0.5]])
    c = to_counts(logx, np.array([1000.0, 30.0]), 500.0, upper=np.array([5.0, 5.0, 5.0]))
    assert np.isfinite(c).all() and abs(c[0].sum() - 1000) <= 2 and abs(c[1].sum() - 30) <= 2
    assert c[0, 0] > c[0, 1] > c[0, 2] == 0


def test_estimate_prices_the_generator_jobs():
    """`stbench estimate`: SCLD at its paper settings is a priced job per dataset, setting and seed (from its
    gpu_job_estimates.yaml entry); a quick preset and resampling are CPU jobs; a generator with no entry is
    reported unmeasured, never guessed."""
    from stbench import config as cfg
    from stbench.results.cost_estimate import load_estimates, reference_generator_costs

    t = {"reference_transform": {"subsample": 0.1}}
    c = cfg.with_defaults(dict(_config({"full": {}, "scld": {**t, "augment": "scld"},
                                        "scld_q": {**t, "augment": "scld", "generator": {"preset": "quick"}},
                                        "res": {**t, "augment": "resample"}, "vae": {**t, "augment": "vae"}}),
                               seeds=[0, 1, 2]))
    table = load_estimates()
    jobs = {j.variant: j for j in reference_generator_costs(c, {"demo": (600, 352, "simulate")}, table)}
    assert set(jobs) == {"scld", "scld_q", "res", "vae"}                # the full reference is no job
    e = table["scld"]
    assert jobs["scld"].basis == "estimate" and jobs["scld"].jobs == 3
    assert jobs["scld"].hours == pytest.approx(3 * e["cpu_seconds"] / e["gpu_factor"] / 3600)
    assert jobs["scld_q"].basis == jobs["res"].basis == "cpu" and jobs["vae"].hours is None
