"""DAT (2022) and DAT++ (2023) at their published sizes, and reduced variants for tests.

Module and parameter names follow the reference implementation, so a state_dict of the
official code loads and ONNX initializers carry the names users see in their exports:
patch_proj, stages.N.proj, stages.N.layer_norms.I.norm, stages.N.attns.I (proj_q, proj_k,
proj_v, proj_out, conv_offset, rpe_table for deformable blocks; proj_qkv, proj_out,
relative_position_bias_table for window blocks; qkv, rpb, proj for neighbourhood blocks),
stages.N.mlps.I, stages.N.local_perception_units.I, down_projs, cls_norm, cls_head.

DAT: 4x4 patch embedding, stages 1-2 window / shifted-window attention (window 7, shift 4),
stages 3-4 window / deformable alternation, offsets tanh(o) * 2 / Hk, reference points divided
by Hk, MLP of two Linear layers, 2x2 down-sampling.
DAT++: two 3x3 stride-2 convolutions as stem, neighbourhood attention (kernel 7) alternating
with deformable blocks in every stage (stage 4 deformable only), offset strides 8, 4, 2, 1
with kernels 9, 7, 5, 3, reference points divided by Hk - 1, raw offsets with the position
clamped to [-1, 1], MLP with a depthwise conv, a depthwise conv (local perception unit) before
each block, 3x3 stride-2 down-sampling.

The relative position bias table of each deformable block is (heads, 2H - 1, 2W - 1) for its
map H x W, so a model is built for one input size (img_size, an int or (height, width)).
resize_rpe_tables() adapts a state_dict saved at another size.
"""

import math
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dat import DAttentionBaseline, LayerNormProxy
from .local_attention import LocalAttention, NeighborhoodAttention2D, ShiftWindowAttention


def conv_out(size, kernel, stride, pad):
    return (size + 2 * pad - kernel) // stride + 1


class TransformerMLP(nn.Module):
    """DAT's MLP: Linear, GELU, Linear over the channels of each pixel."""

    def __init__(self, channels, expansion):
        super().__init__()
        self.chunk = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(channels, channels * expansion)),
            ("act", nn.GELU()),
            ("linear2", nn.Linear(channels * expansion, channels)),
        ]))

    def forward(self, x):
        return self.chunk(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class TransformerMLPWithConv(nn.Module):
    """DAT++'s MLP: 1x1 conv, plus a residual 3x3 depthwise conv, GELU, 1x1 conv."""

    def __init__(self, channels, expansion):
        super().__init__()
        hidden = channels * expansion
        self.linear1 = nn.Sequential(nn.Conv2d(channels, hidden, 1, 1, 0))
        self.act = nn.GELU()
        self.linear2 = nn.Sequential(nn.Conv2d(hidden, channels, 1, 1, 0))
        self.dwc = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)

    def forward(self, x):
        x = self.linear1(x)
        x = x + self.dwc(x)
        return self.linear2(self.act(x))


class TransformerStage(nn.Module):
    def __init__(self, cfg, i, map_size, dim_in):
        super().__init__()
        dim = cfg["dims"][i]
        heads = cfg["heads"][i]
        depth = cfg["depths"][i]
        spec = cfg["stage_spec"][i]
        if len(spec) != depth:
            raise ValueError(f"stage {i + 1}: {len(spec)} block types for depth {depth}")
        plus = cfg["version"] == "dat_pp"
        self.depths = depth
        self.use_lpu = plus
        self.proj = nn.Conv2d(dim_in, dim, 1, 1, 0) if dim_in != dim else nn.Identity()
        self.layer_norms = nn.ModuleList([LayerNormProxy(dim) for _ in range(2 * depth)])
        mlp = TransformerMLPWithConv if plus else TransformerMLP
        self.mlps = nn.ModuleList([mlp(dim, cfg["expansion"]) for _ in range(depth)])
        self.attns = nn.ModuleList()
        for kind in spec:
            if kind == "L":
                self.attns.append(LocalAttention(dim, heads, cfg["window_size"]))
            elif kind == "S":
                ws = cfg["window_size"]
                self.attns.append(ShiftWindowAttention(dim, heads, ws, math.ceil(ws / 2)))
            elif kind == "N":
                self.attns.append(NeighborhoodAttention2D(dim, cfg["na_kernel"], heads))
            elif kind == "D":
                self.attns.append(DAttentionBaseline(
                    map_size, heads, dim // heads, cfg["groups"][i], cfg["strides"][i],
                    cfg["ksizes"][i], "dat_pp" if plus else "dat",
                    offset_range_factor=cfg.get("offset_range_factor", 2.0),
                    q_grid="pixel" if plus else "centre"))
            else:
                raise ValueError(f"stage {i + 1}: unknown block type {kind!r} (L, S, N or D)")
        if plus:
            self.local_perception_units = nn.ModuleList(
                [nn.Conv2d(dim, dim, 3, 1, 1, groups=dim) for _ in range(depth)])

    def forward(self, x):
        x = self.proj(x)
        for d in range(self.depths):
            if self.use_lpu:
                x = x + self.local_perception_units[d](x)
            x = x + self.attns[d](self.layer_norms[2 * d](x))
            x = x + self.mlps[d](self.layer_norms[2 * d + 1](x))
        return x


class DATFamily(nn.Module):
    """DAT or DAT++ classifier built from a configuration dictionary (see CONFIGS)."""

    def __init__(self, cfg, img_size=224, num_classes=1000, in_chans=3):
        super().__init__()
        self.cfg = dict(cfg)
        h, w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        stem, dims = cfg["dim_stem"], cfg["dims"]
        if cfg["version"] == "dat_pp":
            self.patch_proj = nn.Sequential(
                nn.Conv2d(in_chans, stem // 2, 3, 2, 1),
                LayerNormProxy(stem // 2),
                nn.GELU(),
                nn.Conv2d(stem // 2, stem, 3, 2, 1),
                LayerNormProxy(stem),
            )
            h, w = conv_out(conv_out(h, 3, 2, 1), 3, 2, 1), conv_out(conv_out(w, 3, 2, 1), 3, 2, 1)
            down = (3, 2, 1)
        elif cfg["version"] == "dat":
            self.patch_proj = nn.Sequential(
                nn.Conv2d(in_chans, stem, 4, 4, 0),
                LayerNormProxy(stem),
            )
            h, w = conv_out(h, 4, 4, 0), conv_out(w, 4, 4, 0)
            down = (2, 2, 0)
        else:
            raise ValueError(f"version {cfg['version']!r}: expected 'dat' or 'dat_pp'")
        self.map_sizes = []
        self.stages = nn.ModuleList()
        self.down_projs = nn.ModuleList()
        dim_in = stem
        for i in range(4):
            self.map_sizes.append((h, w))
            self.stages.append(TransformerStage(cfg, i, (h, w), dim_in))
            if i < 3:
                self.down_projs.append(nn.Sequential(
                    nn.Conv2d(dims[i], dims[i + 1], down[0], down[1], down[2], bias=False),
                    LayerNormProxy(dims[i + 1])))
                h, w = conv_out(h, *down), conv_out(w, *down)
                dim_in = dims[i + 1]
        self.cls_norm = LayerNormProxy(dims[-1])
        self.cls_head = nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        x = self.patch_proj(x)
        for i in range(4):
            x = self.stages[i](x)
            if i < 3:
                x = self.down_projs[i](x)
        x = self.cls_norm(x)
        x = F.adaptive_avg_pool2d(x, 1)
        return self.cls_head(torch.flatten(x, 1))


def _spec(pattern, depth):
    return tuple((pattern * depth)[:depth])


DAT_BASE = dict(version="dat", window_size=7, expansion=4, strides=(-1, -1, 1, 1),
                ksizes=(9, 7, 5, 3), offset_range_factor=2.0)
DAT_PP_BASE = dict(version="dat_pp", na_kernel=7, expansion=4, strides=(8, 4, 2, 1),
                   ksizes=(9, 7, 5, 3))

CONFIGS = {
    "dat_t": dict(DAT_BASE, dim_stem=96, dims=(96, 192, 384, 768), depths=(2, 2, 6, 2),
                  heads=(3, 6, 12, 24), groups=(-1, -1, 3, 6),
                  stage_spec=(("L", "S"), ("L", "S"), _spec(("L", "D"), 6), ("L", "D"))),
    "dat_s": dict(DAT_BASE, dim_stem=96, dims=(96, 192, 384, 768), depths=(2, 2, 18, 2),
                  heads=(3, 6, 12, 24), groups=(-1, -1, 3, 6),
                  stage_spec=(("L", "S"), ("L", "S"), _spec(("L", "D"), 18), ("L", "D"))),
    "dat_b": dict(DAT_BASE, dim_stem=128, dims=(128, 256, 512, 1024), depths=(2, 2, 18, 2),
                  heads=(4, 8, 16, 32), groups=(-1, -1, 4, 8),
                  stage_spec=(("L", "S"), ("L", "S"), _spec(("L", "D"), 18), ("L", "D"))),
    "dat_pp_t": dict(DAT_PP_BASE, dim_stem=64, dims=(64, 128, 256, 512), depths=(2, 4, 18, 2),
                     heads=(2, 4, 8, 16), groups=(1, 2, 4, 8),
                     stage_spec=(("N", "D"), _spec(("N", "D"), 4), _spec(("N", "D"), 18),
                                 ("D", "D"))),
    "dat_pp_s": dict(DAT_PP_BASE, dim_stem=96, dims=(96, 192, 384, 768), depths=(2, 4, 18, 2),
                     heads=(3, 6, 12, 24), groups=(1, 2, 3, 6),
                     stage_spec=(("N", "D"), _spec(("N", "D"), 4), _spec(("N", "D"), 18),
                                 ("D", "D"))),
    "dat_pp_b": dict(DAT_PP_BASE, dim_stem=128, dims=(128, 256, 512, 1024),
                     depths=(2, 4, 18, 2), heads=(4, 8, 16, 32), groups=(2, 4, 8, 16),
                     stage_spec=(("N", "D"), _spec(("N", "D"), 4), _spec(("N", "D"), 18),
                                 ("D", "D"))),
    # Reduced variants with every block type of the full models, for the test fixtures.
    # DAT at 64x64 gives maps 16, 8, 4, 2: window 4 pads nothing in stage 1, pads the
    # 8x12 map of a 32x48 stage 2 at 64x96 input; stages 3-4 have deformable blocks.
    "dat_mini": dict(DAT_BASE, window_size=4, dim_stem=16, dims=(16, 16, 24, 24),
                     depths=(2, 2, 2, 1), heads=(2, 2, 2, 2), groups=(-1, -1, 2, 2),
                     stage_spec=(("L", "S"), ("L", "S"), ("L", "D"), ("D",))),
    # DAT++ at 64x64 gives maps 16, 8, 4, 2: kernel 3 neighbourhood attention in stages
    # 1-3, deformable blocks with strides 4, 2, 1, 1 in all four.
    "dat_pp_mini": dict(DAT_PP_BASE, na_kernel=3, expansion=2, strides=(4, 2, 1, 1),
                        ksizes=(5, 3, 3, 3), dim_stem=16, dims=(16, 16, 24, 24),
                        depths=(2, 2, 2, 1), heads=(2, 2, 2, 2), groups=(1, 2, 2, 2),
                        stage_spec=(("N", "D"), ("N", "D"), ("N", "D"), ("D",))),
}

# Published parameter counts at 1000 classes.
TARGET_PARAMS = {
    "dat_t": 28.3e6, "dat_s": 49.7e6, "dat_b": 87.9e6,
    "dat_pp_t": 23.96e6, "dat_pp_s": 53.13e6, "dat_pp_b": 93.69e6,
}


def build(name, img_size=224, num_classes=1000, in_chans=3):
    if name not in CONFIGS:
        raise ValueError(f"unknown model {name!r}: expected one of {', '.join(CONFIGS)}")
    return DATFamily(CONFIGS[name], img_size, num_classes, in_chans)


def resize_rpe_tables(state_dict, model):
    """Resize every deformable rpe_table of state_dict to the model's shape (bicubic)."""
    own = model.state_dict()
    out = dict(state_dict)
    for key, value in state_dict.items():
        if key.endswith("rpe_table") and key in own and own[key].shape != value.shape:
            out[key] = F.interpolate(value.unsqueeze(0), size=own[key].shape[-2:],
                                     mode="bicubic", align_corners=True).squeeze(0)
    return out


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())
