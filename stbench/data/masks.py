"""Held-out masks: which entries of the preprocessed matrix are hidden from every method.

One mask per (dataset, strategy, ratio, among, seed), generated once, saved, and read by every
method. ``held_out[i, j]`` is True where the entry is hidden (and scored).

Strategies: ``random`` (entries), ``spot`` (whole spots), ``gene`` (whole genes), and
``inductive`` (the authors' released protocol: spots split into ``n_folds`` folds, methods may
train on the others, and ``ratio`` of each gene's entries in the test fold are held out).
``among``: ``all`` (zeros included, default) or ``nonzero`` (only detected entries).

``countsplit`` (count splitting, molecular cross-validation: Batson et al. 2019, the OpenProblems
denoising task) is the second, leak-free protocol: every raw count is split by binomial thinning into
an input half (each molecule kept with probability ``fraction``) and a target half (the rest), so the
two halves are independent draws of the same spot's expression. Methods see only the input half
(:func:`make_split` writes it into the mask file; the task is built from it alone), with ``ratio`` of
its entries held out at random; the evaluation scores the held-out entries against the target half,
rescaled to the input half's depth (x fraction / (1 - fraction)) and put on the task's scale.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from stbench.atomic import write_npz
from stbench.errors import DatasetError
from stbench.options import check, from_dict, option

STRATEGIES = ("random", "spot", "gene", "inductive", "countsplit")
AMONG = ("all", "nonzero")


@dataclass(frozen=True)
class MaskSpec:
    """One held-out protocol; the defaults here are the only ones (the config schema is generated from them)."""
    strategy: str = option("random", enum=STRATEGIES,
                           doc="random entries, whole spots, whole genes, inductive spot folds, or count splitting")
    ratio: float = option(0.1, exclusive_minimum=0, exclusive_maximum=1, doc="fraction held out (paper: 10%)")
    among: str = option("all", enum=AMONG, doc="all entries (zeros included) or only detected (nonzero) ones")
    n_folds: int = option(5, minimum=2, doc="spot folds of the inductive strategy")
    fraction: float = option(0.9, exclusive_minimum=0, exclusive_maximum=1,
                             doc="countsplit: each molecule's chance of going to the input half (binomial thinning; "
                                 "the rest is the target half); 0.9 as the OpenProblems denoising task")

    def __post_init__(self):
        check(self, "mask")

    def _parts(self) -> tuple[str, ...]:
        """Every option that tells two masks apart, in the order the id names them (ratio second)."""
        extra = {"countsplit": (f"p{self.fraction:g}",), "inductive": (f"k{self.n_folds}",)}.get(self.strategy, ())
        return (self.strategy, f"{self.ratio:g}", self.among, *extra)

    @property
    def id(self) -> str:
        """The mask's one identity: a path-safe name, e.g. ``random-0.1-all`` or ``inductive-0.1-all-k5``. Mask
        files, tables (the ``mask`` column), the report and the figures all key a mask on it."""
        return "-".join(self._parts())

    @property
    def family(self) -> str:
        """The id without the ratio: the masks a mask-ratio sweep compares (e.g. ``inductive-all-k5``)."""
        parts = self._parts()
        return "-".join(parts[:1] + parts[2:])

    @classmethod
    def from_dict(cls, d: dict | None) -> "MaskSpec":
        return from_dict(cls, d, "mask")


def _pick(n_candidates: int, ratio: float) -> int:
    return max(1, int(round(ratio * n_candidates)))


def make_mask(detected: np.ndarray, spec: MaskSpec, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (held_out bool n x g, train_spots bool n).

    ``detected`` (n x g, True where the raw count is > 0) gives the shape and, for
    ``among: nonzero``, the candidate entries. Counts decide "detected", not the evaluation
    scale, so that z-scored data (where zeros become negative) mask the same entries.
    """
    detected = np.asarray(detected, dtype=bool)
    n, g = detected.shape
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), STRATEGIES.index(spec.strategy)]))
    cand = detected if spec.among == "nonzero" else np.ones((n, g), dtype=bool)
    held = np.zeros((n, g), dtype=bool)
    train = np.ones(n, dtype=bool)
    if spec.strategy in ("random", "countsplit"):  # countsplit: `detected` is the input half's
        flat = np.flatnonzero(cand.ravel())
        if flat.size == 0:
            raise ValueError("no candidate entries to hold out")
        chosen = rng.choice(flat, size=_pick(flat.size, spec.ratio), replace=False)
        held.ravel()[chosen] = True
    elif spec.strategy == "spot":
        spots = rng.choice(n, size=_pick(n, spec.ratio), replace=False)
        held[spots] = cand[spots]
    elif spec.strategy == "gene":
        genes = rng.choice(g, size=_pick(g, spec.ratio), replace=False)
        held[:, genes] = cand[:, genes]
    else:  # inductive: last of n_folds random spot folds is the test fold
        folds = np.array_split(rng.permutation(n), spec.n_folds)
        test = np.sort(folds[-1])
        train[test] = False
        sub = cand[test]
        keys = rng.random(sub.shape)
        keys[~sub] = np.inf
        ranks = np.argsort(np.argsort(keys, axis=0, kind="stable"), axis=0, kind="stable")
        k = np.round(spec.ratio * sub.sum(axis=0)).astype(int)
        held[test] = (ranks < k[None, :]) & sub
    if not held.any():
        raise ValueError(f"mask {spec.id} holds out no entry for a {n} x {g} matrix")
    return held, train


def thin(counts, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Binomial thinning: each of the (integer) counts' molecules is kept with probability ``fraction``."""
    c = np.asarray(counts, dtype=np.float64)
    if c.size and (np.any(c < 0) or not np.all(np.isfinite(c)) or np.any(c != np.round(c))):
        raise ValueError("count splitting needs non-negative integer raw counts (layers['counts'])")
    return rng.binomial(c.astype(np.int64), float(fraction)).astype(np.float64)


def make_split(counts, other_counts, spec: MaskSpec, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Count splitting: (held_out, train_spots, split) where ``split`` holds the input half, the only counts
    a method's task is built from: ``input_counts`` (n x g, the kept genes) and ``input_other_counts`` (n,
    the spot's thinned total over the genes not kept; thinning a sum is the sum of the thinned parts).
    The target half (``counts - input_counts``) is never stored: the evaluation derives it from the
    preprocessed counts. Held-out entries are drawn as in ``random``, among the input half's entries
    (``among: nonzero``: its detected ones), so the mask says nothing about the target half."""
    if spec.strategy != "countsplit":
        raise ValueError(f"make_split is for strategy countsplit, got {spec.strategy}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), STRATEGIES.index(spec.strategy), 1]))
    counts = np.asarray(counts, dtype=np.float32)
    inp = thin(counts, spec.fraction, rng).astype(np.float32)
    other = thin(np.asarray(other_counts, dtype=np.float64), spec.fraction, rng).astype(np.float64)
    held, train = make_mask(inp > 0, spec, seed)
    return held, train, {"input_counts": inp, "input_other_counts": other}


def save_mask(path, held: np.ndarray, train: np.ndarray, spec: MaskSpec, seed: int, dataset: str = "",
              split: dict | None = None) -> None:
    meta = {"spec": asdict(spec), "seed": int(seed), "dataset": dataset, "shape": list(held.shape),
            "n_held_out": int(held.sum()), "countsplit": split is not None}
    write_npz(path, held_out=held, train_spots=train, meta=np.array(json.dumps(meta)), **(split or {}))


def load_split(path) -> dict | None:
    """The input half of a count-splitting mask file (``input_counts``, ``input_other_counts``), else None."""
    try:
        with np.load(path) as z:
            if "input_counts" not in z:
                return None
            return {"input_counts": z["input_counts"], "input_other_counts": z["input_other_counts"]}
    except (OSError, KeyError, ValueError) as e:
        raise DatasetError(path, f"not a valid mask file ({e})") from None


def load_mask(path) -> tuple[np.ndarray, np.ndarray, dict]:
    try:
        with np.load(path) as z:
            return z["held_out"].astype(bool), z["train_spots"].astype(bool), json.loads(str(z["meta"]))
    except (OSError, KeyError, ValueError) as e:
        raise DatasetError(path, f"not a valid mask file ({e})") from None
