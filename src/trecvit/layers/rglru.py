"""The Real-Gated Linear Recurrent Unit (RG-LRU) of Griffin, as in TRecViT."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from trecvit.layers.kernels.rglru_fused import fused_available, fused_rglru
from trecvit.layers.scan import linear_scan, sqrt_bound_derivative


class BlockDiagonalLinear(nn.Module):
    """A linear map whose matrix is block-diagonal: ``x`` is cut into
    ``num_blocks`` equal chunks, chunk ``j`` is multiplied by its own matrix.

    Parameters: ``weight [h, l/h, l/h]`` (used as ``x_j @ weight[j]``, Flax
    layout) and ``bias [h, l/h]``.
    """

    def __init__(self, width: int, num_blocks: int):
        super().__init__()
        if width % num_blocks:
            raise ValueError(f"BlockDiagonalLinear: width {width} is not divisible by "
                             f"num_blocks {num_blocks}")
        self.width = width
        self.num_blocks = num_blocks
        block = width // num_blocks
        self.weight = nn.Parameter(torch.empty(num_blocks, block, block))  # (h, i, j)
        self.bias = nn.Parameter(torch.empty(num_blocks, block))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The official initialisation: ``w ~ N(0, 1 / l)``, zero bias."""
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(self.width))
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xb = x.unflatten(-1, (self.num_blocks, -1))  # (..., h, i)
        y = torch.einsum("...hi,hij->...hj", xb, self.weight.to(x.dtype)) + self.bias.to(x.dtype)
        return y.flatten(-2)  # (..., l)


def rnn_param_init(width: int, min_rad: float, max_rad: float) -> torch.Tensor:
    """``a_param`` such that ``exp(-softplus(a_param)) = r``, with ``r^2`` uniform
    in ``[min_rad^2, max_rad^2]`` (the official initialisation)."""
    r2 = torch.empty(width).uniform_(min_rad ** 2, max_rad ** 2)
    neg_log_r = -0.5 * torch.log(r2)
    return torch.log(torch.expm1(neg_log_r))  # softplus^-1


class RGLRU(nn.Module):
    """Real-gated linear recurrent unit over time.

    For each channel (all elementwise)::

        gate_x = sigmoid(BD_x(c_t)), gate_a = sigmoid(BD_a(c_t))
        log_a_t = -8 * gate_a * softplus(a_param),   a_t = exp(log_a_t)
        m_t = sqrt(1 - a_t^2)      (m = 1 at the first frame of a sequence)
        h_t = a_t * h_{t-1} + m_t * gate_x * c_t

    The recurrence is computed in float32 whatever the input dtype.

    Without gates (``gates=False``, the paper's "no input gate, no recurrent gate"
    ablation) there are no gate layers: ``gate_x = 1`` and ``gate_a = 1 / C``, so
    ``a_t = exp(-softplus(a_param))`` is the learnt eigenvalue itself (initialised
    in ``[min_rad, max_rad]``) and ``h_t = a h_{t-1} + sqrt(1 - a^2) c_t``.

    Args:
        width: channels ``l``.
        num_heads: diagonal blocks of the two gates.
        min_rad, max_rad: range of the initial eigenvalue modulus.
        gates: build the input and recurrence gates (official: ``True``).
    """

    C = 8.0  # the fixed constant in log_a = -C * gate_a * softplus(a_param)

    def __init__(self, width: int, num_heads: int, min_rad: float = 0.5, max_rad: float = 0.999,
                 gates: bool = True):
        super().__init__()
        self.width = width
        self.min_rad = min_rad
        self.max_rad = max_rad
        self.gates = gates
        self.a_param = nn.Parameter(torch.empty(width))
        self.reset_parameters()  # a_param only: the gates initialise themselves
        if gates:
            self.input_gate = BlockDiagonalLinear(width, num_heads)
            self.a_gate = BlockDiagonalLinear(width, num_heads)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The official initialisation of ``a_param`` (:func:`rnn_param_init`)."""
        self.a_param.copy_(rnn_param_init(self.width, self.min_rad, self.max_rad))

    def forward(self, c: torch.Tensor, h0: torch.Tensor | None = None,
                first: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the recurrence over axis 1 of ``c [b, t, n, l]``.

        Args:
            c: inputs ``[b, t, n, l]``.
            h0: state before ``c[:, 0]``, ``[b, n, l]`` float32; ``None`` = zeros.
            first: ``[b]`` bool, True where ``c[:, 0]`` is the first frame of a
                sequence (its multiplier is 1 and its previous state is taken
                as zero). ``None`` means True when ``h0`` is None, else False.

        Returns:
            ``(y [b, t, n, l] in c's dtype, h_last [b, n, l] float32)``.
        """
        b, t = c.shape[:2]
        if self.gates and t > 1 and torch.is_grad_enabled() and fused_available(c):
            return self._fused(c, h0, first)
        if self.gates:
            gate_x = torch.sigmoid(self.input_gate(c))
            gate_a = torch.sigmoid(self.a_gate(c))
            log_a = -self.C * gate_a.float() * F.softplus(self.a_param.float())  # (b, t, n, l)
        else:  # gate_x = 1, gate_a = 1 / C: the same a at every step
            gate_x = None
            log_a = (-F.softplus(self.a_param.float())).expand(c.shape)  # (b, t, n, l)
        a = torch.exp(log_a)
        multiplier = sqrt_bound_derivative(1.0 - torch.exp(2.0 * log_a))
        if h0 is None and first is None:
            # A fresh sequence: m_0 = 1.
            multiplier = torch.cat([torch.ones_like(multiplier[:, :1]), multiplier[:, 1:]], dim=1)
        elif first is not None:
            reset = first.view(b, 1, 1, 1) & (torch.arange(t, device=c.device) == 0).view(1, t, 1, 1)
            multiplier = torch.where(reset, torch.ones_like(multiplier), multiplier)
            if h0 is not None:
                h0 = torch.where(first.view(b, 1, 1), torch.zeros_like(h0), h0.float())
        else:  # carry on from h0 for every element
            h0 = h0.float()
        x = (c if gate_x is None else c * gate_x).float() * multiplier  # (b, t, n, l) float32
        h = linear_scan(a, x, h0)  # (b, t, n, l) float32
        return h.to(c.dtype), h[:, -1]

    def _fused(self, c: torch.Tensor, h0: torch.Tensor | None, first: torch.Tensor | None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The same recurrence through the fused CPU kernels (training: one pass each way)."""
        b = c.shape[0]
        if h0 is None and first is None:
            reset = torch.ones(b, dtype=torch.bool)
        elif first is not None:
            reset = first.to("cpu", torch.bool)
            if h0 is not None:
                h0 = torch.where(first.view(b, 1, 1), torch.zeros_like(h0), h0.float())
        else:
            reset = torch.zeros(b, dtype=torch.bool)
        h = fused_rglru(c, self.input_gate(c), self.a_gate(c), F.softplus(self.a_param.float()),
                        None if h0 is None else h0.to(c.dtype), reset, self.C)
        return h, h[:, -1].float()
