"""DAT and DAT++ in plain PyTorch, with the official module and parameter names.

The classes follow the structure of the reference implementation (patch_proj, stages with
layer_norms / attns / mlps / local_perception_units, down_projs, cls_norm, cls_head) so that
ONNX initializer names match what users export from the official code. Neighbourhood attention
is written as masked full attention with a gathered relative position bias, which is exact for
the clamped-window definition and exports without NATTEN.

Only torch 1.13 features that export at opset 16 are used.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class LayerNormProxy(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor."""

    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = self.norm(x)
        return x.permute(0, 3, 1, 2)


class DAttentionBaseline(nn.Module):
    """Deformable multi-head attention.

    convention "dat_pp": reference points divided by Hk - 1, raw offsets, positions clamped
    to [-1, 1]. convention "dat": reference points divided by Hk, offsets bounded by
    tanh(o) * factor / Hk, no clamp.
    """

    def __init__(self, q_size, n_heads, n_head_channels, n_groups, stride, ksize,
                 convention="dat_pp", offset_range_factor=2.0, q_grid="pixel"):
        super().__init__()
        if q_grid not in ("pixel", "centre"):
            raise ValueError(f"q_grid {q_grid!r}: expected 'pixel' (DAT++) or 'centre' (DAT)")
        self.q_grid = q_grid
        self.n_head_channels = n_head_channels
        self.scale = n_head_channels ** -0.5
        self.n_heads = n_heads
        self.q_h, self.q_w = q_size
        self.nc = n_head_channels * n_heads
        self.n_groups = n_groups
        self.n_group_channels = self.nc // self.n_groups
        self.n_group_heads = self.n_heads // self.n_groups
        self.convention = convention
        self.offset_range_factor = offset_range_factor
        self.ksize = ksize
        self.stride = stride

        self.conv_offset = nn.Sequential(
            nn.Conv2d(self.n_group_channels, self.n_group_channels, ksize, stride, ksize // 2,
                      groups=self.n_group_channels),
            LayerNormProxy(self.n_group_channels),
            nn.GELU(),
            nn.Conv2d(self.n_group_channels, 2, 1, 1, 0, bias=False),
        )
        self.proj_q = nn.Conv2d(self.nc, self.nc, 1, 1, 0)
        self.proj_k = nn.Conv2d(self.nc, self.nc, 1, 1, 0)
        self.proj_v = nn.Conv2d(self.nc, self.nc, 1, 1, 0)
        self.proj_out = nn.Conv2d(self.nc, self.nc, 1, 1, 0)
        self.rpe_table = nn.Parameter(torch.zeros(self.n_heads, self.q_h * 2 - 1, self.q_w * 2 - 1))
        nn.init.trunc_normal_(self.rpe_table, std=0.01)

    def _get_ref_points(self, h_key, w_key, batch, dtype, device):
        ref_y = torch.linspace(0.5, h_key - 0.5, h_key, dtype=dtype, device=device)
        ref_x = torch.linspace(0.5, w_key - 0.5, w_key, dtype=dtype, device=device)
        if self.convention == "dat_pp":
            ref_y = ref_y / (h_key - 1.0) * 2.0 - 1.0
            ref_x = ref_x / (w_key - 1.0) * 2.0 - 1.0
        else:
            ref_y = ref_y / h_key * 2.0 - 1.0
            ref_x = ref_x / w_key * 2.0 - 1.0
        ref_y, ref_x = torch.meshgrid(ref_y, ref_x, indexing="ij")
        ref = torch.stack((ref_y, ref_x), -1)
        return ref[None, ...].expand(batch * self.n_groups, -1, -1, -1)

    def _get_q_grid(self, h, w, batch, dtype, device):
        ref_y = torch.arange(0, h, dtype=dtype, device=device) / (h - 1.0) * 2.0 - 1.0
        ref_x = torch.arange(0, w, dtype=dtype, device=device) / (w - 1.0) * 2.0 - 1.0
        ref_y, ref_x = torch.meshgrid(ref_y, ref_x, indexing="ij")
        ref = torch.stack((ref_y, ref_x), -1)
        return ref[None, ...].expand(batch * self.n_groups, -1, -1, -1)

    def forward(self, x):
        batch, channels, h, w = x.size()
        dtype, device = x.dtype, x.device

        q = self.proj_q(x)
        q_off = q.reshape(batch * self.n_groups, self.n_group_channels, h, w)
        offset = self.conv_offset(q_off)
        h_key, w_key = offset.size(2), offset.size(3)
        n_sample = h_key * w_key

        if self.convention == "dat":
            offset_range = torch.tensor([1.0 / h_key, 1.0 / w_key], device=device).reshape(1, 2, 1, 1)
            offset = offset.tanh().mul(offset_range).mul(self.offset_range_factor)

        offset = offset.permute(0, 2, 3, 1)
        reference = self._get_ref_points(h_key, w_key, batch, dtype, device)
        if self.convention == "dat":
            pos = offset + reference
        else:
            pos = (offset + reference).clamp(-1.0, 1.0)

        x_sampled = F.grid_sample(
            input=x.reshape(batch * self.n_groups, self.n_group_channels, h, w),
            grid=pos[..., (1, 0)], mode="bilinear", align_corners=True)
        x_sampled = x_sampled.reshape(batch, channels, 1, n_sample)

        q = q.reshape(batch * self.n_heads, self.n_head_channels, h * w)
        k = self.proj_k(x_sampled).reshape(batch * self.n_heads, self.n_head_channels, n_sample)
        v = self.proj_v(x_sampled).reshape(batch * self.n_heads, self.n_head_channels, n_sample)

        attn = torch.einsum("b c m, b c n -> b m n", q, k)
        attn = attn.mul(self.scale)

        rpe_bias = self.rpe_table[None, ...].expand(batch, -1, -1, -1)
        if self.q_grid == "centre":
            # DAT places the queries at pixel centres normalised by H and W, like its
            # reference points; DAT++ at pixel corners normalised by H - 1 and W - 1.
            q_grid = self._get_ref_points(h, w, batch, dtype, device)
        else:
            q_grid = self._get_q_grid(h, w, batch, dtype, device)
        displacement = (q_grid.reshape(batch * self.n_groups, h * w, 2).unsqueeze(2)
                        - pos.reshape(batch * self.n_groups, n_sample, 2).unsqueeze(1)).mul(0.5)
        attn_bias = F.grid_sample(
            input=rpe_bias.reshape(batch * self.n_groups, self.n_group_heads,
                                   2 * self.q_h - 1, 2 * self.q_w - 1),
            grid=displacement[..., (1, 0)], mode="bilinear", align_corners=True)
        attn_bias = attn_bias.reshape(batch * self.n_heads, h * w, n_sample)
        attn = attn + attn_bias

        attn = F.softmax(attn, dim=2)
        out = torch.einsum("b m n, b c n -> b c m", attn, v)
        out = out.reshape(batch, channels, h, w)
        return self.proj_out(out)


def neighbourhood_bias_index(h, w, kernel):
    """Index into the flattened (2k-1)^2 bias table per (query, key) and a validity mask.

    The window of a query is k x k, shifted to stay inside the map near borders, as in
    neighbourhood attention.
    """
    half = kernel // 2
    rows = 2 * kernel - 1
    index = torch.zeros(h * w, h * w, dtype=torch.long)
    mask = torch.zeros(h * w, h * w, dtype=torch.bool)
    for qy in range(h):
        y0 = min(max(qy - half, 0), h - kernel)
        for qx in range(w):
            x0 = min(max(qx - half, 0), w - kernel)
            for ky in range(y0, y0 + kernel):
                for kx in range(x0, x0 + kernel):
                    dy = ky - qy + kernel - 1
                    dx = kx - qx + kernel - 1
                    index[qy * w + qx, ky * w + kx] = dy * rows + dx
                    mask[qy * w + qx, ky * w + kx] = True
    return index, mask


class NeighborhoodAttention2D(nn.Module):
    """Neighbourhood attention on NHWC input, as masked attention over the whole map."""

    def __init__(self, dim, kernel_size, num_heads, map_size):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.kernel_size = kernel_size
        self.qkv = nn.Linear(dim, dim * 3)
        self.rpb = nn.Parameter(torch.zeros(num_heads, 2 * kernel_size - 1, 2 * kernel_size - 1))
        nn.init.trunc_normal_(self.rpb, std=0.02)
        self.proj = nn.Linear(dim, dim)
        index, mask = neighbourhood_bias_index(map_size[0], map_size[1], kernel_size)
        self.register_buffer("bias_index", index, persistent=False)
        self.register_buffer("bias_mask", mask, persistent=False)

    def forward(self, x):
        batch, h, w, dim = x.shape
        qkv = self.qkv(x).reshape(batch, h * w, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.rpb.reshape(self.num_heads, -1)[:, self.bias_index]
        # -100 (as Swin's shifted-window masks use) gives outside keys a weight below e^-90:
        # zero in float32, and small enough a range for int16 fixed-point logits.
        bias = bias.masked_fill(~self.bias_mask, -100.0)
        attn = attn + bias.unsqueeze(0)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).permute(0, 2, 1, 3).reshape(batch, h, w, dim)
        return self.proj(x)


class NeighborhoodAttentionNCHW(nn.Module):
    def __init__(self, dim, kernel_size, num_heads, map_size):
        super().__init__()
        self.attn = NeighborhoodAttention2D(dim, kernel_size, num_heads, map_size)

    def forward(self, x):
        return self.attn(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class TransformerMLPWithConv(nn.Module):
    def __init__(self, channels, expansion):
        super().__init__()
        self.linear1 = nn.Conv2d(channels, channels * expansion, 1, 1, 0)
        self.act = nn.GELU()
        self.dwc = nn.Conv2d(channels * expansion, channels * expansion, 3, 1, 1,
                             groups=channels * expansion)
        self.linear2 = nn.Conv2d(channels * expansion, channels, 1, 1, 0)

    def forward(self, x):
        x = self.linear1(x)
        x = x + self.dwc(x)
        x = self.act(x)
        return self.linear2(x)


class TransformerStage(nn.Module):
    def __init__(self, map_size, dim_in, dim_embed, depth, stage_spec, n_groups, heads,
                 stride, ksize, na_kernel, expansion, convention):
        super().__init__()
        head_channels = dim_embed // heads
        self.depths = depth
        self.proj = nn.Conv2d(dim_in, dim_embed, 1, 1, 0) if dim_in != dim_embed else nn.Identity()
        self.layer_norms = nn.ModuleList([LayerNormProxy(dim_embed) for _ in range(2 * depth)])
        self.mlps = nn.ModuleList([TransformerMLPWithConv(dim_embed, expansion) for _ in range(depth)])
        self.attns = nn.ModuleList()
        for i in range(depth):
            if stage_spec[i] == "D":
                self.attns.append(DAttentionBaseline(map_size, heads, head_channels, n_groups,
                                                     stride, ksize, convention))
            elif stage_spec[i] == "N":
                self.attns.append(NeighborhoodAttentionNCHW(dim_embed, na_kernel, heads, map_size))
            else:
                raise ValueError(f"unknown block type {stage_spec[i]!r}: expected D or N")
        self.local_perception_units = nn.ModuleList(
            [nn.Conv2d(dim_embed, dim_embed, 3, 1, 1, groups=dim_embed) for _ in range(depth)])

    def forward(self, x):
        x = self.proj(x)
        for d in range(self.depths):
            x = x + self.local_perception_units[d](x)
            x = x + self.attns[d](self.layer_norms[2 * d](x))
            x = x + self.mlps[d](self.layer_norms[2 * d + 1](x))
        return x


class DAT(nn.Module):
    """DAT++ backbone and classifier (convention "dat_pp"), or DAT deformable stages."""

    def __init__(self, img_size=224, in_chans=3, num_classes=1000, dim_stem=64,
                 dims=(64, 128, 256, 512), depths=(2, 4, 18, 2), heads=(2, 4, 8, 16),
                 stage_spec=(("N", "D"), ("N", "D", "N", "D"), ("N", "D") * 9, ("D", "D")),
                 groups=(1, 2, 4, 8), strides=(8, 4, 2, 1), ksizes=(9, 7, 5, 3),
                 na_kernels=(7, 7, 7, 7), stem_strides=(2, 2), expansion=4,
                 convention="dat_pp"):
        super().__init__()
        self.patch_proj = nn.Sequential(
            nn.Conv2d(in_chans, dim_stem // 2, 3, stem_strides[0], 1),
            LayerNormProxy(dim_stem // 2),
            nn.GELU(),
            nn.Conv2d(dim_stem // 2, dim_stem, 3, stem_strides[1], 1),
            LayerNormProxy(dim_stem),
        )
        size = img_size // (stem_strides[0] * stem_strides[1])
        self.stages = nn.ModuleList()
        self.down_projs = nn.ModuleList()
        dim_in = dim_stem
        for i in range(4):
            self.stages.append(TransformerStage(
                (size, size), dim_in, dims[i], depths[i], stage_spec[i], groups[i], heads[i],
                strides[i], ksizes[i], na_kernels[i], expansion, convention))
            if i < 3:
                self.down_projs.append(nn.Sequential(
                    nn.Conv2d(dims[i], dims[i + 1], 3, 2, 1, bias=False),
                    LayerNormProxy(dims[i + 1])))
                size //= 2
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
        x = torch.flatten(x, 1)
        return self.cls_head(x)


def dat_pp_nano(img_size=32, convention="dat_pp"):
    """Build DAT++ for single-channel 32x32 or 64x64 inputs and 10 classes.

    Maps are 16x16, 8x8, 4x4 and 2x2 at 32x32 input. Every stage has a deformable block.
    Offset strides keep each offset grid at least 2x2.
    """
    stem_strides = (1, 2) if img_size == 32 else (2, 2)
    return DAT(img_size=img_size, in_chans=1, num_classes=10, dim_stem=32,
               dims=(32, 64, 96, 128), depths=(2, 2, 2, 2), heads=(2, 4, 4, 8),
               stage_spec=(("N", "D"), ("N", "D"), ("N", "D"), ("D", "D")),
               groups=(1, 2, 2, 4), strides=(4, 2, 1, 1), ksizes=(5, 5, 3, 3),
               na_kernels=(5, 5, 3, 1), stem_strides=stem_strides, expansion=2,
               convention=convention)


def dat_pp_fixture(convention="dat_pp"):
    """Build the tiny random-weight variant the converter and runtime tests use (16x16 input)."""
    return DAT(img_size=16, in_chans=1, num_classes=4, dim_stem=8,
               dims=(8, 16, 16, 16), depths=(2, 1, 1, 1), heads=(2, 2, 2, 2),
               stage_spec=(("N", "D"), ("D",), ("D",), ("D",)),
               groups=(1, 2, 2, 2), strides=(2, 1, 1, 1), ksizes=(3, 3, 3, 3),
               na_kernels=(3, 3, 1, 1), stem_strides=(1, 1), expansion=2,
               convention=convention)


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":
    for name, model in (("dat_pp_nano", dat_pp_nano()), ("fixture", dat_pp_fixture())):
        out = model(torch.randn(2, 1, 32 if name == "dat_pp_nano" else 16,
                                32 if name == "dat_pp_nano" else 16))
        print(name, count_parameters(model), tuple(out.shape), math.isfinite(out.sum().item()))
