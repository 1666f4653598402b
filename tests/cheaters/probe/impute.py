"""Probe: fails, naming them, if any truth-bearing file is reachable the way the filesystem cheater looks."""

from .cheatlib import as_truth, gene_mean_fill  # noqa: TID252
from .fs import bases, candidates, read_all, starting_points  # noqa: TID252


def impute(task):
    found = sorted({str(p) for b in bases(starting_points(task)) for p in candidates(b)
                    if any(as_truth(task, a) is not None for a in read_all(p))})
    if found:
        raise RuntimeError(f"truth-bearing files reachable from the method process: {found}")
    return gene_mean_fill(task)
