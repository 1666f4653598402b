"""The thinning transform: a reference with fewer cells per type, drawn reproducibly.

``ReferenceTransform(subsample=0.1, by="cell_type", seed=k)`` keeps round(10%) of the cells of every type
(at least one); ``n_cells=5, types=[...]`` keeps only 5 cells of each listed type (a rare-type reference) and
every cell of the others. ``types`` limits either mode to the listed types. The draw depends on ``seed``
(the config's k) and the run's seed, so each run seed sees its own thinning and every method of that seed the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stbench.data.reference_generators.cells import cell_labels


@dataclass(frozen=True)
class ReferenceTransform:
    subsample: float | None = None     # fraction of each type's cells kept, in (0, 1]
    n_cells: int | None = None         # or: cells kept per type
    by: str = "cell_type"              # obs column of the types (``louvain``: clustered when absent)
    seed: int = 0                      # k of the config: with the run seed, picks the draw
    types: tuple | None = None         # only these types are thinned (default: every type)

    @classmethod
    def from_dict(cls, d: dict) -> "ReferenceTransform":
        """Validated from a config block; a bad key or value is a ValueError saying which and why."""
        if not isinstance(d, dict):
            raise ValueError(f"reference_transform must be a mapping, got {d!r}")
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"reference_transform: unknown key(s) {', '.join(sorted(unknown))}; known: "
                             f"{', '.join(cls.__dataclass_fields__)}")
        sub, n = d.get("subsample"), d.get("n_cells")
        if (sub is None) == (n is None):
            raise ValueError("reference_transform: give exactly one of subsample (a fraction) or n_cells (cells per type)")
        if sub is not None and (isinstance(sub, bool) or not isinstance(sub, (int, float)) or not 0 < sub <= 1):
            raise ValueError(f"reference_transform: subsample must be a fraction in (0, 1], got {sub!r}")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"reference_transform: n_cells must be an integer >= 1, got {n!r}")
        by, seed = d.get("by", "cell_type"), d.get("seed", 0)
        if not isinstance(by, str) or not by:
            raise ValueError(f"reference_transform: by must be an obs column name, got {by!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"reference_transform: seed must be an integer >= 0, got {seed!r}")
        types = d.get("types")
        if types is not None and (not isinstance(types, list) or not types):
            raise ValueError(f"reference_transform: types must be a non-empty list of type names, got {types!r}")
        return cls(subsample=None if sub is None else float(sub), n_cells=n, by=by, seed=seed,
                   types=None if types is None else tuple(map(str, types)))


def kept_per_type(labels: np.ndarray, spec: ReferenceTransform) -> dict:
    """{type: cells kept} for every type of ``labels``."""
    types, counts = np.unique(labels, return_counts=True)
    if spec.types is not None:
        missing = sorted(set(spec.types) - set(types))
        if missing:
            raise ValueError(f"reference_transform: type(s) {', '.join(missing)} not in the reference "
                             f"(its types: {', '.join(types)})")
    out = {}
    for t, n in zip(types.tolist(), counts.tolist()):
        if spec.types is not None and t not in spec.types:
            out[t] = n
        elif spec.subsample is not None:
            out[t] = int(min(n, max(1, round(spec.subsample * n))))
        else:
            out[t] = int(min(n, spec.n_cells))
    return out


def thin(reference, spec: ReferenceTransform, run_seed: int = 0):
    """The thinned reference (a copy, labels in ``obs[spec.by]``) and {type: (cells before, cells kept)}."""
    labels = cell_labels(reference, spec.by)
    keep = kept_per_type(labels, spec)
    rng = np.random.default_rng([int(spec.seed), int(run_seed)])
    rows = []
    for t in sorted(keep):
        idx = np.flatnonzero(labels == t)
        rows.append(np.sort(rng.choice(idx, size=keep[t], replace=False)))
    rows = np.sort(np.concatenate(rows))
    out = reference[rows].copy()
    out.obs[spec.by] = labels[rows]
    before = dict(zip(*np.unique(labels, return_counts=True)))
    return out, {t: (int(before[t]), int(keep[t])) for t in sorted(keep)}
