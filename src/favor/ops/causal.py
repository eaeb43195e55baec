"""Causal FAVOR+ attention in chunks: linear memory in forward and backward, work done as matrix products.

Positions are cut into chunks of C. For chunk c with query features Q_c, key features K_c and augmented
values V_c (see :mod:`favor.ops.common`):

    out_c = Q_c P_c + tril(Q_c K_c^T) V_c

where P_c = sum over earlier chunks of K^T V (the carried prefix state, ``(M, d + 1)`` per head).

Chunks are grouped into tiles that fit in cache (see :mod:`favor.ops.common`). The forward pass sweeps the
tiles in order, carrying the state, and stores only the state at each tile's start; the backward pass
sweeps them in reverse, recomputing each tile's features and per-chunk prefixes from that state and
carrying the state's gradient back. Memory is O(L d + (L / R) M d) for tiles of R rows, never the
O(L M d) of explicit prefix sums (see :func:`favor.ops.naive.naive_causal_attention`).

Stabilization: every key weight is ``exp(log_scale_j - F_c)`` where the frame F_c is the running max of
``log_scale`` over real keys up to and including chunk c. The carried state is rescaled by
``exp(F_{c-1} - F_c) <= 1`` when the frame grows, as online softmax does, so a large late key never
underflows the features of earlier keys, and nothing overflows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from favor.ops.common import (
    KeyTile,
    Scratch,
    augment_values,
    bmm_add,
    divide,
    divide_backward,
    key_tile,
    key_tile_backward,
    tile_rows,
)
from favor.ops.features import Kernel

__all__ = ["FavorState", "causal_attention"]


@dataclass
class FavorState:
    """Recurrent state of causal FAVOR+ attention after some prefix of positions.

    context: ``(B, H, M, d + 1)``, sum of ``phi(k_j) [v_j, 1]^T`` in the frame below.
    frame: ``(B, H)``, the log-scale all of ``context`` is relative to (-inf while empty).
    length: number of positions consumed.
    """

    context: torch.Tensor
    frame: torch.Tensor
    length: int = 0


def _decays(frames: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """``exp(F_{c-1} - F_c) <= 1`` per chunk, ``(B, H, n)``; an empty carried state decays to 0, not NaN."""
    previous = torch.cat([start.unsqueeze(-1), frames[..., :-1]], dim=-1)
    return torch.where(torch.isfinite(previous), torch.exp(previous - frames), torch.zeros_like(frames))


def _scan_(states: torch.Tensor, decays: torch.Tensor, carried: torch.Tensor) -> torch.Tensor:
    """In place over dim 2: chunk states T become exclusive prefixes ``P_c = a_c E_{c-1}``,
    with ``E_c = P_c + T_c`` and ``E_{-1} = carried``. Returns the last inclusive state E.
    """
    for c in range(states.shape[2]):
        chunk_state = states[:, :, c].clone()
        torch.mul(carried, decays[:, :, c, None, None], out=states[:, :, c])
        carried = states[:, :, c] + chunk_state
    return carried


def _scan_backward_(grad_prefixes: torch.Tensor, running: torch.Tensor, decays: torch.Tensor) -> torch.Tensor:
    """Reverse of :func:`_scan_`, in place: ``dP`` becomes ``dT``; returns the gradient of ``E_{-1}``.

    ``running`` is the gradient of the last inclusive state: ``dT_c = G_c``, ``G_{c-1} = a_c (dP_c + G_c)``.
    """
    for c in range(grad_prefixes.shape[2] - 1, -1, -1):
        grad_prefix = grad_prefixes[:, :, c].clone()
        grad_prefixes[:, :, c] = running
        running = (grad_prefix + running) * decays[:, :, c, None, None]
    return running


def _pad_rows(t: torch.Tensor, pad: int, value: float = 0.0) -> torch.Tensor:
    """Pad dim 2 (positions) of a ``(B, H, R, ...)`` or ``(B, H, R)`` tensor by ``pad`` rows."""
    if not pad:
        return t
    widths = (0, 0) * (t.dim() - 3) + (0, pad)
    return F.pad(t, widths, value=value)


class _Tile:
    """One tile's recomputable pieces: features, weights, chunked views, per-chunk prefixes, scores."""

    def __init__(self, kernel, q, k, v, projection, keep, chunk, frames, start_frame, carried, buffers):
        rows = q.shape[2]
        n = -(-rows // chunk)
        self.pad = n * chunk - rows
        nb_features = kernel.nb_features(projection, q.shape[-1])
        self.query = kernel.forward(q, projection, buffers.query.take(*q.shape[:-1], nb_features))
        self.keys = key_tile(kernel, k, projection, keep, buffers.keys.take(*k.shape[:-1], nb_features))
        batch, heads = q.shape[:2]
        chunked = (batch, heads, n, chunk)
        log_scale = _pad_rows(self.keys.log_scale, self.pad, float("-inf")).view(chunked)
        if frames is None:  # forward: running max of chunk maxima, continuing from the carried frame
            chunk_max = torch.cat([start_frame.unsqueeze(-1), log_scale.amax(dim=-1)], dim=-1)
            frames = chunk_max.cummax(dim=-1).values[..., 1:]
        self.frames = frames  # (B, H, n), -inf only where no real key has been seen yet
        self.decays = _decays(frames, start_frame)
        self.weights = torch.exp(log_scale - torch.nan_to_num(frames, neginf=0.0).unsqueeze(-1))
        self.v_aug = augment_values(_pad_rows(v, self.pad).view(*chunked, -1), self.weights)  # (B,H,n,C,D)
        self.q_c = _pad_rows(self.query.base, self.pad).view(*chunked, -1)  # (B, H, n, C, M)
        self.k_c = _pad_rows(self.keys.features.base, self.pad).view(*chunked, -1)
        prefixes = buffers.states.take(*chunked[:3], nb_features, self.v_aug.shape[-1])
        self.prefixes = torch.matmul(self.k_c.transpose(-2, -1), self.v_aug, out=prefixes)  # (B, H, n, M, D)
        self.final = _scan_(self.prefixes, self.decays, carried)
        self.future = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).triu_(1)

    def key_tile(self, rows: int) -> KeyTile:
        """The tile's keys with weights and augmented values trimmed back to the real rows."""
        batch, heads = self.weights.shape[:2]
        self.keys.weights = self.weights.view(batch, heads, -1)[:, :, :rows]
        self.keys.v_aug = self.v_aug.view(batch, heads, -1, self.v_aug.shape[-1])[:, :, :rows]
        return self.keys


@dataclass
class _Buffers:
    """Reusable buffers for one sweep over the tiles (each holds one tile's tensor at a time).

    query, keys, states: the tile's query features, key features and per-chunk states (both passes);
    grad_query, grad_keys, grad_states: their gradients (backward pass only, else None).
    """

    query: Scratch
    keys: Scratch
    states: Scratch
    grad_query: Scratch | None = None
    grad_keys: Scratch | None = None
    grad_states: Scratch | None = None

    @classmethod
    def allocate(cls, v, projection, kernel: Kernel, rows: int, chunk: int, *, backward: bool) -> _Buffers:
        batch, heads, _, head_dim = v.shape
        nb_features = kernel.nb_features(projection, head_dim)
        features = batch * heads * rows * nb_features
        states = batch * heads * -(-rows // chunk) * nb_features * (head_dim + 1)
        sizes = (features, features, states) + ((features, features, states) if backward else ())
        return cls(*(Scratch(v, size) for size in sizes))


class _Causal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, projection, keep, initial_context, initial_frame, kernel, chunk, rows):
        batch, heads, length, head_dim = v.shape
        out = v.new_empty(batch, heads, length, head_dim)
        safe = v.new_empty(batch, heads, length, 1)
        passes = torch.empty(batch, heads, length, 1, dtype=torch.bool, device=v.device)
        carried, frame = initial_context, initial_frame
        tiles, starts, frames = [], [], []
        buffers = _Buffers.allocate(v, projection, kernel, rows, chunk, backward=False)
        for start in range(0, length, rows):
            end = min(start + rows, length)
            keep_tile = None if keep is None else keep[..., start:end]
            starts.append((carried, frame))
            tile = _Tile(
                kernel,
                q[:, :, start:end],
                k[:, :, start:end],
                v[:, :, start:end],
                projection,
                keep_tile,
                chunk,
                None,
                frame,
                carried,
                buffers,
            )
            scores = (tile.q_c @ tile.k_c.transpose(-2, -1)).masked_fill_(tile.future, 0.0)  # (B, H, n, C, C)
            out_aug = (tile.q_c @ tile.prefixes).add_(scores @ tile.v_aug)
            out_aug = out_aug.view(batch, heads, -1, head_dim + 1)[:, :, : end - start]
            out[:, :, start:end], safe[:, :, start:end], passes[:, :, start:end] = divide(out_aug)
            carried, frame = tile.final, tile.frames[..., -1]
            tiles.append((start, end))
            frames.append(tile.frames)
        frames = torch.cat(frames, dim=-1)
        start_contexts = torch.stack([s[0] for s in starts])  # (tiles, B, H, M, D)
        start_frames = torch.stack([s[1] for s in starts])  # (tiles, B, H)
        ctx.save_for_backward(
            q, k, v, projection, keep, out, safe, passes, frames, start_contexts, start_frames
        )
        ctx.kernel, ctx.chunk, ctx.tiles, ctx.rows = kernel, chunk, tiles, rows
        ctx.mark_non_differentiable(frame)
        return out, carried, frame

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad, grad_final, _grad_frame):
        q, k, v, projection, keep, out, safe, passes, frames, start_contexts, start_frames = ctx.saved_tensors
        kernel, chunk = ctx.kernel, ctx.chunk
        batch, heads, _, head_dim = v.shape
        grad_q, grad_k, grad_v = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        running = torch.zeros_like(start_contexts[0]) if grad_final is None else grad_final.clone()
        n_done = frames.shape[-1]
        buffers = _Buffers.allocate(v, projection, kernel, ctx.rows, chunk, backward=True)
        for index in range(len(ctx.tiles) - 1, -1, -1):
            start, end = ctx.tiles[index]
            rows = slice(start, end)
            n = -(-(end - start) // chunk)
            q_tile, k_tile, v_tile = q[:, :, rows], k[:, :, rows], v[:, :, rows]
            keep_tile = None if keep is None else keep[..., rows]
            tile = _Tile(
                kernel,
                q_tile,
                k_tile,
                v_tile,
                projection,
                keep_tile,
                chunk,
                frames[..., n_done - n : n_done],
                start_frames[index],
                start_contexts[index],
                buffers,
            )
            n_done -= n
            grad_aug = divide_backward(
                grad[:, :, rows], out[:, :, rows], safe[:, :, rows], passes[:, :, rows]
            )
            grad_aug = _pad_rows(grad_aug, tile.pad).view(*tile.v_aug.shape)  # (B, H, n, C, D)

            scores_t = (tile.k_c @ tile.q_c.transpose(-2, -1)).masked_fill_(tile.future.T, 0.0)
            grad_v_aug = scores_t @ grad_aug
            del scores_t
            grad_scores = (grad_aug @ tile.v_aug.transpose(-2, -1)).masked_fill_(tile.future, 0.0)
            grad_q_base = torch.matmul(grad_scores, tile.k_c, out=buffers.grad_query.take(*tile.q_c.shape))
            bmm_add(grad_q_base, grad_aug, tile.prefixes.transpose(-2, -1))
            grad_k_base = torch.matmul(
                grad_scores.transpose(-2, -1), tile.q_c, out=buffers.grad_keys.take(*tile.k_c.shape)
            )
            del grad_scores
            grad_states = torch.matmul(  # dP, becomes dT
                tile.q_c.transpose(-2, -1), grad_aug, out=buffers.grad_states.take(*tile.prefixes.shape)
            )
            running = _scan_backward_(grad_states, running, tile.decays)
            bmm_add(grad_k_base, tile.v_aug, grad_states.transpose(-2, -1))
            bmm_add(grad_v_aug, tile.k_c, grad_states)

            real = end - start

            def unchunk(t: torch.Tensor, real: int = real) -> torch.Tensor:
                return t.view(batch, heads, -1, t.shape[-1])[:, :, :real]

            grad_q[:, :, rows] = kernel.backward(q_tile, projection, tile.query, unchunk(grad_q_base), None)
            grad_k[:, :, rows], grad_v[:, :, rows] = key_tile_backward(
                kernel,
                k_tile,
                v_tile,
                projection,
                tile.key_tile(real),
                unchunk(grad_k_base),
                unchunk(grad_v_aug),
            )
        return grad_q, grad_k, grad_v, None, None, running, None, None, None, None


def causal_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    projection: torch.Tensor | None,
    keep: torch.Tensor | None,
    *,
    kernel: Kernel,
    chunk_size: int = 64,
    tile_size: int | None = None,
    initial: FavorState | None = None,
) -> tuple[torch.Tensor, FavorState]:
    """Chunked causal FAVOR+ attention on raw q, k, v ``(B, H, L, d)``.

    Args:
        projection: ``(m, d)`` or None (kernels that allow it).
        keep: ``(B, 1, L)`` True at real keys, or None.
        kernel: the feature map.
        chunk_size: positions per chunk C; any positive value (L need not be a multiple).
        tile_size: rows per tile, rounded to a multiple of C (default: sized to the cache).
        initial: state from earlier positions (decoding / streaming), or None.

    Returns:
        outputs ``(B, H, L, d)`` and the state after the last position.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    batch, heads, length, head_dim = v.shape
    nb_features = kernel.nb_features(projection, head_dim)
    rows = tile_rows(batch * heads, nb_features, multiple=chunk_size, requested=tile_size, device=v.device)
    if initial is None:
        context = v.new_zeros(batch, heads, nb_features, head_dim + 1)
        frame = v.new_full((batch, heads), float("-inf"))
    else:
        context, frame = initial.context.to(v.dtype), initial.frame.to(v.dtype)
    out, final, last_frame = _Causal.apply(
        q, k, v, projection, keep, context, frame, kernel, chunk_size, rows
    )
    consumed = 0 if initial is None else initial.length
    return out, FavorState(context=final, frame=last_frame, length=consumed + length)
