/*
 * Layout of dsr_node.qwords: the integer parameters of each fixed-point kernel.
 *
 * The quantizer (quant/dsq_quantize.c) writes these arrays and the fixed-point kernels
 * (runtime/dsr_fixed*.c) read them. dsr_fixed_check_node validates every length and range
 * below at plan time, so the kernels do not check them again. This header is constants only:
 * the runtime includes it without linking the quantizer.
 *
 * Conventions used by every layout:
 * - Word 0 is the tag DSQ_TAG(op): a node whose qwords start with another tag is rejected.
 * - A "requant pair" is two words (multiplier, shift) that scale an accumulator by the real
 *   factor multiplier * 2^(shift - 31). multiplier is 0 (factor 0) or has a magnitude in
 *   [2^30, 2^31 - 1] and may be negative; shift is in [DSQ_SHIFT_MIN, DSQ_SHIFT_MAX].
 *   32-bit accumulators use dsr_fixed_requant32, 64-bit ones dsr_fixed_requant64, which
 *   also requires shift <= DSQ_SHIFT_MAX_WIDE (see docs/fixed-point.md for both).
 * - Tensor scales and zero points come from the tensors' qparams, never from qwords.
 *
 * Per-op layouts (n = word count):
 *
 * CONV2D     [tag, out_channels, pair x out_channels]                 n = 2 + 2 * Cout
 *            Real factor of channel c: s_x * s_w[c] / s_y. Bias (optional) is int32 data_q
 *            at scale s_x * s_w[c].
 * MATMUL     [tag, DSQ_MATMUL_ACTIVATIONS, pair]                        n = 4
 *            a x b, both activations: factor s_a * s_b / s_y.
 *            [tag, DSQ_MATMUL_CONSTANT_B, N, pair x N]                  n = 3 + 2 * N
 *            b constant int8, per column (last axis) scale: factor s_a * s_b[j] / s_y.
 *            [tag, DSQ_MATMUL_CONSTANT_A, M, pair x M]                  n = 3 + 2 * M
 *            a constant int8, per row (axis rank - 2) scale: factor s_a[i] * s_b / s_y.
 * GEMM       [tag, N, pair x N]                                         n = 2 + 2 * N
 *            N is the size of the last output axis. With trans_a 0, a may have any rank >= 2
 *            and is read as rows of K values.
 *            b constant int8 per output column; alpha folded into the factor
 *            alpha * s_a * s_b[j] / s_y (negative alpha gives a negative multiplier) and
 *            beta * C into the int32 bias data_q of input 2 (N values, scale alpha*s_a*s_b[j]).
 * ADD, SUB   [tag, left_shift, pair_a, pair_b, pair_out]                n = 8
 *            TFLite-style rescale: each operand (q - z) << left_shift is scaled by
 *            s / (2 * max(s_a, s_b)), the two are added (SUB: subtracted), and the sum is
 *            scaled by 2 * max(s_a, s_b) / (2^left_shift * s_y). left_shift is 20 when both
 *            operands are 8-bit, else 15.
 * MUL        [tag, pair]                                                n = 3
 *            (q_a - z_a) * (q_b - z_b) scaled by s_a * s_b / s_y.
 * DIV        [tag, DSQ_DIV_ACTIVATION, pair]                            n = 4
 *            t = round(((q_a - z_a) << 16) / (q_b - z_b)) in 64 bits, then requant64 by
 *            s_a / (s_b * s_y * 2^16). A zero divisor gives the saturated value with the sign
 *            of the numerator (0 for 0 / 0).
 *            [tag, DSQ_DIV_CONSTANT, count, pair x count]               n = 3 + 2 * count
 *            divisor constant with count elements (broadcast like b): (q_a - z_a) scaled by
 *            s_a / (b[i] * s_y) for divisor element i.
 * LAYER_NORM [tag, LN block(D)]                                         n = 1 + 4 + 3 * D
 * GELU       [tag, LUT block]                                           n = 1 + 1 + 256 or 257
 * SOFTMAX    [tag, pair_exp, out_frac_bits]                             n = 4
 *            pair_exp scales (q - max q) to log2 units with DSR_FIXED_EXP_FRAC_BITS
 *            fractional bits: factor s_x * log2(e) * 2^DSR_FIXED_EXP_FRAC_BITS.
 *            out_frac_bits is 8 (int8 output, scale 2^-8, zero point -128) or 15 (int16
 *            output, scale 2^-15, zero point 0).
 * TRANSPOSE, RESHAPE [tag]                                              n = 1
 *            input and output share qparams (checked).
 * GATHER     [tag, axis, index_count, index x index_count]             n = 3 + count
 *            indices already made non-negative and checked against the axis size.
 * PAD        [tag, pad value]                                        n = 2
 *            input and output share qparams; the value is round(v / s) + z saturated to
 *            the type, so a zero pad is the zero point.
 * CONCAT     [tag, axis, (copy, multiplier, shift) x input_count]    n = 2 + 3 * inputs
 *            copy 1: the input has the output's qparams and is copied (pair 0, 0).
 *            copy 0: y = z_y + dsr_fixed_requant32(q - z_x, pair of s_x / s_y), saturated.
 * GLOBAL_AVG_POOL [tag, pair]                                           n = 3
 *            sum over H*W of (q - z) scaled by s_x / (H * W * s_y).
 * DEFORM_ATTN [tag, DSQ_DA_SECTION_COUNT, offset x DSQ_DA_SECTION_COUNT, sections...]
 *            Each offset is the word index of a section; sections are contiguous and in
 *            enum order, and the last ends at qword_count. See dsq_da_section.
 *
 * Blocks shared by several layouts:
 *
 * LN block   [D, pre_shift, eps_lo, eps_hi, (pair_c, beta_c) x D]
 *            D = elements normalized (the row length), at most DSQ_LN_MAX_ELEMENTS.
 *            pre_shift: u = (q - z) << pre_shift (8 for 8-bit input, 0 for 16-bit).
 *            eps = eps_hi * 2^32 + (uint32)eps_lo: epsilon in u units squared, 0..2^34.
 *            pair_c scales the Q12 normalized value by gamma_c * 2^8 / (2^12 * s_y), giving
 *            an output with 8 extra fractional bits; beta_c = round(beta_c * 2^8 / s_y).
 * LUT block  [kind, entries...]
 *            DSQ_LUT_DIRECT (8-bit input): 256 entries, entry q + 128 is the final output
 *            value (zero point included, saturated).
 *            DSQ_LUT_INTERP (16-bit input): 257 entries, entry k = round(f(s_x * (256 k -
 *            32768)) / s_y * 2^8); outputs interpolate linearly on the low 8 bits of
 *            q + 32768 and keep 8 fractional bits until the final rounding.
 */
#ifndef DSQ_PARAMS_H
#define DSQ_PARAMS_H

#include <stdint.h>

#define DSQ_TAG_BASE 0x51570000 /* "QW" in the two high bytes */
#define DSQ_TAG(op) ((int32_t)(DSQ_TAG_BASE | (int32_t)(op)))

#define DSQ_SHIFT_MIN (-31)
#define DSQ_SHIFT_MAX 30
#define DSQ_SHIFT_MAX_WIDE 14
#define DSQ_MULTIPLIER_MIN_MAGNITUDE (1 << 30)

#define DSQ_MATMUL_ACTIVATIONS 0
#define DSQ_MATMUL_CONSTANT_B 1
#define DSQ_MATMUL_CONSTANT_A 2
#define DSQ_DIV_ACTIVATION 0
#define DSQ_DIV_CONSTANT 1

#define DSQ_LUT_DIRECT 0
#define DSQ_LUT_INTERP 1
#define DSQ_LUT_DIRECT_ENTRIES 256
#define DSQ_LUT_INTERP_ENTRIES 257

#define DSQ_LN_HEADER_WORDS 4
#define DSQ_LN_MAX_ELEMENTS 16384 /* keeps the variance sum under 2^48 */
#define DSQ_LN_EPS_MAX (INT64_C(1) << 34)
#define DSQ_LN_NORM_FRAC_BITS 12  /* normalized values are Q12 */
#define DSQ_LN_OUT_EXTRA_BITS 8

#define DSQ_ADD_SHIFT_NARROW 20
#define DSQ_ADD_SHIFT_WIDE 15

/* Sections of the DEFORM_ATTN qwords, in storage order. Sizes: C channels, Cg group
 * channels. */
typedef enum dsq_da_section {
  DSQ_DA_PROJ_Q = 0,   /* pair x C: x -> stage Q */
  DSQ_DA_OFFSET_DW,    /* pair x Cg: stage Q -> OFFSET_DW */
  DSQ_DA_OFFSET_LN,    /* LN block (D = Cg): OFFSET_DW -> OFFSET_LN */
  DSQ_DA_OFFSET_GELU,  /* LUT block: OFFSET_LN -> OFFSET_GELU */
  DSQ_DA_OFFSET_PW,    /* pair x 2: OFFSET_GELU -> OFFSET (dy, dx) */
  DSQ_DA_POSITION,     /* DAT_PP: [pair]; DAT: [pair, LUT block of tanh in Q15] */
  DSQ_DA_PROJ_K,       /* pair x C: SAMPLED -> K */
  DSQ_DA_PROJ_V,       /* pair x C: SAMPLED -> V */
  DSQ_DA_LOGITS,       /* [pair_qk, pair_bias]: q.k and bias sums -> LOGITS */
  DSQ_DA_SOFTMAX,      /* [pair_exp]: LOGITS -> log2 units (like SOFTMAX) */
  DSQ_DA_CONTEXT,      /* [pair]: sum of ATTN x V -> CONTEXT */
  DSQ_DA_PROJ_OUT,     /* pair x C: CONTEXT -> output */
  DSQ_DA_SECTION_COUNT
} dsq_da_section;

#define DSQ_DA_HEADER_WORDS (2 + DSQ_DA_SECTION_COUNT)

/*
 * DSQ_DA_POSITION details. Positions are pixels of the extended patch in Q format with
 * DSR_FIXED_POS_FRAC_BITS (8) fractional bits; L is H - 1 (physical) or h - 1 (crop).
 * DAT_PP: off = requant32(o * L, pair), factor s_o * 2^8 / 2, o the int16 offset.
 * DAT:    t = tanh LUT(o) in Q15 (saturated to +-32767), then
 *         off = div_round(requant32(t * L, pair), Hk' * 2^8) with factor
 *         factor_range * 2^8 * 2^8 / (2 * 2^15), Hk' = Hk of the full map (physical) or of
 *         the patch (crop); the 8 extra bits keep precision through the division.
 */

#endif
