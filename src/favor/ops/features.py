"""FAVOR+ feature maps phi: R^d -> R^M with phi(q) . phi(k) ~ K(q, k).

Every feature map returns :class:`Features`: a bounded ``base`` and an optional per-row ``log_scale``,
with ``phi(x) = base * exp(log_scale)``. Splitting off the per-row scale is how the attention ops stay
finite for large-norm inputs:

- for queries the per-row scale cancels between numerator and denominator, so only ``base`` is used;
- for keys the scale is folded into the values as a weight ``exp(log_scale - c)``, where the stabilizer
  ``c`` is one value shared by the keys of a (batch, head) (bidirectional) or the running maximum up to
  the key's chunk (causal). A shared constant cancels exactly; a per-key constant would not.

Constant factors such as ``1/sqrt(m)`` cancel in ``D^-1 Q' (K'^T V)`` and are omitted.

Kernels (``x`` is scaled by ``d^-1/4`` first, so that softmax kernels estimate ``exp(q.k / sqrt(d))``):
    softmax             positive features exp(Wx - |x|^2/2)                 (Performer Lemma 1)
    softmax_hyperbolic  exp(-|x|^2/2) [exp(Wx), exp(-Wx)]                   (lower variance)
    softmax_trig        exp(|x|^2/2) [sin(Wx), cos(Wx)]                     (original FAVOR, for comparison)
    relu                relu(Wx) + eps, or relu(x) + eps without projection (generalized attention)

Each kernel also has a hand-written vector-Jacobian product (:meth:`Kernel.backward`), used by the tiled
attention ops that recompute features in their backward pass instead of storing them. Its plain twin is
autograd through :meth:`Kernel.forward`; tests compare the two.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Features", "Kernel", "KERNELS", "KERNEL_NAMES", "feature_map", "RELU_EPSILON"]

# Added to ReLU features so that no query sees an all-zero key set (a zero denominator).
RELU_EPSILON = 1e-3


@dataclass(frozen=True)
class Features:
    """Feature values ``phi(x) = base * exp(log_scale)[..., None]``.

    base: ``(batch, heads, length, nb_features)``, bounded.
    log_scale: ``(batch, heads, length)`` or ``None`` when ``base`` is the feature itself (or, with
        ``Kernel.forward(..., scale=False)``, the feature up to a per-row factor).
    offset: ``(batch, heads, length)``, the per-row constant the kernel subtracted before ``exp`` (the
        row max), or None. ``Kernel.forward(..., offset=offset)`` recomputes the same features without
        taking the max again (the fast paths' backward passes do).
    """

    base: torch.Tensor
    log_scale: torch.Tensor | None
    offset: torch.Tensor | None = None


def _scaled_projection(projection: torch.Tensor, x: torch.Tensor, *, stacked: bool = False) -> torch.Tensor:
    """``W d^-1/4`` (``[W; -W] d^-1/4`` when ``stacked``) in ``x``'s dtype.

    Scaling W by d^-1/4 is the same as scaling x, on an (m, d) matrix instead of (B, H, L, d).
    """
    head_dim = x.shape[-1]
    if projection.shape[-1] != head_dim:
        raise ValueError(f"projection has {projection.shape[-1]} columns but head_dim is {head_dim}")
    weight = projection.to(x.dtype) * head_dim**-0.25
    return torch.cat([weight, -weight]) if stacked else weight


def _project(x: torch.Tensor, weight: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T`` for ``x`` ``(..., d)`` and ``weight`` ``(M, d)``, as one 2-D product.

    ``x`` is usually a tile sliced out of a longer sequence; one ``(rows, d) x (d, M)`` product on a copy
    of it is faster than the per-head batched product ``x @ weight.T`` would run. ``out``: a contiguous
    buffer of the result's shape to write into (the tiled ops reuse one across tiles: a fresh buffer costs
    a page fault per 4 KiB on first touch, as much as the product itself at these sizes).
    """
    flat = x.reshape(-1, x.shape[-1])
    shape = (*x.shape[:-1], weight.shape[0])
    if out is None:
        return (flat @ weight.T).view(shape)
    torch.mm(flat, weight.T, out=out.view(flat.shape[0], weight.shape[0]))
    return out.view(shape)


def _half_sq_norm(x: torch.Tensor) -> torch.Tensor:
    # |x d^-1/4|^2 / 2, shape (B, H, L); a norm reduction allocates no (B, H, L, d) temporary.
    return torch.linalg.vector_norm(x, dim=-1).square() * (0.5 * x.shape[-1] ** -0.5)


def _add_half_sq_norm_grad(grad_x: torch.Tensor, x: torch.Tensor, grad: torch.Tensor, sign: float) -> None:
    # d/dx of sign * |x|^2 / (2 sqrt(d)) is sign * x / sqrt(d); accumulated in place.
    grad_x.addcmul_(x, (grad * (sign * x.shape[-1] ** -0.5)).unsqueeze(-1))


class Kernel:
    """A feature map: ``forward`` builds features; ``backward`` is its vector-Jacobian product.

    ``backward(x, projection, features, grad_base, grad_log_scale)`` returns ``d loss / d x`` given the
    features ``forward`` returned for the same ``x`` and the gradients of ``base`` and ``log_scale``
    (``grad_log_scale`` None when the loss does not depend on it, e.g. for queries). Per-row constants
    such as the stabilizing row max are treated as constants: they cancel from ``base * exp(log_scale)``.
    ``backward`` may overwrite ``grad_base`` (it is a scratch buffer of the caller's); ``out``: optional
    contiguous buffer of ``x``'s shape for the result.

    Both build the kernel's weight (:meth:`weight`, the scaled projection) from ``projection`` on each
    call. A caller that calls them many times with one projection (the tiled ops, once per tile) builds
    it once and passes it as ``weight=``: the caller owns that state, and nothing is cached here.
    """

    name: str
    needs_projection: bool = True
    has_offset: bool = False  # whether forward returns Features.offset

    def nb_features(self, projection: torch.Tensor | None, head_dim: int) -> int:
        """M, the number of features per row."""
        return head_dim if projection is None else projection.shape[0]

    def weight(self, projection: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
        """The ``(M', d)`` matrix ``x`` is multiplied by, ``W d^-1/4``, in ``like``'s dtype (None: none)."""
        return None if projection is None else _scaled_projection(projection, like)

    def forward(
        self,
        x: torch.Tensor,
        projection: torch.Tensor | None,
        out: torch.Tensor | None = None,
        *,
        offset: torch.Tensor | None = None,
        scale: bool = True,
        weight: torch.Tensor | None = None,
    ) -> Features:
        """Features of ``x``.

        out: optional contiguous ``(..., M)`` scratch buffer the kernel may use.
        offset: a ``Features.offset`` from an earlier call on the same ``x`` (skips the row max).
        scale: False skips ``log_scale`` (queries: a per-row factor cancels in ``D^-1 Q' (K'^T V)``).
        weight: ``self.weight(projection, x)`` built by the caller, or None to build it here.
        """
        raise NotImplementedError

    def backward(
        self,
        x: torch.Tensor,
        projection: torch.Tensor | None,
        features: Features,
        grad_base: torch.Tensor,
        grad_log_scale: torch.Tensor | None,
        out: torch.Tensor | None = None,
        *,
        weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError

    def _weight(
        self, projection: torch.Tensor | None, x: torch.Tensor, weight: torch.Tensor | None
    ) -> torch.Tensor | None:
        return self.weight(projection, x) if weight is None else weight


class ExpKernel(Kernel):
    """Positive features ``exp(Wx - |x|^2/2)`` (``hyperbolic``: with the stacked projection ``[W; -W]``)."""

    has_offset = True

    def __init__(self, name: str, *, hyperbolic: bool) -> None:
        self.name, self.hyperbolic = name, hyperbolic

    def nb_features(self, projection: torch.Tensor | None, head_dim: int) -> int:
        return projection.shape[0] * (2 if self.hyperbolic else 1)

    def weight(self, projection, like):
        return _scaled_projection(projection, like, stacked=self.hyperbolic)

    def forward(self, x, projection, out=None, *, offset=None, scale=True, weight=None):
        logits = _project(x, self._weight(projection, x, weight), out)
        # The row max is a constant offset (no gradient): base * exp(log_scale) is exactly
        # exp(logits - |x|^2/2). In place on the matmul output (not saved by autograd): one pass, not two.
        row_max = logits.detach().amax(dim=-1) if offset is None else offset
        base = logits.sub_(row_max.unsqueeze(-1)).exp_()
        log_scale = row_max - _half_sq_norm(x) if scale else None
        return Features(base=base, log_scale=log_scale, offset=row_max)

    def backward(self, x, projection, features, grad_base, grad_log_scale, out=None, *, weight=None):
        # d base / d logits = base (row max constant); d log_scale / d x = -x / sqrt(d).
        grad_x = torch.matmul(grad_base.mul_(features.base), self._weight(projection, x, weight), out=out)
        if grad_log_scale is not None:
            _add_half_sq_norm_grad(grad_x, x, grad_log_scale, -1.0)
        return grad_x


class TrigKernel(Kernel):
    """Trigonometric features ``[sin(Wx), cos(Wx)]``, scale ``exp(|x|^2/2)`` (unbounded variance)."""

    name = "softmax_trig"

    def nb_features(self, projection: torch.Tensor | None, head_dim: int) -> int:
        return 2 * projection.shape[0]

    def forward(self, x, projection, out=None, *, offset=None, scale=True, weight=None):
        wx = _project(x, self._weight(projection, x, weight))
        base = torch.cat([torch.sin(wx), torch.cos(wx)], dim=-1)
        return Features(base=base, log_scale=_half_sq_norm(x) if scale else None)

    def backward(self, x, projection, features, grad_base, grad_log_scale, out=None, *, weight=None):
        half = features.base.shape[-1] // 2
        sin, cos = features.base[..., :half], features.base[..., half:]
        grad_wx = grad_base[..., :half] * cos - grad_base[..., half:] * sin
        grad_x = torch.matmul(grad_wx, self._weight(projection, x, weight), out=out)
        if grad_log_scale is not None:
            _add_half_sq_norm_grad(grad_x, x, grad_log_scale, 1.0)
        return grad_x


class ReluKernel(Kernel):
    """Generalized attention: ``relu(Wx) + eps``, or ``relu(x) + eps`` when ``projection`` is None."""

    name = "relu"
    needs_projection = False

    def forward(self, x, projection, out=None, *, offset=None, scale=True, weight=None):
        weight = self._weight(projection, x, weight)
        pre = x if weight is None else _project(x, weight)
        return Features(base=torch.relu(pre) + RELU_EPSILON, log_scale=None)

    def backward(self, x, projection, features, grad_base, grad_log_scale, out=None, *, weight=None):
        # relu(pre) > 0 exactly where base > eps (up to pre below eps's rounding, ~1e-10 in float32).
        grad_pre = grad_base.masked_fill_(features.base <= RELU_EPSILON, 0.0)
        weight = self._weight(projection, x, weight)
        if weight is None:
            return grad_pre if out is None else out.copy_(grad_pre)
        return torch.matmul(grad_pre, weight, out=out)


KERNELS: dict[str, Kernel] = {
    "softmax": ExpKernel("softmax", hyperbolic=False),
    "softmax_hyperbolic": ExpKernel("softmax_hyperbolic", hyperbolic=True),
    "softmax_trig": TrigKernel(),
    "relu": ReluKernel(),
}
# The kernel names, in order: the one list of them (favor.models.config validates configs against it).
KERNEL_NAMES: tuple[str, ...] = tuple(KERNELS)


def get_kernel(kernel: str, projection: torch.Tensor | None) -> Kernel:
    """The named kernel, checking that it can run with (or without) the given projection."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {sorted(KERNELS)}")
    found = KERNELS[kernel]
    if projection is None and found.needs_projection:
        raise ValueError(f"kernel {kernel!r} needs a projection (see favor.ops.random_projection)")
    return found


def feature_map(x: torch.Tensor, projection: torch.Tensor | None, *, kernel: str) -> Features:
    """Apply the named kernel's feature map to ``x`` of shape ``(batch, heads, length, head_dim)``."""
    return get_kernel(kernel, projection).forward(x, projection)
