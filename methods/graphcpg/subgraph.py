"""Locus-aware neighbouring subgraphs for a batch of target (locus, cell) pairs, vectorised.

Upstream (model/datamodules.py): the (loci x cells) matrix of a chromosome is padded with
``(segment_size - 1) / 2`` unobserved loci at both ends; the subgraph of a target (r, c) is the
window of rows r - h .. r + h (h = half window) over ALL cells, one edge per observed entry, and
the target's own entry is overwritten so that its state is not visible. Here the windows of all
targets of a batch are gathered at once from the padded matrix (one fancy index, no loop per
target); the target's own entry is removed from the observed edges and replaced by the query edge
(model.py). Held-out entries are unobserved: they are never edges and never targets.

A window is stored as a (W, 2, C) block: [:, 0] the edge indicator (1 = observed edge), [:, 1] the
edge indicator times the edge value. Both halves are multiplied by the same dropout mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SubgraphBatch:
    edges_in_loc: torch.Tensor   # (B, 2W, C): rows 2k / 2k+1 = edge indicator / indicator x value of
                                 # window locus k, for the messages cell -> locus (after edge dropout)
    edges_in_cell: torch.Tensor  # (B, 2W, C): the same for the messages locus -> cell (own dropout mask)
    inv_deg_loc: torch.Tensor    # (B, W, 1) 1 / number of observed in-edges (0 where none)
    inv_deg_cell: torch.Tensor   # (B, C, 1)
    target_cell: torch.Tensor    # (B,) long
    q_in_loc: torch.Tensor       # (B, 1) 1 if the query edge cell -> locus is kept (edge dropout), else 0
    q_in_cell: torch.Tensor      # (B, 1) the same for locus -> cell
    center: int                  # window position of the target locus


def pad_loci(mask: torch.Tensor, values: torch.Tensor, half: int) -> torch.Tensor:
    """(G, C) mask / values in locus order -> (G + 2h, 2, C) blocks [indicator, indicator x value],
    with h unobserved padding loci at both ends. Values are read only where the mask is True."""
    ind = mask.to(values.dtype)
    both = torch.stack([ind, torch.where(mask, values, torch.zeros_like(values))], dim=1)
    pad = torch.zeros(half, 2, mask.shape[1], dtype=values.dtype, device=values.device)
    return torch.cat([pad, both, pad]).contiguous()


def _inv(deg: torch.Tensor) -> torch.Tensor:
    return torch.where(deg > 0, 1.0 / deg.clamp_min(1.0), torch.zeros_like(deg))


def sample_cells(n_cells: int, cells: torch.Tensor, k: int, generator: torch.Generator | None = None):
    """For each target cell, a sorted random subset of ``k`` of the ``n_cells`` cells that contains it.
    Returns (B, k) cell indices and the (B,) position of the target cell in its subset."""
    b = cells.shape[0]
    r = torch.rand((b, n_cells), generator=generator, device=cells.device)
    r[torch.arange(b, device=cells.device), cells] = -1.0                    # the target is always kept
    sel = torch.sort(torch.argsort(r, dim=1)[:, :k], dim=1).values
    return sel, (sel == cells[:, None]).to(torch.int8).argmax(1)


def build_batch(padded: torch.Tensor, loci: torch.Tensor, cells: torch.Tensor, segment_size: int,
                edge_dropout: float = 0.0, generator: torch.Generator | None = None,
                max_cells: int | None = None) -> SubgraphBatch:
    """Subgraphs of the targets (loci[b], cells[b]) (locus position in locus order, unpadded).

    ``edge_dropout`` > 0 drops each directed edge (query edges included) with that probability,
    independently per direction, like upstream's ``dropout_adj(force_undirected=False)``.
    ``max_cells`` (None: all cells, upstream) limits the cell nodes of each subgraph to the target
    cell and ``max_cells - 1`` others drawn at random (kept in cell order).
    """
    half = (segment_size - 1) // 2
    dev = padded.device
    b, c = loci.shape[0], padded.shape[2]
    rows = loci[:, None] + torch.arange(segment_size, device=dev)[None, :]   # padded coordinates
    if max_cells is not None and max_cells < c:
        sel, cells = sample_cells(c, cells, int(max_cells), generator)
        c = int(max_cells)
        e = padded[rows[:, :, None, None], torch.arange(2, device=dev)[None, None, :, None], sel[:, None, None, :]]
    else:
        e = padded[rows]                                                     # (B, W, 2, C)
    e[torch.arange(b, device=dev), half, :, cells] = 0.0                     # hide the target's own entry
    if edge_dropout > 0:
        shape = (b, segment_size, 1, c)
        e_l = e * (torch.rand(shape, generator=generator, device=dev) >= edge_dropout).to(e.dtype)
        e_c = e * (torch.rand(shape, generator=generator, device=dev) >= edge_dropout).to(e.dtype)
        q = (torch.rand((b, 2), generator=generator, device=dev) >= edge_dropout).to(e.dtype)
    else:
        e_l = e_c = e
        q = torch.ones((b, 2), dtype=e.dtype, device=dev)
    return SubgraphBatch(
        edges_in_loc=e_l.reshape(b, 2 * segment_size, c), edges_in_cell=e_c.reshape(b, 2 * segment_size, c),
        inv_deg_loc=_inv(e_l[:, :, 0].sum(2, keepdim=True)), inv_deg_cell=_inv(e_c[:, :, 0].sum(1)[:, :, None]),
        target_cell=cells, q_in_loc=q[:, :1], q_in_cell=q[:, 1:], center=half)
