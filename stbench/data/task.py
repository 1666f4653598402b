"""The task a method receives: everything it may see, and nothing of the held-out truth.

A task is built once per (dataset, mask, seed) from the preprocessed counts and the held-out mask,
and saved as a truth-free file (``task.npz``). The evaluation scale is made here, from observed
entries only: library sizes (``library_size: observed``, the default) and the per-gene z-score
statistics (``scale: zscore``). ``observed`` and ``observed_counts`` hold NaN at held-out entries.
Under ``inductive`` (``train_spots`` not all True) the median library size N and the z-score statistics
come from the train spots only: changing the test fold's observed values leaves the train spots' values
unchanged (tests/test_task.py).
Changing only the held-out values leaves the task file bit-identical (tests/test_task.py), except
that ``library_size: all`` (the paper's protocol) carries each spot's total count over all entries.
Arrays are read-only so that a method cannot corrupt what it was given; copy first.

Count splitting (mask strategy ``countsplit``): the task is built from the input half only
(:func:`input_half`), so it is bit-identical whatever the target half (tests/test_countsplit.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from stbench.atomic import write_npz
from stbench.errors import DatasetError
from stbench.options import check, from_dict, option
from stbench.data.preprocess import PreprocessConfig
# Imported inside functions on purpose: torch (only for a method that asks for tensors).

TASK_FORMAT = "stbench-task/1"
SCALES = ("log", "zscore")
LIBRARY_SIZES = ("observed", "all")


@dataclass(frozen=True)
class TaskSpec:
    """The task step's own options (the evaluation scale), owned here: the task rule receives them from the
    config (written in the ``preprocess`` block, where the protocol is written, but never read by preprocessing)."""
    scale: str = option("log", enum=SCALES,
                        doc="read by the task step. log: paper Eq. 41; zscore: log, then per-gene z-score from "
                            "observed entries (the released code)")
    library_size: str = option("observed", enum=LIBRARY_SIZES,
                               doc="read by the task step. observed: size factors from observed entries (leak-free); "
                                   "all: spot totals incl. held-out counts (the paper)")

    def __post_init__(self):
        check(self, "preprocess")

    @classmethod
    def from_dict(cls, d: dict | None) -> "TaskSpec":
        return from_dict(cls, d, "task")


TASK_OPTIONS = tuple(TaskSpec.__dataclass_fields__)


def split_protocol(block: dict | None) -> tuple[PreprocessConfig, TaskSpec]:
    """A ``preprocess`` block -> (the preprocess step's options, the task step's spec); ValueError names a bad key."""
    block = dict(block or {})
    unknown = sorted(set(block) - set(PreprocessConfig.__dataclass_fields__) - set(TASK_OPTIONS))
    if unknown:
        raise ValueError(f"unknown preprocess option(s) {', '.join(unknown)}; known: "
                         f"{', '.join([*PreprocessConfig.__dataclass_fields__, *TASK_OPTIONS])}")
    return (PreprocessConfig.from_dict({k: v for k, v in block.items() if k not in TASK_OPTIONS}),
            TaskSpec.from_dict({k: v for k, v in block.items() if k in TASK_OPTIONS}))


_ARRAYS = ("observed", "observed_mask", "observed_counts", "coords", "train_spots", "library_size", "gene_mean",
           "gene_sd")


@dataclass(frozen=True)
class ImputationTask:
    observed: np.ndarray          # (n_spots, n_genes) float32, evaluation scale, NaN where held out
    observed_mask: np.ndarray     # (n_spots, n_genes) bool, True where observed
    coords: np.ndarray            # (n_spots, 2) float64 spot coordinates
    genes: tuple                  # gene names (length n_genes)
    spots: tuple                  # spot names (length n_spots)
    observed_counts: np.ndarray   # (n_spots, n_genes) float32 raw counts of the kept genes, NaN where held out
    train_spots: np.ndarray       # (n_spots,) bool; spots a method may fit on (all True except under `inductive`)
    library_size: np.ndarray      # (n_spots,) float64 size factor L of each spot (see module docstring)
    median_library_size: float    # N of Eq. 41: values are log1p(N * C / L)
    gene_mean: np.ndarray         # (n_genes,) float32 z-score mean (observed entries); zeros unless scale=zscore
    gene_sd: np.ndarray           # (n_genes,) float32 z-score sd (observed entries); ones unless scale=zscore
    scale: str = "log"            # "log" or "zscore": what the values of `observed` are
    reference: object = None      # optional AnnData scRNA-seq reference (raw counts, cells x genes)
    seed: int = 0
    device: str = "cpu"           # "cpu", "cuda" or "auto" (cuda when available): use torch_device()
    scratch: Path = field(default_factory=lambda: Path("."))
    dataset: str = ""
    checkpoint_dir: Path | None = None  # training checkpoints that survive a killed job (model state only; None: none)
    protocol: dict = field(default_factory=dict)  # the task spec and the mask spec (for provenance)
    info: dict = field(default_factory=dict)      # a method may record JSON-serialisable facts here: run.json's method_info

    @property
    def n_spots(self) -> int:
        return self.observed.shape[0]

    @property
    def n_genes(self) -> int:
        return self.observed.shape[1]

    def counts_to_scale(self, counts) -> np.ndarray:
        """Map a (n_spots, n_genes) raw-count matrix to the task's scale (the values of ``observed``)."""
        return counts_to_scale(counts, self.library_size, self.median_library_size, self.gene_mean, self.gene_sd)

    def torch_device(self):
        """The torch device to use: the requested one if available, else CPU ("auto": cuda when available)."""
        import torch

        if str(self.device) in ("auto", "cuda") or str(self.device).startswith("cuda:"):
            if torch.cuda.is_available():
                return torch.device("cuda" if self.device == "auto" else self.device)
            return torch.device("cpu")
        return torch.device(self.device)


def counts_to_scale(counts, library_size, median_library_size, gene_mean, gene_sd) -> np.ndarray:
    """log1p(N * C / L), then (v - mean) / sd per gene: the one definition of the evaluation scale."""
    c = np.asarray(counts, dtype=np.float64)
    lib = np.asarray(library_size, dtype=np.float64)[:, None]
    v = np.log1p(c / lib * float(median_library_size))
    return ((v - np.asarray(gene_mean, np.float64)) / np.asarray(gene_sd, np.float64)).astype(np.float32)


def _ro(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


def scale_parameters(pre, held_out: np.ndarray, spec: TaskSpec, train_spots: np.ndarray | None = None) -> dict:
    """Library sizes, N and z-score statistics of the task, computed without any held-out value
    (except ``library_size: all``, the paper's spot totals).

    ``train_spots`` (the ``inductive`` protocol): N (the median library size) and the z-score statistics
    come from the train spots only, so that no value of the test fold shapes the training inputs; each
    spot's own library size L is still its own (it scales that spot's values only). None: every spot."""
    counts = np.asarray(pre.layers["counts"], dtype=np.float64)
    observed = ~held_out
    train = np.ones(counts.shape[0], dtype=bool) if train_spots is None else np.asarray(train_spots, dtype=bool)
    if not train.any():
        raise ValueError("scale_parameters: no train spot")
    if spec.library_size == "all":
        lib = np.asarray(pre.obs["total_counts"], dtype=np.float64)
    else:  # observed entries of the kept genes + every count of the other genes (never held out)
        lib = np.asarray(pre.obs["other_counts"], dtype=np.float64) + np.where(observed, counts, 0.0).sum(axis=1)
    lib = np.where(lib > 0, lib, 1.0)
    n_med = float(np.median(lib[train]))
    g = counts.shape[1]
    mean, sd = np.zeros(g, np.float32), np.ones(g, np.float32)
    if spec.scale == "zscore":
        fit = observed & train[:, None]         # the statistics read the train spots' observed entries only
        logv = counts_to_scale(np.where(fit, counts, np.nan), lib, n_med, mean, sd).astype(np.float64)
        n_obs = fit.sum(axis=0)
        mu = np.where(n_obs > 0, np.nansum(logv, axis=0) / np.maximum(n_obs, 1), 0.0)
        var = np.where(n_obs > 0, np.nansum((logv - mu) ** 2, axis=0) / np.maximum(n_obs, 1), 0.0)
        mean, sd = mu.astype(np.float32), np.where(var > 0, np.sqrt(var), 1.0).astype(np.float32)
    return {"library_size": lib, "median_library_size": n_med, "gene_mean": mean, "gene_sd": sd}


def build_task(pre, held_out: np.ndarray, train_spots: np.ndarray | None = None, *, spec: TaskSpec = TaskSpec(),
               reference=None, seed: int = 0, device: str = "cpu", scratch=".", dataset: str = "", mask_spec: dict | None = None
               ) -> ImputationTask:
    """Build the task from a preprocessed AnnData and a held-out mask, hiding the held-out entries, on the
    evaluation scale ``spec`` (the task rule's parameters from the config)."""
    counts = np.asarray(pre.layers["counts"], dtype=np.float32)
    held_out = np.asarray(held_out, dtype=bool)
    if held_out.shape != counts.shape:
        raise ValueError(f"mask shape {held_out.shape} does not match the data {counts.shape}")
    train = np.ones(counts.shape[0], dtype=bool) if train_spots is None else np.asarray(train_spots, dtype=bool)
    if train.shape != (counts.shape[0],):
        raise ValueError(f"train_spots has shape {train.shape}, expected ({counts.shape[0]},)")
    sp = scale_parameters(pre, held_out, spec, train)
    obs_counts = np.where(held_out, np.nan, counts).astype(np.float32)
    obs = counts_to_scale(obs_counts, sp["library_size"], sp["median_library_size"], sp["gene_mean"], sp["gene_sd"])
    return ImputationTask(
        observed=_ro(obs), observed_mask=_ro(~held_out), coords=_ro(np.asarray(pre.obsm["spatial"], dtype=np.float64)),
        genes=tuple(map(str, pre.var_names)), spots=tuple(map(str, pre.obs_names)), observed_counts=_ro(obs_counts),
        train_spots=_ro(train), library_size=_ro(sp["library_size"]), median_library_size=sp["median_library_size"],
        gene_mean=_ro(sp["gene_mean"]), gene_sd=_ro(sp["gene_sd"]), scale=spec.scale, reference=reference,
        seed=int(seed), device=device, scratch=Path(scratch), dataset=dataset,
        protocol={"task": asdict(spec), "mask": dict(mask_spec or {})},
    )


def save_task(path, task: ImputationTask) -> None:
    """Write the truth-free task file (arrays + names + protocol; no reference, device or scratch)."""
    meta = {"format": TASK_FORMAT, "genes": list(task.genes), "spots": list(task.spots), "scale": task.scale,
            "median_library_size": task.median_library_size, "seed": task.seed, "dataset": task.dataset,
            "protocol": task.protocol}
    write_npz(path, meta=np.array(json.dumps(meta, sort_keys=True)),
              **{k: np.asarray(getattr(task, k)) for k in _ARRAYS})


def load_task(path, *, reference=None, device: str = "cpu", scratch=".", checkpoint_dir=None) -> ImputationTask:
    """Read a task file written by :func:`save_task`; ``reference`` is an AnnData or None."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {k: _ro(z[k]) for k in _ARRAYS}
    except (OSError, KeyError, ValueError) as e:
        raise DatasetError(path, f"not a valid task file ({e})") from None
    if meta.get("format") != TASK_FORMAT:
        raise DatasetError(path, f"task file format {meta.get('format')!r}, expected {TASK_FORMAT!r}")
    return ImputationTask(**arrays, genes=tuple(meta["genes"]), spots=tuple(meta["spots"]), scale=meta["scale"],
                          median_library_size=float(meta["median_library_size"]), reference=reference,
                          seed=int(meta["seed"]), device=device, scratch=Path(scratch), dataset=meta["dataset"],
                          protocol=meta["protocol"], checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir else None)


def input_half(pre, split: dict):
    """Count splitting: ``pre`` with only the input half of its counts (``split`` from the mask file), the
    only data a count-splitting task is built from. Spot totals are the input half's; the raw counts and
    everything computed from them (X) are replaced."""
    view = pre.copy()
    inp = np.asarray(split["input_counts"], dtype=np.float32)
    if inp.shape != view.shape:
        raise ValueError(f"input half {inp.shape} does not match the data {view.shape}")
    other = np.asarray(split["input_other_counts"], dtype=np.float64)
    view.layers["counts"] = inp
    view.X = np.log1p(inp)
    view.obs["other_counts"] = other
    view.obs["total_counts"] = other + inp.sum(axis=1, dtype=np.float64)
    return view


def truth_on_scale(pre, task: ImputationTask, split: dict | None = None) -> np.ndarray:
    """The full matrix on the task's scale, held-out truth included: for evaluation only, never for methods.

    Count splitting (``split``: the mask file's input half, :func:`stbench.data.masks.load_split`): the truth is
    the target half, ``counts - input``, rescaled to the input half's depth by fraction / (1 - fraction)
    (molecular cross-validation) and put on the task's scale."""
    counts = np.asarray(pre.layers["counts"], dtype=np.float64)
    mask = (task.protocol or {}).get("mask") or {}
    if mask.get("strategy") == "countsplit":
        if split is None:
            raise ValueError("a count-splitting task is scored against the target half: pass the mask file's split")
        p = float(mask["fraction"])
        counts = (counts - np.asarray(split["input_counts"], dtype=np.float64)) * (p / (1.0 - p))
    return task.counts_to_scale(counts)
