"""Checks of the Python reference models: local attention against direct formulations,
parameter counts, export round trips.

Usage: /usr/bin/python3 tools/test_models.py [-v]   (about a minute on 2 cores)
"""

import os
import sys
import tempfile
import unittest

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import local_attention  # noqa: E402
from models.dat import DAttentionBaseline  # noqa: E402
from models.dat import NeighborhoodAttention2D as MaskedNeighborhoodAttention  # noqa: E402
from models.dat import dat_pp_nano  # noqa: E402
from models.dat_family import CONFIGS, TARGET_PARAMS, build, count_parameters  # noqa: E402
from models.local_attention import (LocalAttention, NeighborhoodAttention2D,  # noqa: E402
                                    ShiftWindowAttention)


def window_attention_direct(module, x, shift):
    """Swin window attention computed window by window with explicit coordinates."""
    ws = module.window_size
    heads = module.heads
    batch, channels, h, w = x.shape
    hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
    padded = torch.zeros(batch, channels, hp, wp)
    padded[:, :, :h, :w] = x
    if shift:
        padded = torch.roll(padded, shifts=(-shift, -shift), dims=(2, 3))
    out = torch.zeros_like(padded)
    table = module.relative_position_bias_table
    head_dim = channels // heads

    def region(pos, side):
        if not shift or pos < side - ws:
            return 0
        return 1 if pos < side - shift else 2

    for wy in range(0, hp, ws):
        for wx in range(0, wp, ws):
            coords = [(wy + i, wx + j) for i in range(ws) for j in range(ws)]
            tokens = torch.stack([padded[:, :, y, xx] for y, xx in coords], 1)  # B, n, C
            qkv = module.proj_qkv(tokens)
            q, k, v = qkv[..., :channels], qkv[..., channels:2 * channels], qkv[..., 2 * channels:]
            n = len(coords)
            bias = torch.zeros(heads, n, n)
            for a, (ya, xa) in enumerate(coords):
                for b, (yb, xb) in enumerate(coords):
                    idx = (ya - yb + ws - 1) * (2 * ws - 1) + (xa - xb + ws - 1)
                    bias[:, a, b] = table[idx]
                    if (region(ya, hp), region(xa, wp)) != (region(yb, hp), region(xb, wp)):
                        bias[:, a, b] -= 100.0
            outs = []
            for hd in range(heads):
                sl = slice(hd * head_dim, (hd + 1) * head_dim)
                logits = q[..., sl] @ k[..., sl].transpose(1, 2) * module.scale + bias[hd]
                outs.append(logits.softmax(-1) @ v[..., sl])
            y = module.proj_out(torch.cat(outs, -1))
            for a, (ya, xa) in enumerate(coords):
                out[:, :, ya, xa] = y[:, a]
    if shift:
        out = torch.roll(out, shifts=(shift, shift), dims=(2, 3))
    return out[:, :, :h, :w]


class LocalAttentionTest(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)

    def test_window_matches_direct(self):
        for h, w in ((8, 8), (7, 10), (5, 3)):
            module = LocalAttention(8, 2, 4).eval()
            with torch.no_grad():
                module.relative_position_bias_table.normal_()
                x = torch.randn(2, 8, h, w)
                diff = (module(x) - window_attention_direct(module, x, 0)).abs().max().item()
            self.assertLess(diff, 1e-5, f"{h}x{w}")

    def test_shifted_window_matches_direct(self):
        for h, w, ws, shift in ((8, 8, 4, 2), (7, 10, 4, 2), (14, 9, 7, 4)):
            module = ShiftWindowAttention(8, 2, ws, shift).eval()
            with torch.no_grad():
                module.relative_position_bias_table.normal_()
                x = torch.randn(1, 8, h, w)
                diff = (module(x) - window_attention_direct(module, x, shift)).abs().max().item()
            self.assertLess(diff, 1e-5, f"{h}x{w} window {ws} shift {shift}")

    def test_shift_mask_traced_equals_constant(self):
        module = ShiftWindowAttention(8, 2, 7, 4)
        constant = module.shift_mask(14, 21, "cpu")
        local_attention.TRACE_INDICES = True
        try:
            traced = module.shift_mask(14, 21, "cpu")
        finally:
            local_attention.TRACE_INDICES = False
        self.assertEqual(tuple(constant.shape), (6, 49, 49))
        self.assertTrue(torch.equal(constant, traced))

    def test_neighbourhood_matches_masked(self):
        for h, w, k in ((9, 11, 7), (7, 7, 7), (16, 16, 5), (8, 13, 3), (4, 4, 3), (2, 2, 1)):
            masked = MaskedNeighborhoodAttention(16, k, 2, (h, w)).eval()
            gathered = NeighborhoodAttention2D(16, k, 2).eval()
            gathered.load_state_dict(masked.state_dict())
            x = torch.randn(2, h, w, 16)
            with torch.no_grad():
                diff = (masked(x) - gathered.attend_nhwc(x)).abs().max().item()
            self.assertLess(diff, 1e-6, f"{h}x{w} kernel {k}")

    def test_neighbour_indices_traced_equal_constant(self):
        for h, w, k in ((9, 11, 7), (7, 7, 7), (8, 13, 3)):
            keys, bias = local_attention.neighbour_indices(h, w, k)
            local_attention.TRACE_INDICES = True
            try:
                keys_t, bias_t = local_attention.neighbour_indices(h, w, k)
            finally:
                local_attention.TRACE_INDICES = False
            self.assertTrue(torch.equal(keys, keys_t))
            self.assertTrue(torch.equal(bias, bias_t))

    def test_neighbour_window_stays_inside(self):
        keys, bias = local_attention.neighbour_indices(9, 11, 7)
        self.assertEqual(tuple(keys.shape), (99, 49))
        corner = sorted(keys[0].tolist())
        self.assertEqual(corner, sorted(y * 11 + x for y in range(7) for x in range(7)))
        self.assertEqual(len(set(keys[50].tolist())), 49)
        self.assertGreaterEqual(int(bias.min()), 0)
        self.assertLess(int(bias.max()), 13 * 13)

    def test_neighbourhood_rejects_small_map(self):
        module = NeighborhoodAttention2D(8, 7, 2)
        with self.assertRaises(ValueError):
            module(torch.randn(1, 8, 5, 9))


class ModelTest(unittest.TestCase):
    def test_parameter_counts_within_one_percent(self):
        for name, target in TARGET_PARAMS.items():
            count = count_parameters(build(name))
            self.assertLess(abs(count - target) / target, 0.01, f"{name}: {count} vs {target}")

    def test_reference_parameter_names(self):
        keys = set(build("dat_t").state_dict())
        for key in ("patch_proj.0.weight", "stages.0.attns.0.proj_qkv.weight",
                    "stages.0.attns.1.relative_position_bias_table",
                    "stages.2.attns.1.proj_q.weight", "stages.2.attns.1.conv_offset.0.weight",
                    "stages.2.attns.1.conv_offset.3.weight", "stages.2.attns.1.rpe_table",
                    "stages.0.mlps.0.chunk.linear1.weight", "down_projs.0.0.weight",
                    "cls_norm.norm.weight", "cls_head.weight"):
            self.assertIn(key, keys)
        keys = set(build("dat_pp_t").state_dict())
        for key in ("stages.0.attns.0.qkv.weight", "stages.0.attns.0.rpb",
                    "stages.0.attns.0.proj.weight", "stages.0.attns.1.proj_out.weight",
                    "stages.3.attns.1.conv_offset.1.norm.weight",
                    "stages.1.local_perception_units.3.weight", "stages.0.mlps.1.linear1.0.weight",
                    "stages.0.mlps.1.dwc.weight"):
            self.assertIn(key, keys)

    def test_deformable_grids(self):
        pp = build("dat_pp_t")
        for i, (stride, ksize) in enumerate(((8, 9), (4, 7), (2, 5), (1, 3))):
            block = pp.stages[i].attns[1]
            self.assertEqual((block.stride, block.ksize, block.convention), (stride, ksize, "dat_pp"))
        dat = build("dat_t")
        block = dat.stages[2].attns[1]
        self.assertEqual((block.stride, block.convention, block.q_grid), (1, "dat", "centre"))
        self.assertEqual(block.offset_range_factor, 2.0)

    def test_dat_reference_points_divide_by_hk(self):
        block = DAttentionBaseline((4, 4), 2, 4, 1, 1, 3, "dat", q_grid="centre")
        ref = block._get_ref_points(4, 4, 1, torch.float32, "cpu")
        self.assertAlmostEqual(float(ref[0, 0, 0, 0]), 0.5 / 4 * 2 - 1, places=6)
        block = DAttentionBaseline((4, 4), 2, 4, 1, 1, 3, "dat_pp")
        ref = block._get_ref_points(4, 4, 1, torch.float32, "cpu")
        self.assertAlmostEqual(float(ref[0, 0, 0, 0]), 0.5 / 3 * 2 - 1, places=6)

    def test_odd_sizes_run(self):
        for name, size in (("dat_mini", (64, 96)), ("dat_mini", (65, 70)),
                           ("dat_pp_mini", (64, 96)), ("dat_pp_mini", (67, 64))):
            model = build(name, size, 10).eval()
            with torch.no_grad():
                y = model(torch.randn(1, 3, *size))
            self.assertEqual(tuple(y.shape), (1, 10))
            self.assertTrue(torch.isfinite(y).all())

    def test_nano_keys_unchanged(self):
        path = os.path.join(os.path.dirname(__file__), "..", "models", "dat_pp_nano.pt")
        state = torch.load(path)
        model = dat_pp_nano(32)
        self.assertEqual(set(model.state_dict()), set(state))


class ExportTest(unittest.TestCase):
    def test_mini_exports_round_trip(self):
        import onnx
        import export_models
        with tempfile.TemporaryDirectory() as out:
            for name, dynamic in (("dat_mini", "none"), ("dat_pp_mini", "spatial")):
                meta = export_models.export(name, (64, 96), 17, dynamic, name == "dat_mini",
                                            num_classes=10, out_dir=out, quiet=True)
                graph = onnx.load(os.path.join(out, meta["name"] + ".onnx"))
                onnx.checker.check_model(graph)
                self.assertEqual(meta["ops"].get("GridSample", 0) % 2, 0)
                self.assertGreater(meta["ops"].get("GridSample", 0), 0)
                expected = np.fromfile(os.path.join(out, meta["name"] + ".output.f32"), "<f4")
                self.assertEqual(expected.size, 10)


if __name__ == "__main__":
    unittest.main()
