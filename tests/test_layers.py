"""Each layer against the formula in the spec."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from trecvit import TRecViT, TRecViTConfig
from trecvit.layers import RGLRU, BlockDiagonalLinear, CausalConv1d, RMSNorm, linear_scan
from trecvit.tokenizer import sincos2d_posemb


def test_causal_conv1d_matches_the_formula_and_chains_state():
    torch.manual_seed(0)
    conv = CausalConv1d(width=6, kernel_width=4)
    with torch.no_grad():
        conv.bias.normal_()
    v = torch.randn(2, 9, 3, 6)
    y, state = conv(v)
    K = 4
    for t in range(9):
        ref = conv.bias + sum(conv.weight[K - 1 - s] * v[:, t - s] for s in range(K) if t - s >= 0)
        torch.testing.assert_close(y[:, t], ref)
    torch.testing.assert_close(state, v[:, -3:])
    # chunks with the state carried across == one pass
    y1, s1 = conv(v[:, :5])
    y2, _ = conv(v[:, 5:], s1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y)


def test_linear_scan_matches_the_loop_and_chains():
    torch.manual_seed(0)
    a, x = torch.rand(2, 10, 3, 4), torch.randn(2, 10, 3, 4)
    h = torch.zeros(2, 3, 4)
    for t in range(10):
        h = a[:, t] * h + x[:, t]
        torch.testing.assert_close(linear_scan(a, x)[:, t], h)
    first = linear_scan(a[:, :4], x[:, :4])
    torch.testing.assert_close(linear_scan(a[:, 4:], x[:, 4:], first[:, -1]), linear_scan(a, x)[:, 4:])


def test_rms_norm_uses_one_plus_scale():
    norm = RMSNorm(8)
    with torch.no_grad():
        norm.scale.fill_(0.5)
    x = torch.randn(3, 8)
    ref = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * 1.5
    torch.testing.assert_close(norm(x), ref)


def test_block_diagonal_linear_equals_a_block_diagonal_matrix():
    bd = BlockDiagonalLinear(width=6, num_blocks=3)
    with torch.no_grad():
        bd.bias.normal_()
    dense = torch.block_diag(*bd.weight)  # (6, 6), used as x @ dense
    x = torch.randn(4, 6)
    torch.testing.assert_close(bd(x), x @ dense + bd.bias.flatten())


def test_rglru_matches_the_spec_formula():
    torch.manual_seed(0)
    lru = RGLRU(width=4, num_heads=2)
    c = torch.randn(1, 5, 2, 4)
    y, last = lru(c)
    gx = torch.sigmoid(lru.input_gate(c))
    ga = torch.sigmoid(lru.a_gate(c))
    log_a = -8 * ga * F.softplus(lru.a_param)
    a = torch.exp(log_a)
    h = torch.zeros(1, 2, 4)
    for t in range(5):
        m = torch.ones_like(a[:, t]) if t == 0 else torch.sqrt(1 - a[:, t] ** 2)
        h = a[:, t] * h + m * gx[:, t] * c[:, t]
        torch.testing.assert_close(y[:, t], h)
    torch.testing.assert_close(last, h)


def test_rglru_initial_eigenvalues_lie_in_the_configured_ring():
    lru = RGLRU(width=4096, num_heads=4, min_rad=0.5, max_rad=0.999)
    r = torch.exp(-F.softplus(lru.a_param.detach()))
    assert float(r.min()) >= 0.5 - 1e-6 and float(r.max()) <= 0.999 + 1e-6
    # r^2 is uniform in [min^2, max^2]: its mean is the middle of that range
    assert abs(float((r ** 2).mean()) - (0.25 + 0.998) / 2) < 0.02


def test_sincos2d_posemb_formula():
    pe = sincos2d_posemb(2, 3, 8)[0]  # (6, 8)
    omega = 1.0 / 10000 ** (torch.arange(2) / 1.0)
    for idx in range(6):
        y, x = divmod(idx, 3)
        ref = torch.cat([torch.sin(x * omega), torch.cos(x * omega), torch.sin(y * omega), torch.cos(y * omega)])
        torch.testing.assert_close(pe[idx], ref)


def test_class_token_gets_no_position_embedding():
    torch.manual_seed(0)
    model = TRecViT(TRecViTConfig(width=32, depth=1, num_heads=2, mlp_dim=64, image_size=32,
                                  num_classes=3, rep_size=8))
    with torch.no_grad():
        model.tokenizer.cls_token.normal_()
        tokens = model.tokenizer(torch.rand(2, 3, 32, 32))
    assert tokens.shape == (2, 5, 32)
    torch.testing.assert_close(tokens[:, 0], model.tokenizer.cls_token[0].expand(2, -1))


def test_official_parameter_count_of_trecvit_b():
    with torch.device("meta"):
        model = TRecViT(TRecViTConfig())
    assert model.num_parameters() == 136_778_128


def test_official_initialisation_statistics():
    torch.manual_seed(0)
    cfg = TRecViTConfig.from_variant("Ti", num_classes=10, rep_size=64)
    model = TRecViT(cfg).requires_grad_(False)
    block = model.encoder.blocks[0]
    D, L = cfg.width, cfg.lru_width
    assert abs(block.temporal.linear_x.weight.std().item() - 1 / math.sqrt(D)) < 0.1 / math.sqrt(D)
    assert abs(block.temporal.linear_out.weight.std().item() - math.sqrt(2 / cfg.depth / L)) < 0.01
    assert abs(block.temporal.conv1d.weight.std().item() - math.sqrt(0.01 / 4)) < 0.01
    assert abs(block.temporal.rg_lru.a_gate.weight.std().item() - 1 / math.sqrt(L)) < 0.003
    assert float(block.spatial.attn.qkv.weight.abs().max()) <= math.sqrt(6 / (2 * D)) + 1e-6
    assert float(block.spatial.mlp.fc1.bias.abs().max()) < 1e-4
    assert torch.all(block.temporal.norm.scale == 0) and torch.all(model.tokenizer.cls_token == 0)
    pe = model.tokenizer.patch_embed.weight
    assert abs(pe.std().item() - 1 / math.sqrt(3 * 16 * 16)) < 0.005
