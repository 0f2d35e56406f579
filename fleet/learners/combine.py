"""Diffusion's combine step: mix each device's parameters with its neighbours' received ones.

All functions work on the closed neighbourhood of every device at once: ``own`` (N, P), the
newest received parameters per directed edge ``edge_params`` (E, P) with edges sorted by
receiver, and ``fresh`` (E,) saying which edges hold a usable value. ``edge_params`` may be
stored in a narrower dtype than ``own`` (float16 as received); the arithmetic is in ``own``'s.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

EDGE_CHUNK = 256
"""Edges per step where every edge's parameters are worked on: the allocator reuses a
(EDGE_CHUNK, P) temporary, while a fresh (E, P) one costs more in page faults than the arithmetic."""


def edge_chunks(n_edges: int) -> Iterator[slice]:
    """Consecutive slices of at most ``EDGE_CHUNK`` of ``n_edges`` edges."""
    return (slice(s, s + EDGE_CHUNK) for s in range(0, n_edges, EDGE_CHUNK))


def copy_rows(dst: torch.Tensor, dst_rows: np.ndarray, src: torch.Tensor, src_rows: np.ndarray) -> None:
    """``dst[dst_rows] = src[src_rows]`` for (R,) rows of two (., P) tensors of one dtype and
    device, ``EDGE_CHUNK`` at a time. On the CPU numpy copies them, a row at a time, where
    torch's indexing copies float16 value by value (about 3 times slower)."""
    to, source = (dst.numpy(), src.numpy()) if dst.device.type == "cpu" else (dst, src)
    for part in edge_chunks(len(dst_rows)):
        to[dst_rows[part]] = source[src_rows[part]]


def weighted_combine(
    own: torch.Tensor,
    edge_params: torch.Tensor,
    receiver: torch.Tensor,
    weights: torch.Tensor,
    self_weights: torch.Tensor,
    fresh: torch.Tensor,
) -> torch.Tensor:
    """``theta_i <- (c_ii theta_i + sum_fresh c_ij theta_j) / (c_ii + sum_fresh c_ij)``: neighbours
    whose message is missing or stale are left out and the weights renormalized. The edges are
    added in order, chunk by chunk, which sums exactly as one ``index_add_`` over all of them."""
    w = weights * fresh
    total = self_weights + torch.zeros_like(self_weights).index_add_(0, receiver, w)
    mixed = own * self_weights[:, None]
    buffer = own.new_empty(min(EDGE_CHUNK, len(receiver)), own.shape[1])
    for part in edge_chunks(len(receiver)):
        weighted = buffer[: len(receiver[part])].copy_(edge_params[part]).mul_(w[part, None])
        mixed.index_add_(0, receiver[part], weighted)
    return mixed.div_(total[:, None])


def clip_to_own(own: torch.Tensor, edge_params: torch.Tensor, receiver: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Shrink each neighbour's deviation from the receiver's own parameters to at most ``max_norm``."""
    dev = edge_params - own[receiver]
    norm = dev.norm(dim=1, keepdim=True)
    return own[receiver] + dev * torch.clamp(max_norm / (norm + 1e-12), max=1.0)


def neighbourhood_stack(
    own: torch.Tensor, edge_params: torch.Tensor, receiver: torch.Tensor, fresh: torch.Tensor
) -> torch.Tensor:
    """(N, K+1, P) values of each closed neighbourhood, NaN where no fresh value (K = max degree)."""
    n, p = own.shape
    deg = torch.bincount(receiver, minlength=n)
    k = int(deg.max()) if len(receiver) else 0
    starts = torch.cumsum(deg, 0) - deg
    slot = torch.arange(len(receiver), device=own.device) - starts[receiver] + 1
    stack = torch.full((n, k + 1, p), float("nan"), device=own.device, dtype=own.dtype)
    stack[:, 0] = own
    keep = fresh.bool()
    stack[receiver[keep], slot[keep]] = edge_params[keep].to(own.dtype)
    return stack


def coordinate_median(stack: torch.Tensor) -> torch.Tensor:
    """(N, K+1, P) -> (N, P): coordinate-wise median of the available values."""
    return torch.nanmedian(stack, dim=1).values


def trimmed_mean(stack: torch.Tensor, trim: int) -> torch.Tensor:
    """(N, K+1, P) -> (N, P): coordinate-wise mean after dropping the ``trim`` largest and smallest
    available values (fewer when a neighbourhood has too few values: at least one is kept)."""
    count = (~torch.isnan(stack)).sum(1, keepdim=True)  # (N, 1, P)
    ordered = torch.sort(torch.nan_to_num(stack, nan=float("inf")), dim=1).values
    b = torch.clamp(torch.minimum(torch.full_like(count, trim), (count - 1) // 2), min=0)
    rank = torch.arange(stack.shape[1], device=stack.device).reshape(1, -1, 1)
    keep = (rank >= b) & (rank < count - b)
    return torch.where(keep, ordered, torch.zeros_like(ordered)).sum(1) / keep.sum(1)
