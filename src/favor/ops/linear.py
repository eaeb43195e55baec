"""Linear-attention cores with hand-written backward passes (the fast paths of FAVOR+).

Given query features Q, key features K and augmented values ``V_aug = [w v, w]`` (see
:mod:`favor.ops.common`), the cores return ``numerator / denominator`` directly:

    bidirectional   O = Q (K^T V_aug)
    causal          O_c = Q_c P_c + tril(Q_c K_c^T) V_aug_c,  P_c = decayed prefix sum of K^T V_aug

Autograd would compute the same gradients, but through transposed views that make its elementwise
backward steps several times slower on CPU, and it keeps more intermediates alive. Here every gradient is
one matrix product written in the layout its consumer wants. The plain autograd twins live in
:mod:`favor.ops.naive`; tests compare outputs and gradients.
"""

from __future__ import annotations

import torch

__all__ = ["noncausal_core", "causal_core"]


def _divide(out_aug: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split ``(..., d + 1)`` into numerator / guarded denominator; also return the guard's pass-through."""
    numerator, denominator = out_aug[..., :-1], out_aug[..., -1:]
    floor = torch.finfo(out_aug.dtype).tiny ** 0.5
    magnitude = denominator.abs()
    passes = magnitude > floor
    # Floor the magnitude, keep the sign: finite for positive and signed (trigonometric) features alike.
    safe = torch.where(denominator < 0, -1.0, 1.0).to(denominator.dtype) * magnitude.clamp_min(floor)
    return numerator / safe, safe, passes


def _grad_out_aug(
    grad: torch.Tensor, out: torch.Tensor, safe: torch.Tensor, passes: torch.Tensor
) -> torch.Tensor:
    """Gradient of ``out = num / den`` with respect to ``[num, den]``, shape ``(..., d + 1)``."""
    grad_num = grad / safe
    grad_den = -(grad_num * out).sum(-1, keepdim=True) * passes
    return torch.cat([grad_num, grad_den], dim=-1)


class _NoncausalCore(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v_aug):
        # q, k (B, H, L, M); v_aug (B, H, L, D)
        context = k.transpose(-2, -1) @ v_aug  # (B, H, M, D)
        out, safe, passes = _divide(q @ context)
        ctx.save_for_backward(q, k, v_aug, context, out, safe, passes)
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k, v_aug, context, out, safe, passes = ctx.saved_tensors
        grad_aug = _grad_out_aug(grad, out, safe, passes)  # (B, H, L, D)
        grad_q = grad_aug @ context.transpose(-2, -1)  # (B, H, L, M)
        grad_context = q.transpose(-2, -1) @ grad_aug  # (B, H, M, D)
        grad_k = v_aug @ grad_context.transpose(-2, -1)  # (B, H, L, M)
        grad_v = k @ grad_context  # (B, H, L, D)
        return grad_q, grad_k, grad_v


def noncausal_core(q: torch.Tensor, k: torch.Tensor, v_aug: torch.Tensor) -> torch.Tensor:
    """``Q (K^T V_aug)`` as numerator / denominator.

    Shapes: q, k ``(B, H, L, M)``, v_aug ``(B, H, L, D)`` -> ``(B, H, L, D - 1)``.
    """
    return _NoncausalCore.apply(q, k, v_aug)


def _scan_(
    states: torch.Tensor, decays: torch.Tensor, initial: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """In place over dim 2: chunk states T become exclusive prefixes ``P_c = a_c E_{c-1}``,
    with ``E_c = P_c + T_c``.

    Returns the overwritten ``states`` (now the prefixes) and the last inclusive state E.
    """
    carried = initial
    for c in range(states.shape[2]):
        chunk_state = states[:, :, c].clone()
        torch.mul(carried, decays[:, :, c, None, None], out=states[:, :, c])
        carried = states[:, :, c] + chunk_state
    return states, carried


def _scan_backward_(
    grad_prefixes: torch.Tensor, grad_final: torch.Tensor, decays: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reverse of :func:`_scan_`, in place: ``dP`` becomes ``dT``; also returns the initial state's gradient.

    ``G_{N-1} = dE_final``, ``dT_c = G_c``, ``G_{c-1} = a_c (dP_c + G_c)``.
    """
    running = grad_final
    for c in range(grad_prefixes.shape[2] - 1, -1, -1):
        grad_prefix = grad_prefixes[:, :, c].clone()
        grad_prefixes[:, :, c] = running
        running = (grad_prefix + running) * decays[:, :, c, None, None]
    return grad_prefixes, running


def _bmm_add(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``acc += a @ b`` in place over any leading batch dims; returns ``acc``."""
    flat = lambda t: t.reshape(-1, *t.shape[-2:])  # noqa: E731
    torch.baddbmm(flat(acc), flat(a), flat(b), out=flat(acc))
    return acc


class _CausalCore(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v_aug, decays, initial):
        # q, k (B, H, N, C, M); v_aug (B, H, N, C, D); decays (B, H, N); initial (B, H, M, D)
        chunk = q.shape[-2]
        future = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).triu_(1)
        prefixes, final = _scan_(k.transpose(-2, -1) @ v_aug, decays, initial)  # (B, H, N, M, D)
        scores = (q @ k.transpose(-2, -1)).masked_fill_(future, 0.0)  # (B, H, N, C, C)
        out, safe, passes = _divide((q @ prefixes).add_(scores @ v_aug))
        ctx.save_for_backward(q, k, v_aug, decays, prefixes, out, safe, passes)
        ctx.future = future
        return out, final

    @staticmethod
    def backward(ctx, grad, grad_final):
        q, k, v_aug, decays, prefixes, out, safe, passes = ctx.saved_tensors
        grad_aug = _grad_out_aug(grad, out, safe, passes)  # (B, H, N, C, D)
        # Each (L, C) or (N, M, D) intermediate is released as soon as it has been used (peak memory).
        # Scores are recomputed rather than stored: one small product instead of (L C) memory.
        scores_t = (k @ q.transpose(-2, -1)).masked_fill_(ctx.future.T, 0.0)  # (B, H, N, C, C), transposed
        grad_v = scores_t @ grad_aug  # (B, H, N, C, D)
        del scores_t
        grad_scores = (grad_aug @ v_aug.transpose(-2, -1)).masked_fill_(ctx.future, 0.0)  # (B, H, N, C, C)
        # Sums of two products accumulate in place (baddbmm): a fresh (L, M) buffer per sum costs page faults.
        grad_q = _bmm_add(grad_scores @ k, grad_aug, prefixes.transpose(-2, -1))  # (B, H, N, C, M)
        grad_k = grad_scores.transpose(-2, -1) @ q
        del grad_scores
        if grad_final is None:
            grad_final = torch.zeros_like(prefixes[:, :, 0])
        grad_states, grad_initial = _scan_backward_(q.transpose(-2, -1) @ grad_aug, grad_final, decays)
        _bmm_add(grad_k, v_aug, grad_states.transpose(-2, -1))
        _bmm_add(grad_v, k, grad_states)
        return grad_q, grad_k, grad_v, None, grad_initial


def causal_core(
    q: torch.Tensor, k: torch.Tensor, v_aug: torch.Tensor, decays: torch.Tensor, initial: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked causal linear attention.

    Shapes: q, k ``(B, H, N, C, M)``, v_aug ``(B, H, N, C, D)``, decays ``(B, H, N)``,
    initial ``(B, H, M, D)``
    -> outputs ``(B, H, N, C, D - 1)`` and the final state ``(B, H, M, D)``.
    """
    return _CausalCore.apply(q, k, v_aug, decays, initial)
