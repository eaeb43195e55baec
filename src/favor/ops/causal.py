"""Causal FAVOR+ attention in chunks: linear memory in forward and backward, work done as matrix products.

Positions are cut into chunks of C. For chunk c with query features Q_c, key features K_c and augmented
values V_c (see :mod:`favor.ops.common`):

    out_c = Q_c P_c + tril(Q_c K_c^T) V_c

where P_c = sum over earlier chunks of K^T V (the carried prefix state, ``(M, d + 1)`` per head).

Chunks are grouped into tiles that fit in cache (see :mod:`favor.ops.common`). The forward pass sweeps the
tiles in order, carrying the state, and stores the state at each tile's start, the masked chunk scores
``tril(Q_c K_c^T)`` (C floats per position and head) and the feature maps' row maxima; the backward pass
sweeps them in reverse, recomputing each tile's features and per-chunk states from that state and
carrying the state's gradient back. Memory is O(L (d + C) + (L / R) M d) for tiles of R rows, never
the O(L M d) of explicit prefix sums (see :func:`favor.ops.naive.naive_causal_attention`).

Inside a tile everything is **chunk-major**, ``(n, B, H, C, ...)`` for n chunks: the per-chunk products
are then single batched matmuls on contiguous buffers, and the chunk states ``(n + 1, B, H, M, d + 1)``
(the carried state in slot 0) are scanned in place, one fused multiply-add per chunk.

Stabilization: every key weight is ``exp(log_scale_j - F_c)`` where the frame F_c is the running max of
``log_scale`` over real keys up to and including chunk c. The carried state is rescaled by
``a_c = exp(F_{c-1} - F_c) <= 1`` when the frame grows, as online softmax does, so a large late key never
underflows the features of earlier keys, and nothing overflows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from favor.ops.common import (
    Workspace,
    bmm_add,
    divide,
    divide_backward,
    key_tile,
    key_tile_backward,
    tile_rows,
    tile_spans,
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
    """``a_c = exp(F_{c-1} - F_c) <= 1`` per chunk, ``(n, B, H)``; an empty carried state decays to 0."""
    previous = torch.cat([start.unsqueeze(0), frames[:-1]])
    return torch.where(torch.isfinite(previous), torch.exp(previous - frames), torch.zeros_like(frames))


def _scan_(states: torch.Tensor, decays: torch.Tensor) -> None:
    """In place over dim 0: slot 0 holds the carried state E_{-1}, slot c + 1 the chunk state T_c.

    Afterwards slot c + 1 holds the inclusive state ``E_c = a_c E_{c-1} + T_c``; the exclusive prefix
    that chunk c reads is ``P_c = a_c E_{c-1} = a_c * states[c]``.
    """
    slots, factors = states.unbind(0), decays[..., None, None].unbind(0)  # views, taken once
    for c, factor in enumerate(factors):
        slots[c + 1].addcmul_(slots[c], factor)


def _scan_backward_(grads: torch.Tensor, decays: torch.Tensor) -> None:
    """Reverse of :func:`_scan_`, in place over dim 0.

    On entry slot c (c < n) holds dP_c and slot n the gradient G_{n-1} of the last inclusive state.
    With ``G_{c-1} = a_c (dP_c + G_c)`` and ``dT_c = G_c``, afterwards slot c holds G_{c-1}: slots
    1..n are dT_0..dT_{n-1} and slot 0 is the gradient of the carried state.
    """
    slots, factors = grads.unbind(0), decays[..., None, None].unbind(0)  # views, taken once
    for c in range(len(factors) - 1, -1, -1):
        slots[c].add_(slots[c + 1]).mul_(factors[c])


def _chunks(t: torch.Tensor, start: int, end: int, chunk: int, value: float = 0.0) -> torch.Tensor:
    """Rows ``start:end`` of a ``(B, H, L, ...)`` tensor as a chunk-major view ``(n, B, H, C, ...)``.

    A view when ``end - start`` is a multiple of C; else the rows are padded with ``value`` (a copy).
    """
    rows = t[:, :, start:end]
    pad = -(end - start) % chunk
    if pad:
        widths = (0, 0) * (t.dim() - 3) + (0, pad)
        rows = F.pad(rows, widths, value=value)
    chunked = rows.unflatten(2, (-1, chunk))
    return chunked.movedim(2, 0)


def _write(dest: torch.Tensor, start: int, end: int, chunked: torch.Tensor) -> None:
    """Copy a chunk-major ``(n, B, H, C, X)`` result into rows ``start:end`` of ``dest`` ``(B, H, L, X)``."""
    chunk = chunked.shape[3]
    full = (end - start) // chunk
    stop = start + full * chunk
    if full:
        dest[:, :, start:stop].unflatten(2, (full, chunk)).copy_(chunked[:full].movedim(0, 2))
    if stop < end:
        dest[:, :, stop:end].copy_(chunked[full, :, :, : end - stop])


class _Tile:
    """One tile's recomputable pieces, chunk-major: features, frames, weights, values, chunk states."""

    def __init__(
        self,
        kernel,
        q,
        k,
        v,
        projection,
        weight,
        keep,
        start,
        end,
        chunk,
        start_frame,
        carried,
        ws,
        recorded=None,
    ):
        """``weight``: the kernel's weight for ``projection``, built once per sweep by the caller;
        ``recorded``: the forward pass's ``(frames, decays, query offsets, key offsets)`` for these
        chunks, or None (forward: computed here)."""
        frames, decays, q_offset, k_offset = (None,) * 4 if recorded is None else recorded
        # Contiguous chunk-major copies: every later op then runs on dense memory.
        self.q_rows = ws.dense("q_rows", _chunks(q, start, end, chunk))  # (n, B, H, C, d)
        self.k_rows = ws.dense("k_rows", _chunks(k, start, end, chunk))
        self.v_rows = ws.dense("v_rows", _chunks(v, start, end, chunk))
        q_c = self.q_rows
        keep_c = None if keep is None else _chunks(keep, start, end, chunk, False)  # (n, B, 1, C)
        nb_features = kernel.nb_features(projection, q.shape[-1])
        query_out = ws.take("query", *q_c.shape[:-1], nb_features)
        self.query = kernel.forward(q_c, projection, query_out, offset=q_offset, scale=False, weight=weight)
        keys_out = ws.take("keys", *q_c.shape[:-1], nb_features)
        self.keys = key_tile(kernel, self.k_rows, projection, keep_c, keys_out, k_offset, weight=weight)
        pad = -(end - start) % chunk
        if pad:  # the rows padding the last chunk are not keys
            self.keys.log_scale[-1, ..., chunk - pad :] = float("-inf")
        log_scale = self.keys.log_scale  # (n, B, H, C), -inf at padded keys
        if frames is None:  # forward: running max of chunk maxima, continuing from the carried frame
            chunk_max = torch.cat([start_frame.unsqueeze(0), log_scale.amax(dim=-1)])
            frames = chunk_max.cummax(dim=0).values[1:]
        self.frames = frames  # (n, B, H), -inf only where no real key has been seen yet
        self.decays = _decays(frames, start_frame) if decays is None else decays
        self.keys.weigh(
            self.v_rows,
            torch.nan_to_num(frames, neginf=0.0).unsqueeze(-1),
            out=ws.take("values", *self.v_rows.shape[:-1], self.v_rows.shape[-1] + 1),
        )
        n = q_c.shape[0]
        self.states = ws.take("states", n + 1, *carried.shape)  # carried, then E_0 .. E_{n-1}
        self.states[0].copy_(carried)
        torch.matmul(self.k_features.transpose(-2, -1), self.keys.v_aug, out=self.states[1:])
        _scan_(self.states, self.decays)

    @property
    def q_features(self) -> torch.Tensor:
        return self.query.base

    @property
    def k_features(self) -> torch.Tensor:
        return self.keys.features.base

    @property
    def final(self) -> torch.Tensor:
        """The inclusive state after the tile's last chunk (a view into the workspace)."""
        return self.states[-1]


class _Causal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, projection, keep, initial_context, initial_frame, kernel, chunk, rows):
        batch, heads, length, head_dim = v.shape
        out = v.new_empty(batch, heads, length, head_dim)
        tiles = tile_spans(length, rows)
        n_chunks = sum(-(-(end - start) // chunk) for start, end in tiles)
        # The guarded denominators, chunk-major as the backward reads them.
        safe = v.new_empty(n_chunks, batch, heads, chunk, 1)
        passes = torch.empty(n_chunks, batch, heads, chunk, 1, dtype=torch.bool, device=v.device)
        start_contexts = v.new_empty(len(tiles), *initial_context.shape)  # (tiles, B, H, M, D)
        start_frames = v.new_empty(len(tiles), batch, heads)
        carried, frame = initial_context, initial_frame
        frames, decays = [], []
        ws = Workspace(v)
        weight = kernel.weight(projection, v)  # built once for every tile
        # Kept for the backward when there will be one, chunk-major: the masked chunk scores (L C floats
        # per head, cheaper to keep than the chunk products that would recompute them) and the feature
        # maps' row maxima (L floats per head; the backward need not take them again).
        training = any(ctx.needs_input_grad)
        all_scores = v.new_empty(n_chunks, batch, heads, chunk, chunk) if training else None
        keep_offsets = training and kernel.has_offset
        q_offsets, k_offsets = (
            v.new_empty(n_chunks, batch, heads, chunk) if keep_offsets else None for _ in "qk"
        )
        done = 0
        for index, (start, end) in enumerate(tiles):
            start_contexts[index].copy_(carried)
            start_frames[index].copy_(frame)
            tile = _Tile(kernel, q, k, v, projection, weight, keep, start, end, chunk, frame, carried, ws)
            n = tile.frames.shape[0]
            here = slice(done, done + n)
            done += n
            if keep_offsets:
                q_offsets[here] = tile.query.offset
                k_offsets[here] = tile.keys.features.offset
            q_f, k_f, v_aug = tile.q_features, tile.k_features, tile.keys.v_aug
            out_aug = torch.matmul(q_f, tile.states[:n], out=ws.take("out", *v_aug.shape))
            out_aug.mul_(tile.decays[..., None, None])  # Q_c P_c = a_c Q_c E_{c-1}
            scores = all_scores[here] if training else ws.take("scores", *q_f.shape[:-1], chunk)
            torch.matmul(q_f, k_f.transpose(-2, -1), out=scores).tril_()
            bmm_add(out_aug, scores, v_aug)
            quotient, safe_c, passes_c = divide(out_aug, ws)
            _write(out, start, end, quotient)
            safe[here], passes[here] = safe_c, passes_c
            carried, frame = tile.final, tile.frames[-1]
            frames.append(tile.frames)
            decays.append(tile.decays)
        final = carried.clone()
        ctx.save_for_backward(
            q,
            k,
            v,
            projection,
            keep,
            out,
            safe,
            passes,
            torch.cat(frames),
            torch.cat(decays),
            start_contexts,
            start_frames,
            all_scores,
            q_offsets,
            k_offsets,
        )
        ctx.kernel, ctx.chunk, ctx.tiles = kernel, chunk, tiles
        frame = frame.clone()
        ctx.mark_non_differentiable(frame)
        return out, final, frame

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad, grad_final, _grad_frame):
        saved = ctx.saved_tensors
        q, k, v, projection, keep, out, safe, passes, frames, decays, start_contexts = saved[:11]
        start_frames, all_scores, q_offsets, k_offsets = saved[11:]
        kernel, chunk = ctx.kernel, ctx.chunk
        grad_q, grad_k, grad_v = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        running = torch.zeros_like(start_contexts[0]) if grad_final is None else grad_final
        n_done = frames.shape[0]
        ws = Workspace(v)
        weight = kernel.weight(projection, v)
        for index in range(len(ctx.tiles) - 1, -1, -1):
            start, end = ctx.tiles[index]
            n = -(-(end - start) // chunk)
            n_done -= n
            here = slice(n_done, n_done + n)
            recorded = [None if t is None else t[here] for t in (frames, decays, q_offsets, k_offsets)]
            tile = _Tile(
                kernel,
                q,
                k,
                v,
                projection,
                weight,
                keep,
                start,
                end,
                chunk,
                start_frames[index],
                start_contexts[index],
                ws,
                recorded,
            )
            q_f, k_f, v_aug = tile.q_features, tile.k_features, tile.keys.v_aug
            grad_aug = divide_backward(
                _chunks(grad, start, end, chunk),
                _chunks(out, start, end, chunk),
                safe[here],
                passes[here],
                ws,
            )
            scores = all_scores[here]  # tril(Q_c K_c^T), kept by the forward
            grad_v_aug = torch.matmul(
                scores.transpose(-2, -1), grad_aug, out=ws.take("grad_values", *v_aug.shape)
            )
            grad_scores = torch.matmul(
                grad_aug, v_aug.transpose(-2, -1), out=ws.take("scores", *scores.shape)
            ).tril_()
            grad_q_base = torch.matmul(grad_scores, k_f, out=ws.take("grad_query", *q_f.shape))
            grad_k_base = torch.matmul(
                grad_scores.transpose(-2, -1), q_f, out=ws.take("grad_keys", *k_f.shape)
            )
            # dP_c = Q_c^T dOut_c into slots 0..n-1, the carried-in gradient into slot n, then scanned.
            grad_states = ws.take("grad_states", *tile.states.shape)
            torch.matmul(q_f.transpose(-2, -1), grad_aug, out=grad_states[:n])
            grad_states[n].copy_(running)
            _scan_backward_(grad_states, tile.decays)
            running = grad_states[0].clone()
            grad_chunk_states = grad_states[1:]  # dT_c
            # dQ_c += a_c dOut_c E_{c-1}^T (scales dOut in place: dP is already taken)
            grad_aug.mul_(tile.decays[..., None, None])
            bmm_add(grad_q_base, grad_aug, tile.states[:n].transpose(-2, -1))
            bmm_add(grad_k_base, v_aug, grad_chunk_states.transpose(-2, -1))
            bmm_add(grad_v_aug, k_f, grad_chunk_states)
            grad_q_rows = kernel.backward(
                tile.q_rows,
                projection,
                tile.query,
                grad_q_base,
                None,
                out=ws.take("grad_q", *tile.q_rows.shape),
                weight=weight,
            )
            _write(grad_q, start, end, grad_q_rows)
            grad_k_rows, grad_v_rows = key_tile_backward(
                kernel,
                tile.k_rows,
                tile.v_rows,
                projection,
                tile.keys,
                grad_k_base,
                grad_v_aug,
                ws,
                weight=weight,
            )
            _write(grad_k, start, end, grad_k_rows)
            _write(grad_v, start, end, grad_v_rows)
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
