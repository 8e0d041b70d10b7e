"""ViViT model 1 against Hugging Face ``transformers``' ``VivitModel`` (an independent implementation).

The same configuration built in both: ViViT-B/16x2 has the same number of parameters (ours
without the classifier, with ``rep_size = width`` so that our ``tanh`` pre-logits are HF's
pooler; counted on the meta device, nothing is run), and a small ViViT with HF's weights copied
into ours gives the same ``last_hidden_state`` (our ``encoded``) and ``pooler_output`` (our
``pre_logits``). Skipped when ``transformers`` is not installed.
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from trecvit.baselines.vivit import ViViT, ViViTConfig  # noqa: E402

GELU_TANH = "gelu_pytorch_tanh"  # transformers' name for F.gelu(approximate="tanh")


def _hf_config(width, depth, heads, mlp, image_size, frames, tubelet=(2, 16, 16)):
    return transformers.VivitConfig(
        image_size=image_size, num_frames=frames, tubelet_size=list(tubelet), num_channels=3,
        hidden_size=width, num_hidden_layers=depth, num_attention_heads=heads, intermediate_size=mlp,
        hidden_act=GELU_TANH, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        layer_norm_eps=1e-6, qkv_bias=True)


def _ours(width, depth, heads, mlp, image_size, frames, tubelet=(2, 16, 16)) -> ViViTConfig:
    return ViViTConfig(width=width, depth=depth, num_heads=heads, mlp_dim=mlp, patch_size=tubelet[1],
                       tubelet_frames=tubelet[0], image_size=image_size, frames_per_clip=frames,
                       pool_type="tok", rep_size=width, num_classes=10)


def _layer_names(hf_state: dict, i: int) -> dict[str, str]:
    """Our block ``i``'s module names -> HF's (transformers 5 names, or those of 4.x)."""
    if f"layers.{i}.attention.q_proj.weight" in hf_state:  # transformers >= 5
        p = f"layers.{i}."
        q, k, v, o = (p + "attention." + n for n in ("q_proj", "k_proj", "v_proj", "o_proj"))
        fc1, fc2 = p + "mlp.fc1", p + "mlp.fc2"
    else:  # transformers 4.x
        p = f"encoder.layer.{i}."
        q, k, v = (p + "attention.attention." + n for n in ("query", "key", "value"))
        o, fc1, fc2 = p + "attention.output.dense", p + "intermediate.dense", p + "output.dense"
    return {"q": q, "k": k, "v": v, "proj": o, "fc1": fc1, "fc2": fc2,
            "norm1": p + "layernorm_before", "norm2": p + "layernorm_after"}


def hf_to_ours(hf_state: dict[str, torch.Tensor], config: ViViTConfig) -> dict[str, torch.Tensor]:
    """HF ``VivitModel`` weights under our names (all but ``head.classifier``)."""
    t, n, d = config.posemb_frames, config.num_patches, config.width
    pos = hf_state["embeddings.position_embeddings"]  # (1, 1 + t' n, d), the class token first
    out = {
        "encoder.tokenizer.proj.weight": hf_state["embeddings.patch_embeddings.projection.weight"],
        "encoder.tokenizer.proj.bias": hf_state["embeddings.patch_embeddings.projection.bias"],
        "encoder.posemb.pos_embed": pos[:, 1:].reshape(1, t, n, d),
        "encoder.posemb.cls_pos": pos[:, :1],
        "encoder.cls_token": hf_state["embeddings.cls_token"],
        "encoder.norm.weight": hf_state["layernorm.weight"],
        "encoder.norm.bias": hf_state["layernorm.bias"],
        "head.pre_logits.weight": hf_state["pooler.dense.weight"],
        "head.pre_logits.bias": hf_state["pooler.dense.bias"],
    }
    for i in range(config.depth):
        hf, ours = _layer_names(hf_state, i), f"encoder.blocks.{i}."
        for kind in ("weight", "bias"):  # fused qkv: [q; k; v]
            out[ours + f"attn.qkv.{kind}"] = torch.cat([hf_state[f"{hf[x]}.{kind}"] for x in "qkv"], dim=0)
            for mine, theirs in (("attn.proj", "proj"), ("mlp.fc1", "fc1"), ("mlp.fc2", "fc2"),
                                 ("norm1", "norm1"), ("norm2", "norm2")):
                out[ours + f"{mine}.{kind}"] = hf_state[f"{hf[theirs]}.{kind}"]
    return out


def test_transformers_names_tanh_gelu_as_we_use_it():
    from transformers.activations import ACT2FN

    x = torch.linspace(-4, 4, 101)
    torch.testing.assert_close(ACT2FN[GELU_TANH](x), torch.nn.functional.gelu(x, approximate="tanh"))


def test_vivit_b_has_the_parameter_count_of_hf_vivit_b():
    sizes = dict(width=768, depth=12, heads=12, mlp=3072, image_size=224, frames=32)
    with torch.device("meta"):  # shapes only: nothing is allocated or run
        hf = transformers.VivitModel(_hf_config(**sizes), add_pooling_layer=True)
        ours = ViViT(_ours(**sizes))
    hf_count = sum(p.numel() for p in hf.parameters())
    ours_count = sum(p.numel() for n, p in ours.named_parameters() if not n.startswith("head.classifier."))
    assert ours_count == hf_count
    assert hf_count > 85_000_000  # ViViT-B/16x2: about 88.6 M without the classifier


@torch.no_grad()
def test_small_vivit_with_hf_weights_gives_hf_outputs():
    sizes = dict(width=64, depth=2, heads=4, mlp=128, image_size=32, frames=4)
    torch.manual_seed(0)
    hf = transformers.VivitModel(_hf_config(**sizes), add_pooling_layer=True).eval()
    for name, p in hf.named_parameters():  # HF's position embedding starts at zero: make every weight matter
        scale = 1.0 if "layernorm" in name and name.endswith(".weight") else 0.0
        p.copy_(scale + 0.1 * torch.randn_like(p))
    config = _ours(**sizes)
    model = ViViT(config).eval()
    state = model.state_dict()
    mapped = hf_to_ours(hf.state_dict(), config)
    assert set(state) - set(mapped) == {"head.classifier.weight", "head.classifier.bias"}
    assert set(mapped) <= set(state)
    for k, v in mapped.items():
        assert state[k].shape == v.shape, k
    model.load_state_dict({**state, **mapped})
    video = torch.rand(2, 4, 3, 32, 32)  # [B, T, C, H, W] in [0, 1]: HF's pixel_values layout too
    theirs = hf(pixel_values=video)
    ours = model(video)
    assert theirs.last_hidden_state.shape == (2, 1 + 2 * 4, 64)
    torch.testing.assert_close(ours.encoded[:, 0], theirs.last_hidden_state, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.pre_logits[:, 0], theirs.pooler_output, atol=1e-5, rtol=1e-5)
