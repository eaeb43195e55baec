"""Bidirectional FAVOR+ attention: ``D^-1 Q' (K'^T V)`` in O(L m d) time and O(L d + m d) memory.

Tiled (see :mod:`favor.ops.common`): the forward pass sweeps the key tiles to build the context
``K'^T V_aug`` ``(M, d + 1)`` per head, then the query tiles to read it out. The backward pass sweeps the
query tiles (gradient of the context, query gradients), then the key tiles (key and value gradients),
recomputing each tile's features. Every step is a matrix product on a tile that sits in cache, and the
feature maps' gradients are the kernels' hand-written vector-Jacobian products.

Stabilization: a key's weight is ``exp(log_scale_j - c)`` with one ``c`` per (batch, head): the max of
``log_scale`` over real keys. The sweep keeps a running max and rescales the partial context when it grows
(as online softmax does), so the result equals using the final max throughout.
"""

from __future__ import annotations

import torch

from favor.ops.common import (
    KeyTile,
    Workspace,
    augment_values,
    bmm_add,
    divide,
    divide_backward,
    key_tile,
    key_tile_backward,
    noncausal_key_weights,
    tile_rows,
    tile_spans,
)
from favor.ops.features import Kernel

__all__ = ["noncausal_attention"]


def _rows(t: torch.Tensor | None, start: int, end: int) -> torch.Tensor | None:
    """Positions ``start:end`` (the last dim) of a mask ``(B, 1, L)`` or offsets ``(B, H, L)``, or None."""
    return None if t is None else t[..., start:end]


def _key_tile(
    kernel: Kernel,
    k,
    projection,
    weight,
    keep,
    offsets,
    start: int,
    end: int,
    ws: Workspace,
    nb_features: int,
) -> tuple[torch.Tensor, KeyTile]:
    """Keys ``start:end`` (a dense copy in ``ws``) and their :class:`KeyTile`, features in ``ws``.

    ``weight``: the kernel's weight for ``projection``, built once per sweep; ``offsets``: ``(B, H, L)``
    feature offsets saved by the forward pass, or None to compute them.
    """
    k_tile = ws.dense("k_rows", k[:, :, start:end])
    out = ws.take("keys", *k_tile.shape[:-1], nb_features)
    offset = _rows(offsets, start, end)
    return k_tile, key_tile(kernel, k_tile, projection, _rows(keep, start, end), out, offset, weight=weight)


def _query_tile(
    kernel: Kernel, q, projection, weight, offsets, start: int, end: int, ws: Workspace, nb_features: int
):
    """Queries ``start:end`` (a dense copy in ``ws``) and their features (no ``log_scale``), in ``ws``."""
    q_tile = ws.dense("q_rows", q[:, :, start:end])
    out = ws.take("query", *q_tile.shape[:-1], nb_features)
    offset = _rows(offsets, start, end)
    return q_tile, kernel.forward(q_tile, projection, out, offset=offset, scale=False, weight=weight)


class _Bidirectional(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, projection, keep, kernel: Kernel, rows: int):
        batch, heads, length, head_dim = v.shape
        tiles = tile_spans(length, rows)
        # (B, H, M, d + 1), relative to the running frame
        context = v.new_zeros(batch, heads, kernel.nb_features(projection, head_dim), head_dim + 1)
        frame = v.new_full((batch, heads, 1), float("-inf"))  # running max of log_scale over real keys
        nb_features = kernel.nb_features(projection, head_dim)
        weight = kernel.weight(projection, v)  # built once for every tile of both sweeps
        ws = Workspace(v)
        # The feature maps' row maxima, kept (when there will be a backward) so that it need not take
        # them again.
        keep_offsets = kernel.has_offset and any(ctx.needs_input_grad)
        q_offsets, k_offsets = (v.new_empty(batch, heads, length) if keep_offsets else None for _ in "qk")
        for start, end in tiles:
            _, tile = _key_tile(kernel, k, projection, weight, keep, None, start, end, ws, nb_features)
            if k_offsets is not None:
                k_offsets[:, :, start:end] = tile.features.offset
            new_frame = torch.maximum(frame, tile.log_scale.amax(dim=-1, keepdim=True))
            if start > 0:
                # exp(old - new) <= 1; the context is still zero while every key so far was padding.
                decay = torch.where(torch.isfinite(frame), torch.exp(frame - new_frame), 0.0)
                context.mul_(decay.unsqueeze(-1))
            frame = new_frame
            # -inf only while every key so far is padding; any finite value works there.
            v_tile = ws.dense("v_rows", v[:, :, start:end])
            tile.weigh(
                v_tile,
                torch.nan_to_num(frame, neginf=0.0),
                ws.take("values", *v_tile.shape[:-1], head_dim + 1),
            )
            bmm_add(context, tile.features.base.transpose(-2, -1), tile.v_aug)
        frame = torch.nan_to_num(frame, neginf=0.0)

        out = v.new_empty(batch, heads, length, head_dim)
        safe = v.new_empty(batch, heads, length, 1)
        passes = torch.empty(batch, heads, length, 1, dtype=torch.bool, device=v.device)
        for start, end in tiles:
            _, query = _query_tile(kernel, q, projection, weight, None, start, end, ws, nb_features)
            if q_offsets is not None:
                q_offsets[:, :, start:end] = query.offset
            out_aug = torch.matmul(
                query.base, context, out=ws.take("out", *query.base.shape[:-1], head_dim + 1)
            )
            out[:, :, start:end], safe[:, :, start:end], passes[:, :, start:end] = divide(out_aug, ws)

        ctx.save_for_backward(
            q, k, v, projection, keep, context, frame, out, safe, passes, q_offsets, k_offsets
        )
        ctx.kernel, ctx.tiles = kernel, tiles
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        q, k, v, projection, keep, context, frame, out, safe, passes, q_offsets, k_offsets = ctx.saved_tensors
        kernel = ctx.kernel
        grad_q, grad_k, grad_v = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        grad_context = torch.zeros_like(context)
        batch, heads, _, head_dim = v.shape
        nb_features = kernel.nb_features(projection, head_dim)
        weight = kernel.weight(projection, v)
        ws = Workspace(v)
        for start, end in ctx.tiles:
            rows = slice(start, end)
            grad_aug = divide_backward(
                ws.dense("grad_rows", grad[:, :, rows]),
                out[:, :, rows],
                safe[:, :, rows],
                passes[:, :, rows],
                ws,
            )
            q_tile, features = _query_tile(
                kernel, q, projection, weight, q_offsets, start, end, ws, nb_features
            )
            bmm_add(grad_context, features.base.transpose(-2, -1), grad_aug)
            grad_base = torch.matmul(
                grad_aug, context.transpose(-2, -1), out=ws.take("grad_base", *q_tile.shape[:-1], nb_features)
            )
            grad_q[:, :, rows] = kernel.backward(
                q_tile,
                projection,
                features,
                grad_base,
                None,
                out=ws.take("grad_q", *q_tile.shape),
                weight=weight,
            )
        for start, end in ctx.tiles:
            rows = slice(start, end)
            k_tile, tile = _key_tile(
                kernel, k, projection, weight, keep, k_offsets, start, end, ws, nb_features
            )
            v_tile = ws.dense("v_rows", v[:, :, rows])
            tile.weigh(v_tile, frame, ws.take("values", *v_tile.shape[:-1], head_dim + 1))
            grad_base = torch.matmul(
                tile.v_aug,
                grad_context.transpose(-2, -1),
                out=ws.take("grad_base", *k_tile.shape[:-1], nb_features),
            )
            grad_v_aug = torch.matmul(
                tile.features.base, grad_context, out=ws.take("grad_values", *tile.v_aug.shape)
            )
            grad_k[:, :, rows], grad_v[:, :, rows] = key_tile_backward(
                kernel, k_tile, v_tile, projection, tile, grad_base, grad_v_aug, ws, weight=weight
            )
        return grad_q, grad_k, grad_v, None, None, None, None


def noncausal_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    projection: torch.Tensor | None,
    keep: torch.Tensor | None,
    *,
    kernel: Kernel,
    tile_size: int | None = None,
) -> torch.Tensor:
    """Bidirectional FAVOR+ attention on raw q, k, v ``(B, H, L, d)``.

    Args:
        projection: ``(m, d)`` or None (kernels that allow it).
        keep: ``(B, 1, L)`` True at real keys, or None.
        kernel: the feature map.
        tile_size: rows per tile (default: sized to the cache).

    Returns:
        ``(B, H, L, d)``.
    """
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        # Tracing records the tile loop for one length; the untiled form keeps the length dynamic (ONNX).
        keys = kernel.forward(k, projection)
        v_aug = augment_values(v, noncausal_key_weights(keys, keep))
        return divide(kernel.forward(q, projection).base @ (keys.base.transpose(-2, -1) @ v_aug))[0]
    batch, heads = q.shape[:2]
    nb_features = kernel.nb_features(projection, q.shape[-1])
    rows = tile_rows(batch * heads, nb_features, requested=tile_size, device=q.device)
    return _Bidirectional.apply(q, k, v, projection, keep, kernel, rows)
