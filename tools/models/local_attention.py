"""Local attention of DAT and DAT++ in plain PyTorch, exportable to ONNX at any map size.

- LocalAttention ("L" blocks of DAT): Swin window attention over ws x ws windows with the
  learned relative position bias table. A map that the window does not divide is padded at the
  bottom and right with zeros and cropped afterwards, as Swin does for detection; the padded
  tokens take part as keys.
- ShiftWindowAttention ("S" blocks of DAT): the same after rolling the map by the shift, with
  the Swin mask (-100 between tokens of different regions), computed on the padded map.
- NeighborhoodAttention2D ("N" blocks of DAT++): every query attends to the kernel x kernel
  keys around it; near the border the window shifts inward, so every query has kernel^2
  neighbours (the definition of NATTEN). Keys and values are gathered through a neighbour
  index, and the bias is read from the (2k-1) x (2k-1) table through a second index, so memory
  grows with H * W * kernel^2 rather than (H * W)^2.

Shapes are read from the input as the reference code does, so exports carry the same shape
arithmetic. Shift masks and neighbour indices are built once per map size as constants, unless
TRACE_INDICES is set (exports with dynamic spatial axes set it): then they are computed from the
input shape with tensor operations, and the export stays correct at other sizes.

All three take and return NCHW tensors. Parameter names follow the reference implementation:
proj_qkv, proj_out, relative_position_bias_table (window attention); qkv, rpb, proj
(neighbourhood attention).
"""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# Build masks and neighbour indices from traced shapes (True) or as constants (False).
TRACE_INDICES = False


def _dim(x, axis):
    """x.shape[axis]: a Python int in eager mode, a traced scalar while exporting."""
    return x.shape[axis]


class LocalAttention(nn.Module):
    """Window attention on an NCHW map (Swin, without shift)."""

    def __init__(self, dim, heads, window_size):
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"{dim} channels do not split into {heads} heads")
        self.heads = heads
        self.window_size = window_size
        self.scale = (dim // heads) ** -0.5
        self.proj_qkv = nn.Linear(dim, 3 * dim)
        self.proj_out = nn.Linear(dim, dim)
        ws = window_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.01)
        coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij"))
        coords = coords.flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * ws - 1) + rel[..., 1])

    def _windows(self, x):
        """(B, C, Hp, Wp) -> (B * windows, ws * ws, C)."""
        ws = self.window_size
        b, c, hp, wp = _dim(x, 0), _dim(x, 1), _dim(x, 2), _dim(x, 3)
        x = x.reshape(b, c, hp // ws, ws, wp // ws, ws).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(-1, ws * ws, c)

    def _unwindows(self, x, b, c, hp, wp):
        ws = self.window_size
        x = x.reshape(b, hp // ws, wp // ws, ws, ws, c).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, c, hp, wp)

    def attend(self, x, mask=None):
        """Window attention of a padded map (sides divisible by the window)."""
        b, c, hp, wp = _dim(x, 0), _dim(x, 1), _dim(x, 2), _dim(x, 3)
        ws2 = self.window_size ** 2
        tokens = self._windows(x)
        qkv = self.proj_qkv(tokens)
        q, k, v = torch.chunk(qkv, 3, dim=2)
        q = q * self.scale
        q, k, v = [t.reshape(-1, ws2, self.heads, c // self.heads).permute(0, 2, 1, 3)
                   for t in (q, k, v)]
        attn = torch.matmul(q, k.transpose(-2, -1))
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        attn = attn + bias.reshape(ws2, ws2, self.heads).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            windows = mask.shape[0]
            attn = attn.reshape(-1, windows, self.heads, ws2, ws2) + mask.reshape(1, windows, 1, ws2, ws2)
            attn = attn.reshape(-1, self.heads, ws2, ws2)
        attn = attn.softmax(dim=3)
        out = torch.matmul(attn, v).permute(0, 2, 1, 3).reshape(-1, ws2, c)
        out = self.proj_out(out)
        return self._unwindows(out, b, c, hp, wp)

    def _pad(self, x):
        ws = self.window_size
        h, w = _dim(x, 2), _dim(x, 3)
        pad_b = (ws - h % ws) % ws
        pad_r = (ws - w % ws) % ws
        # A Python test, as in Swin: while tracing it fixes the branch for the traced size.
        if not (pad_r > 0 or pad_b > 0):
            return x
        return F.pad(x, (0, pad_r, 0, pad_b))

    def forward(self, x):
        h, w = _dim(x, 2), _dim(x, 3)
        y = self.attend(self._pad(x))
        return y[:, :, :h, :w]


class ShiftWindowAttention(LocalAttention):
    """Shifted-window attention: roll by -shift, window attention with the Swin mask, roll back."""

    def __init__(self, dim, heads, window_size, shift_size):
        super().__init__(dim, heads, window_size)
        if not 0 < shift_size < window_size:
            raise ValueError(f"shift {shift_size} must lie strictly between 0 and the window "
                             f"{window_size}")
        self.shift_size = shift_size

    def shift_mask(self, hp, wp, device):
        """(windows, ws*ws, ws*ws) mask: 0 within a region, -100 across regions."""
        ws, shift = self.window_size, self.shift_size
        if not TRACE_INDICES:
            return torch.from_numpy(_shift_mask_np(int(hp), int(wp), ws, shift)).to(device)
        ys = torch.arange(hp, device=device)
        xs = torch.arange(wp, device=device)
        # Region 0, 1, 2 along each axis: before hp - ws, before hp - shift, the rest.
        ry = (ys >= hp - ws).long() + (ys >= hp - shift).long()
        rx = (xs >= wp - ws).long() + (xs >= wp - shift).long()
        label = (ry[:, None] * 3 + rx[None, :]).to(torch.float32)
        label = label.reshape(hp // ws, ws, wp // ws, ws).permute(0, 2, 1, 3).reshape(-1, ws * ws)
        diff = label.unsqueeze(1) - label.unsqueeze(2)
        return torch.where(diff != 0, torch.full_like(diff, -100.0), torch.zeros_like(diff))

    def forward(self, x):
        h, w = _dim(x, 2), _dim(x, 3)
        x = self._pad(x)
        hp, wp = _dim(x, 2), _dim(x, 3)
        shifted = torch.roll(x, shifts=(-self.shift_size, -self.shift_size), dims=(2, 3))
        y = self.attend(shifted, self.shift_mask(hp, wp, x.device))
        y = torch.roll(y, shifts=(self.shift_size, self.shift_size), dims=(2, 3))
        return y[:, :, :h, :w]


def _shift_mask_np(hp, wp, ws, shift):
    ry = (np.arange(hp) >= hp - ws).astype(np.int64) + (np.arange(hp) >= hp - shift)
    rx = (np.arange(wp) >= wp - ws).astype(np.int64) + (np.arange(wp) >= wp - shift)
    label = (ry[:, None] * 3 + rx[None, :]).astype(np.float32)
    label = label.reshape(hp // ws, ws, wp // ws, ws).transpose(0, 2, 1, 3).reshape(-1, ws * ws)
    diff = label[:, None, :] - label[:, :, None]
    return np.where(diff != 0, np.float32(-100.0), np.float32(0.0)).astype(np.float32)


def _neighbour_indices_np(h, w, kernel):
    half = kernel // 2
    start_y = np.clip(np.arange(h) - half, 0, h - kernel)
    start_x = np.clip(np.arange(w) - half, 0, w - kernel)
    rows = start_y[:, None] + np.arange(kernel)[None, :]
    cols = start_x[:, None] + np.arange(kernel)[None, :]
    keys = rows[:, None, :, None] * w + cols[None, :, None, :]
    dy = rows - np.arange(h)[:, None] + (kernel - 1)
    dx = cols - np.arange(w)[:, None] + (kernel - 1)
    bias = dy[:, None, :, None] * (2 * kernel - 1) + dx[None, :, None, :]
    n = kernel * kernel
    return (torch.from_numpy(keys.reshape(-1, n).astype(np.int64)),
            torch.from_numpy(bias.reshape(-1, n).astype(np.int64)))


def neighbour_indices(h, w, kernel, device=None):
    """Neighbour and bias indices of k x k neighbourhood attention on an h x w map.

    Returns (keys, bias), both (h * w, kernel * kernel) int64: keys[i, j] is the flat position
    of query i's j-th key, bias[i, j] the flat index into the (2k-1) x (2k-1) bias table. The
    window starts at q - k//2, clamped to [0, side - k]. h and w may be traced scalars.
    """
    if not TRACE_INDICES:
        keys, bias = _neighbour_indices_np(int(h), int(w), kernel)
        return keys.to(device), bias.to(device)
    half = kernel // 2
    ys = torch.arange(h, device=device)
    xs = torch.arange(w, device=device)
    taps = torch.arange(kernel, device=device)
    start_y = (ys - half).clamp(min=0)
    start_y = start_y - (start_y + kernel - h).clamp(min=0)
    start_x = (xs - half).clamp(min=0)
    start_x = start_x - (start_x + kernel - w).clamp(min=0)
    rows = start_y[:, None] + taps[None, :]  # (h, k)
    cols = start_x[:, None] + taps[None, :]  # (w, k)
    keys = rows[:, None, :, None] * w + cols[None, :, None, :]  # (h, w, k, k)
    dy = rows - ys[:, None] + (kernel - 1)
    dx = cols - xs[:, None] + (kernel - 1)
    bias = dy[:, None, :, None] * (2 * kernel - 1) + dx[None, :, None, :]
    n = kernel * kernel
    return keys.reshape(-1, n), bias.reshape(-1, n)


class NeighborhoodAttention2D(nn.Module):
    """k x k neighbourhood attention on an NCHW map, by gathering each query's neighbours."""

    def __init__(self, dim, kernel_size, num_heads):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"{dim} channels do not split into {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.kernel_size = kernel_size
        self.rpb = nn.Parameter(torch.zeros(num_heads, 2 * kernel_size - 1, 2 * kernel_size - 1))
        nn.init.trunc_normal_(self.rpb, std=0.02)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def attend_nhwc(self, x):
        batch, h, w, dim = _dim(x, 0), _dim(x, 1), _dim(x, 2), _dim(x, 3)
        if isinstance(h, int) and (h < self.kernel_size or w < self.kernel_size):
            raise ValueError(f"neighbourhood attention with kernel {self.kernel_size} needs a "
                             f"map of at least {self.kernel_size}x{self.kernel_size}, got {h}x{w}")
        n = self.kernel_size * self.kernel_size
        qkv = self.qkv(x).reshape(batch, -1, 3, self.num_heads, self.head_dim)
        qkv = qkv.permute(2, 0, 3, 1, 4)  # 3, B, heads, HW, d
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        keys, bias_index = neighbour_indices(h, w, self.kernel_size, x.device)
        flat = keys.reshape(-1)
        k_n = k[:, :, flat].reshape(batch, self.num_heads, -1, n, self.head_dim)
        v_n = v[:, :, flat].reshape(batch, self.num_heads, -1, n, self.head_dim)
        logits = torch.matmul(k_n, q.unsqueeze(-1)).squeeze(-1)  # B, heads, HW, n
        bias = self.rpb.reshape(self.num_heads, -1)[:, bias_index.reshape(-1)]
        logits = logits + bias.reshape(1, self.num_heads, -1, n)
        attn = logits.softmax(dim=-1)
        out = torch.matmul(attn.unsqueeze(-2), v_n).squeeze(-2)  # B, heads, HW, d
        out = out.permute(0, 2, 1, 3).reshape(batch, h, w, dim)
        return self.proj(out)

    def forward(self, x):
        return self.attend_nhwc(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
