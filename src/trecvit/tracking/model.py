"""The point tracker: a TRecViT trunk and a causal, recurrent readout (MooG's, van Steenkiste et al., 2024).

Each query point ``(t, x, y)`` (``t`` its frame, ``x, y`` normalised to [0, 1]
of the frame's width and height) has a latent state that is born at its own
frame from an embedding of its position (Fourier features, then an MLP) and
the frame's features there (the token map sampled bilinearly at the point);
before that frame it is zero and has no effect on anything. At every frame:

1. **correct**: the state attends to that frame's encoder tokens through a few
   cross-attention layers (a query attends to the tokens only, never to other
   queries, so every track is independent of the others);
2. **read out**: the position is a soft arg-max of one more attention over the
   patch grid plus a bounded offset (within one patch), and two logits, the
   visibility and the certainty (that the position is within
   ``certainty_threshold`` pixels of the truth in a 256 x 256 frame); a point is
   predicted visible when ``sigmoid(visibility) * sigmoid(certainty) > 0.5``;
3. **predict**: an MLP, fed the position just read out, gives the state carried
   to the next frame.

The trunk is causal and the readout recurrent, so :meth:`PointTracker.step`
tracks online, frame by frame, and equals :meth:`PointTracker.forward` on the
whole clip; queries can join a running stream (:meth:`PointTracker.add_queries`).
Up to and including its query frame a point's outputs are the query itself,
marked visible (a causal tracker knows nothing earlier; the TAP-Vid ``first``
mode never scores those frames, and no mode scores the query frame).

Axis legend: ``b`` videos, ``n`` query points, ``t`` frames, ``N`` tokens per frame.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from trecvit.checkpoints import pretrained as folder_format
from trecvit.config import TRecViTConfig
from trecvit.encoder import TRecViTEncoder
from trecvit.state import TRecViTState
from trecvit.validation import check_known_fields

BEFORE_QUERY_LOGIT = 10.0  # the visibility and certainty logits up to a point's query frame


@dataclass
class TrackerConfig:
    """The point tracker's hyper-parameters.

    Args:
        encoder: the TRecViT trunk (its head fields are not used).
        width: width of the readout's per-point state.
        depth: cross-attention layers that correct the state at each frame.
        num_heads: attention heads of those layers (``width`` must be divisible by it).
        mlp_dim: hidden width of the readout's MLPs (``None``: 4 x ``width``).
        num_frequencies: Fourier frequencies ``2^0 .. 2^(F-1)`` of the position embedding.
        certainty_threshold: pixels, in a 256 x 256 frame, within which a position counts as
            certain (the target of the certainty logit).
    """

    encoder: TRecViTConfig = dataclasses.field(default_factory=TRecViTConfig)
    width: int = 128
    depth: int = 2
    num_heads: int = 4
    mlp_dim: int | None = None
    num_frequencies: int = 8
    certainty_threshold: float = 8.0

    def __post_init__(self) -> None:
        if isinstance(self.encoder, dict):
            self.encoder = TRecViTConfig.from_dict(self.encoder)
        if not isinstance(self.encoder, TRecViTConfig):
            raise ValueError(f"TrackerConfig.encoder must be a TRecViTConfig, got "
                             f"{type(self.encoder).__name__}")
        if self.mlp_dim is None:
            self.mlp_dim = 4 * self.width
        for name in ("width", "depth", "num_heads", "mlp_dim", "num_frequencies"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrackerConfig.{name} must be an int >= 1, got {value!r}")
        if self.width % self.num_heads:
            raise ValueError(f"TrackerConfig.width ({self.width}) must be divisible by num_heads "
                             f"({self.num_heads})")
        if not (isinstance(self.certainty_threshold, (int, float)) and self.certainty_threshold > 0):
            raise ValueError(f"TrackerConfig.certainty_threshold must be > 0 pixels, got "
                             f"{self.certainty_threshold!r}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["encoder"] = self.encoder.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrackerConfig":
        """Build from a dict (the encoder as a dict of TRecViTConfig fields), refusing unknown fields."""
        check_known_fields(data, cls, "TrackerConfig field(s)")
        return cls(**data)


class TrackingOutput(NamedTuple):
    """Tracks of ``n`` query points over ``t`` frames.

    Attributes:
        positions: ``[b, n, t, 2]`` normalised ``(x, y)``.
        visibility: ``[b, n, t]`` logits that the point is visible.
        certainty: ``[b, n, t]`` logits that the position is within the config's
            ``certainty_threshold`` of the truth.
    """

    positions: torch.Tensor
    visibility: torch.Tensor
    certainty: torch.Tensor

    @property
    def visible(self) -> torch.Tensor:
        """``[b, n, t]`` bool: ``sigmoid(visibility) * sigmoid(certainty) > 0.5``."""
        return torch.sigmoid(self.visibility.float()) * torch.sigmoid(self.certainty.float()) > 0.5


@dataclass
class TrackerState:
    """The online tracker's state for ``b`` streams and ``n`` query points each.

    Attributes:
        encoder: the trunk's streaming state (its ``num_frames [b]`` is each stream's frame index).
        latent: ``[b, n, width]`` the readout's per-point state (zero before the query frame).
        positions: ``[b, n, 2]`` the last positions read out (the query before its frame).
        queries: ``[b, n, 3]`` the query points ``(t, x, y)``.
    """

    encoder: TRecViTState
    latent: torch.Tensor
    positions: torch.Tensor
    queries: torch.Tensor

    @property
    def num_frames(self) -> torch.Tensor:
        return self.encoder.num_frames


def fourier_features(xy: torch.Tensor, num_frequencies: int) -> torch.Tensor:
    """``xy [..., 2]`` in [0, 1] -> ``[..., 2 + 4 F]``: the coordinates, then ``sin`` and ``cos`` of
    ``2^k * pi * xy`` for ``k < F``."""
    freqs = (2.0 ** torch.arange(num_frequencies, device=xy.device, dtype=xy.dtype)) * math.pi
    angles = (xy[..., None] * freqs).flatten(-2)  # (..., 2F)
    return torch.cat([xy, angles.sin(), angles.cos()], dim=-1)


class Mlp(nn.Module):
    """``Linear -> GELU -> Linear``."""

    def __init__(self, width: int, hidden: int, out: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, out or width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class CrossAttentionLayer(nn.Module):
    """Pre-norm cross-attention from the points to one frame's tokens, then an MLP; both residual.
    Each point attends to the tokens alone (no attention between points)."""

    def __init__(self, width: int, num_heads: int, mlp_dim: int):
        super().__init__()
        self.num_heads = num_heads
        self.norm_q = nn.LayerNorm(width)
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = Mlp(width, mlp_dim)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """``x [b, n, d]``, ``tokens [b, N, d]`` (normed) -> ``[b, n, d]``."""
        b, n, d = x.shape
        h = self.num_heads
        q = self.q(self.norm_q(x)).view(b, n, h, d // h).transpose(1, 2)  # (b, h, n, d/h)
        k, v = self.kv(tokens).view(b, -1, 2, h, d // h).permute(2, 0, 3, 1, 4)  # (b, h, N, d/h) each
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + self.proj(attended)
        return x + self.mlp(self.norm_mlp(x))


class TrackingReadout(nn.Module):
    """The recurrent readout over one frame's tokens at a time (see the module docstring)."""

    def __init__(self, config: TrackerConfig):
        super().__init__()
        enc = config.encoder
        d = config.width
        self.config = config
        self.num_frequencies = config.num_frequencies
        self.cell = (enc.patch_size / enc.image_hw[1], enc.patch_size / enc.image_hw[0])  # a patch, (x, y)
        fourier = 2 + 4 * config.num_frequencies
        self.token_proj = nn.Linear(enc.width, d)
        self.token_norm = nn.LayerNorm(d)
        self.token_pos = Mlp(fourier, config.mlp_dim, d)  # where each token is, from its patch centre
        self.query_embed = Mlp(fourier, config.mlp_dim, d)
        self.sample_proj = nn.Linear(d, d)  # the appearance at the query point, into the state
        self.layers = nn.ModuleList(CrossAttentionLayer(d, config.num_heads, config.mlp_dim)
                                    for _ in range(config.depth))
        self.out_norm = nn.LayerNorm(d)
        self.locate_q = nn.Linear(d, d)
        self.locate_k = nn.Linear(d, d)
        self.head = Mlp(d, config.mlp_dim, 4)  # offset (x, y), visibility, certainty
        self.position_embed = Mlp(fourier, config.mlp_dim, d)
        self.predict_norm = nn.LayerNorm(d)
        self.predictor = Mlp(d, config.mlp_dim)

    def centres(self, grid_h: int, grid_w: int, device, dtype) -> torch.Tensor:
        """``[grid_h * grid_w, 2]``: each patch's centre, normalised ``(x, y)``, in row-major order."""
        ys = (torch.arange(grid_h, device=device, dtype=dtype) + 0.5) / grid_h
        xs = (torch.arange(grid_w, device=device, dtype=dtype) + 0.5) / grid_w
        return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 2)

    def keys(self, tokens: torch.Tensor, grid_hw: tuple[int, int]
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``tokens [b, N, D]`` (patch tokens of one frame) -> ``(keys [b, N, d], appearance
        [b, N, d], centres [N, 2])``: keys are the appearance plus an embedding of the position."""
        centres = self.centres(*grid_hw, tokens.device, tokens.dtype)
        appearance = self.token_norm(self.token_proj(tokens))
        keys = appearance + self.token_pos(fourier_features(centres, self.num_frequencies))
        return keys, appearance, centres

    def embed_queries(self, queries: torch.Tensor, appearance: torch.Tensor, grid_hw: tuple[int, int]
                      ) -> torch.Tensor:
        """``queries [b, n, 3]`` -> the state each point is born with, ``[b, n, d]``: an embedding of
        its position plus the frame's appearance there (the token map bilinearly sampled)."""
        b, _, d = appearance.shape
        grid = appearance.transpose(1, 2).reshape(b, d, *grid_hw)  # (b, d, gh, gw)
        where = queries[..., None, 1:].to(grid.dtype) * 2 - 1  # (b, n, 1, 2) in [-1, 1], (x, y)
        sampled = F.grid_sample(grid, where, mode="bilinear", padding_mode="border", align_corners=False)
        return (self.query_embed(fourier_features(queries[..., 1:], self.num_frequencies))
                + self.sample_proj(sampled[..., 0].transpose(1, 2)))

    def forward(self, tokens: torch.Tensor, grid_hw: tuple[int, int], latent: torch.Tensor,
                positions: torch.Tensor, queries: torch.Tensor, frame: torch.Tensor
                ) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor, torch.Tensor]:
        """One frame.

        Args:
            tokens: ``[b, N, D]`` the frame's encoder tokens (patches only).
            grid_hw: the patch grid of the frame.
            latent, positions: the carried state ``[b, n, d]`` and last positions ``[b, n, 2]``.
            queries: ``[b, n, 3]`` ``(t, x, y)``.
            frame: ``[b]`` the index of this frame in each stream.

        Returns:
            ``((positions [b, n, 2], visibility [b, n], certainty [b, n]), latent, positions)``,
            the last two the state for the next frame.
        """
        frame = frame.to(queries.dtype)[:, None]  # (b, 1)
        born = (queries[..., 0] == frame)[..., None]  # (b, n, 1)
        active = (queries[..., 0] <= frame)[..., None]
        keys, appearance, centres = self.keys(tokens, grid_hw)
        latent = torch.where(born, self.embed_queries(queries, appearance, grid_hw).to(latent.dtype), latent)
        x = latent
        for layer in self.layers:
            x = layer(x, keys)
        x = self.out_norm(x)
        d = x.shape[-1]
        logits = self.locate_q(x) @ self.locate_k(keys).transpose(1, 2) / math.sqrt(d)  # (b, n, N)
        centre = logits.float().softmax(dim=-1) @ centres.float()  # (b, n, 2)
        head = self.head(x).float()
        cell = torch.tensor(self.cell, device=x.device)
        read = centre + torch.tanh(head[..., :2]) * cell
        query_xy = queries[..., 1:].float()
        after = active & ~born  # up to its query frame, a point is the query itself
        read = torch.where(after, read, query_xy)
        flat = torch.full_like(head[..., 2], BEFORE_QUERY_LOGIT)
        visibility = torch.where(after[..., 0], head[..., 2], flat)
        certainty = torch.where(after[..., 0], head[..., 3], flat)
        nxt = x + self.position_embed(fourier_features(read.detach().to(x.dtype), self.num_frequencies))
        nxt = nxt + self.predictor(self.predict_norm(nxt))
        latent = torch.where(active, nxt, torch.zeros_like(nxt))
        return (read, visibility, certainty), latent, read


class PointTracker(nn.Module):
    """TRecViT point tracker: ``encoder`` (a TRecViT trunk, as in every task model) and ``readout``.

    Args:
        config: the trunk's and the readout's sizes.

    ``forward(video, queries)`` tracks ``queries [b, n, 3]`` (``(t, x, y)``, ``t`` an integer
    frame index, ``x, y`` normalised) through ``video [b, T, 3, H, W]`` (RGB in [0, 1]) and
    returns a :class:`TrackingOutput`; :meth:`init_state` / :meth:`step` do the same online.
    When no parameter of the encoder requires a gradient (the readout trained on frozen
    features) the trunk runs without building a graph.
    """

    arch: ClassVar[str] = "trecvit_tracker"

    def __init__(self, config: TrackerConfig | None = None):
        super().__init__()
        self.config = config if config is not None else TrackerConfig()
        if not isinstance(self.config, TrackerConfig):
            raise TypeError(f"PointTracker takes a TrackerConfig, got {type(self.config).__name__}")
        self.encoder = TRecViTEncoder(self.config.encoder)
        self.readout = TrackingReadout(self.config)

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the encoder layers' activations in the backward pass (less memory)."""
        self.encoder.grad_checkpointing = enable

    def freeze_encoder(self, frozen: bool = True) -> "PointTracker":
        """Stop (or restart) gradients to the trunk; returns ``self``."""
        for p in self.encoder.parameters():
            p.requires_grad_(not frozen)
        return self

    @property
    def encoder_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.encoder.parameters())

    # ------------------------------------------------------------------ checks
    def check_queries(self, queries: torch.Tensor, batch: int, num_frames: int | None = None,
                      first_frame: torch.Tensor | None = None) -> None:
        """``queries [b, n, 3]``: finite, integer frame indices in ``[0, num_frames)`` (or not before
        ``first_frame [b]``, a stream's current frame), positions inside the frame."""
        if not isinstance(queries, torch.Tensor) or not queries.is_floating_point():
            what = queries.dtype if isinstance(queries, torch.Tensor) else type(queries).__name__
            raise ValueError(f"queries must be a float tensor [b, n, 3] of (t, x, y), got {what}")
        if queries.dim() != 3 or queries.shape[-1] != 3 or queries.shape[0] != batch:
            raise ValueError(f"queries must be [b={batch}, n, 3] of (t, x, y), got {tuple(queries.shape)}")
        if queries.device != self.device:
            raise ValueError(f"queries are on {queries.device} but the model is on {self.device}")
        if not torch.isfinite(queries).all():
            raise ValueError("queries hold NaN or infinite values")
        t, xy = queries[..., 0], queries[..., 1:]
        if (t != t.round()).any() or (t < 0).any():
            bad = t[(t != t.round()) | (t < 0)][:3].tolist()
            raise ValueError(f"query frames must be whole frame indices >= 0, got {bad}")
        if num_frames is not None and (t >= num_frames).any():
            raise ValueError(f"a query frame ({int(t.max())}) is past the end of the video ({num_frames} "
                             f"frames, indices 0..{num_frames - 1})")
        if first_frame is not None and (t < first_frame.to(t)[:, None]).any():
            bad = (t < first_frame.to(t)[:, None]).nonzero()[0].tolist()
            raise ValueError(f"query frame {int(t[bad[0], bad[1]])} of stream {bad[0]} is in the past: the "
                             f"stream is at frame {int(first_frame[bad[0]])}")
        if (xy < 0).any() or (xy > 1).any():
            raise ValueError("query points must lie inside the frame: x and y normalised to [0, 1], got "
                             f"{xy[((xy < 0) | (xy > 1)).any(-1)][:3].tolist()}")

    def _patch_tokens(self, encoded: torch.Tensor) -> torch.Tensor:
        return encoded[..., self.encoder.tokenizer.num_prefix_tokens:, :]

    def _trunk(self, run, *args):
        """``run(*args)`` on the trunk, without a graph when it is frozen."""
        if self.encoder_frozen:
            with torch.no_grad():
                return run(*args)
        return run(*args)

    # -------------------------------------------------------------- full clips
    def forward(self, video: torch.Tensor, queries: torch.Tensor) -> TrackingOutput:
        """Track ``queries [b, n, 3]`` through ``video [b, T, 3, H, W]`` (one sequence, no clips)."""
        self.encoder.check_video(video)
        b, num_frames = video.shape[:2]
        self.check_queries(queries, b, num_frames)
        encoded, _, _ = self._trunk(lambda v: self.encoder.encode(self.encoder.tokens(v)), video)
        tokens = self._patch_tokens(encoded)  # (b, T, N, D)
        grid = self._grid(video.shape[-2:])
        latent, positions = self._empty(queries)
        outs = []
        for t in range(num_frames):
            frame = torch.full((b,), t, device=video.device)
            out, latent, positions = self.readout(tokens[:, t], grid, latent, positions, queries, frame)
            outs.append(out)
        return TrackingOutput(*(torch.stack(parts, dim=2) for parts in zip(*outs)))

    def _grid(self, hw) -> tuple[int, int]:
        p = self.config.encoder.patch_size
        return hw[0] // p, hw[1] // p

    def _empty(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n = queries.shape[:2]
        latent = torch.zeros(b, n, self.config.width, device=queries.device,
                             dtype=self.encoder.param_dtype)
        return latent, queries[..., 1:].float().clone()

    # --------------------------------------------------------------- streaming
    def init_state(self, queries: torch.Tensor, image_size: int | tuple[int, int] | None = None
                   ) -> TrackerState:
        """An online state for ``queries [b, n, 3]`` (``n`` may be 0; more join through
        :meth:`add_queries`), for frames of ``image_size`` (default: the encoder's)."""
        if not isinstance(queries, torch.Tensor) or queries.dim() != 3:
            what = tuple(queries.shape) if isinstance(queries, torch.Tensor) else type(queries).__name__
            raise ValueError(f"queries must be a float tensor [b, n, 3] of (t, x, y), got {what}")
        self.check_queries(queries, queries.shape[0])
        state = self.encoder.init_state(queries.shape[0], image_size, device=self.device)
        latent, positions = self._empty(queries)
        return TrackerState(state, latent, positions, queries.clone())

    def add_queries(self, state: TrackerState, queries: torch.Tensor) -> TrackerState:
        """``state`` with ``queries [b, m, 3]`` appended (their frames not in the past); the new
        points are the last ``m`` of every output."""
        self.check_queries(queries, state.queries.shape[0], first_frame=state.num_frames)
        latent, positions = self._empty(queries)
        return TrackerState(state.encoder, torch.cat([state.latent, latent], dim=1),
                            torch.cat([state.positions, positions], dim=1),
                            torch.cat([state.queries, queries], dim=1))

    def step(self, frame: torch.Tensor, state: TrackerState
             ) -> tuple[TrackingOutput, TrackerState]:
        """One frame ``[b, 3, H, W]`` of ``b`` streams -> (this frame's :class:`TrackingOutput`,
        with ``t = 1``; the new state); equal to frame ``t`` of :meth:`forward`."""
        if not isinstance(state, TrackerState):
            raise ValueError(f"state must be a TrackerState (from init_state), got {type(state).__name__}")
        index = state.num_frames
        encoded, enc_state = self._trunk(self.encoder.step, frame, state.encoder)
        out, latent, positions = self.readout(self._patch_tokens(encoded), self._grid(frame.shape[-2:]),
                                              state.latent, state.positions, state.queries, index)
        return (TrackingOutput(*(x[:, :, None] for x in out)),
                TrackerState(enc_state, latent, positions, state.queries))

    # ------------------------------------------------------------------- files
    def save_pretrained(self, directory: str | Path,
                        preprocessor: folder_format.PreprocessorConfig | None = None) -> Path:
        """Write ``config.json`` (``"arch": "trecvit_tracker"``) and ``model.safetensors``."""
        return folder_format.save_pretrained(self, directory, preprocessor=preprocessor)

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu"
                        ) -> "PointTracker":
        """Load a folder written by :meth:`save_pretrained` (a ``trecvit train-tracker`` run's
        ``model/``); a folder of another architecture is refused, naming it."""
        return folder_format.load_folder(directory, TrackerConfig.from_dict, cls, map_location, expect=(
            cls.arch, "a point tracker", "pass the model/ folder of a `trecvit train-tracker` run"))
