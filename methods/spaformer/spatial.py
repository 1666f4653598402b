"""Spatial side of SpaFormer: tiles (the FOV analogue), coordinate normalisation, positional encodings.

Upstream (wehos/CellT, ``SpaFormer/spaformer/utils.py``) treats every CosMx field of view (FOV) as
one sequence of cell tokens. Per FOV it builds a radius graph on the pixel coordinates (95 px, 150
for Liver) plus self-loops, takes the 10 Laplacian eigenvectors after the trivial one
(``dgl.laplacian_pe``) and normalises the coordinates to [0, 1] by the larger side. Here a section
without FOVs is cut into spatial tiles of at most ``tile_cells`` spots (recursive median splits
along the longer side); a section that small enough is one tile, as in every task of this project.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree


def spatial_tiles(coords: np.ndarray, idx: np.ndarray, max_cells: int) -> list[np.ndarray]:
    """Split the spots ``idx`` into spatially compact tiles of at most ``max_cells`` spots.

    Recursive halving at the median of the longer side; deterministic; every spot in exactly one tile.
    """
    idx = np.asarray(idx, dtype=np.int64)
    if len(idx) <= max_cells:
        return [np.sort(idx)]
    xy = coords[idx]
    axis = int(np.argmax(np.ptp(xy, axis=0)))
    order = np.argsort(xy[:, axis], kind="stable")
    half = len(idx) // 2
    return spatial_tiles(coords, idx[order[:half]], max_cells) + spatial_tiles(coords, idx[order[half:]], max_cells)


def normalised_coords(xy: np.ndarray) -> np.ndarray:
    """Shift to the minimum and divide by the larger side (upstream per FOV): values in [0, 1]."""
    xy = np.asarray(xy, dtype=np.float64)
    lo = xy.min(axis=0)
    scale = float(np.ptp(xy, axis=0).max()) if len(xy) > 1 else 0.0
    return ((xy - lo) / (scale if scale > 0 else 1.0)).astype(np.float32)


def graph_radius(coords: np.ndarray, radius: float | None, radius_nn: float) -> float:
    """The radius of the spatial graph: ``radius`` (coordinate units) or ``radius_nn`` x median NN distance."""
    if radius is not None:
        return float(radius)
    coords = np.asarray(coords, dtype=np.float64)
    if len(coords) < 2:
        return 1.0
    d, _ = cKDTree(coords).query(coords, k=2)
    nn = d[:, 1]
    med = float(np.median(nn[nn > 0])) if (nn > 0).any() else 1.0
    return float(radius_nn) * med


def radius_adjacency(xy: np.ndarray, radius: float) -> sp.csr_matrix:
    """Symmetric 0/1 adjacency of spots closer than ``radius`` (strictly, as upstream's ``spa < 95``), plus self-loops."""
    n = len(xy)
    pairs = cKDTree(np.asarray(xy, dtype=np.float64)).query_pairs(np.nextafter(radius, 0), output_type="ndarray")
    rows = np.concatenate([pairs[:, 0], pairs[:, 1], np.arange(n)])
    cols = np.concatenate([pairs[:, 1], pairs[:, 0], np.arange(n)])
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))


def laplacian_pe(adj: sp.csr_matrix, k: int, dense_max: int = 1500) -> np.ndarray:
    """The ``k`` eigenvectors of the symmetric normalised Laplacian after the smallest one (n x k, float32).

    Same definition as ``dgl.laplacian_pe`` (used upstream): L = I - D^-1/2 A D^-1/2 with the degrees
    of A (self-loops included), eigenvalues in increasing order, the first skipped, zero padding when
    the graph has fewer than k + 1 nodes. Upstream draws a random sign per eigenvector; here each
    eigenvector's sign is fixed (largest-magnitude entry positive) so the result is deterministic;
    training flips the signs at random at every step anyway (as upstream's Performer does).
    """
    n = adj.shape[0]
    out = np.zeros((n, k), dtype=np.float32)
    if n < 2 or k == 0:
        return out
    deg = np.asarray(adj.sum(axis=1)).ravel().clip(1)
    dinv = sp.diags(deg ** -0.5)
    lap = sp.eye(n) - dinv @ adj @ dinv
    m = min(k, n - 1)
    if n <= dense_max or m + 1 >= n - 1:
        vals, vecs = np.linalg.eigh(lap.toarray())
    else:  # shift-invert around a point just below 0: the smallest eigenvalues converge fast
        from scipy.sparse.linalg import eigsh

        v0 = np.ones(n) / math.sqrt(n)
        vals, vecs = eigsh(lap.tocsc(), k=m + 1, sigma=-1e-3, which="LM", v0=v0)
    order = np.argsort(vals, kind="stable")[1:m + 1]
    vecs = vecs[:, order]
    flip = np.sign(vecs[np.argmax(np.abs(vecs), axis=0), np.arange(vecs.shape[1])])
    out[:, :m] = (vecs * np.where(flip == 0, 1.0, flip)).astype(np.float32)
    return out


def grid_bins(xy01: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upstream's 2-D bins for the 'sinu' and 'bin' encodings: x * 100 in [0, 109], y * 100 in [0, 99]."""
    x = np.clip(np.floor(xy01[:, 0] * 100).astype(np.int64), 0, 109)
    y = np.clip(np.floor(xy01[:, 1] * 100).astype(np.int64), 0, 99)
    return x, y


def sinusoidal_2d(x_bin: np.ndarray, y_bin: np.ndarray, dim: int) -> np.ndarray:
    """Fixed 2-D sinusoidal encoding of integer bins (n x dim), the values of upstream's ``positionalencoding2d``
    table at (height = x bin, width = y bin): the first half of the channels encodes y, the second x,
    each as interleaved sin/cos over dim/4 frequencies 10000^(-2i/(dim/2))."""
    if dim % 4:
        raise ValueError(f"spaformer: the sinusoidal encoding needs a width divisible by 4, got {dim}")
    half = dim // 2
    freq = np.exp(np.arange(0, half, 2, dtype=np.float64) * -(math.log(10000.0) / half))
    out = np.zeros((len(x_bin), dim), dtype=np.float64)
    ay = y_bin[:, None].astype(np.float64) * freq[None, :]
    ax = x_bin[:, None].astype(np.float64) * freq[None, :]
    out[:, 0:half:2], out[:, 1:half:2] = np.sin(ay), np.cos(ay)
    out[:, half::2], out[:, half + 1::2] = np.sin(ax), np.cos(ax)
    return out.astype(np.float32)


def tile_inputs(coords: np.ndarray, tile: np.ndarray, pe: str, lap_k: int, radius: float, num_emb: int) -> dict:
    """Per-tile positional inputs: normalised coordinates, bins, the Laplacian eigenvectors, sinusoidal codes."""
    xy = np.asarray(coords, dtype=np.float64)[tile]
    xy01 = normalised_coords(xy)
    out = {"pos": xy01}
    if pe in ("bin", "sinu"):
        xb, yb = grid_bins(xy01)
        out["bin"] = xb * 100 + yb
        if pe == "sinu":
            out["sinu"] = sinusoidal_2d(xb, yb, num_emb)
    if pe == "lap":
        out["lap"] = laplacian_pe(radius_adjacency(xy, radius), lap_k)
    return out
