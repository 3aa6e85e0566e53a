/*
 * The oracle's DRAM walk: a deformable layer's transfers served by the modelled DRAM in the
 * executor's issue order (runtime/dsr_exec.h), giving the bursts and row misses the executor
 * counts. Used by dsn_oracle.c and dsn_schedule.c; callers outside nas/ use the oracle and
 * the executor instead.
 */
#ifndef DSN_ORACLE_WALK_H
#define DSN_ORACLE_WALK_H

#include <stdint.h>

#include "common/ds_status.h"
#include "nas/dsn_oracle.h"
#include "nas/dsn_preset.h"
#include "nas/dsn_schedule.h"
#include "runtime/dsr_dram.h"
#include "runtime/dsr_exec.h"

/*
 * Alignment of every DRAM region of dsn_schedule_layout: the bytes below the DRAM row field
 * (dsr_dram_stripe_bytes), so a layer's hit and miss counts do not depend on where its
 * regions start when the row field is the most significant one.
 */
uint64_t dsn_layout_alignment(const dsn_preset *preset);

/* The layout the oracle prices one layer at: input at 0, then the output and the weights, each
 * on a dsn_layout_alignment boundary, as dsn_schedule_layout places them. */
void dsn_oracle_canonical_addresses(const dsr_deform_attn *layer, const dsn_preset *preset,
                                    dsn_layer_addresses *addresses);

/* Opens preset's modelled DRAM in a heap state buffer (*state, freed by the caller with
 * free()). Errors: DS_ERR_INVALID_ARGUMENT for a DRAM geometry the model rejects. */
ds_status dsn_dram_open(const dsn_preset *preset, dsr_dram *dram, void **state, ds_error *err);

/* Reads the layer's weights from base: each tensor one request, in dsr_deform_param order, at
 * burst-aligned offsets, as dsn_schedule_build loads them. */
void dsn_walk_weights(dsr_dram *dram, const dsr_deform_attn *layer, const dsn_preset *preset,
                      uint64_t base);

/*
 * Walks the layer's weights, then its patch loads and stores under slice in the executor's
 * order, at addresses, and adds bytes, bursts and row misses to add_to (time_ns untouched).
 */
ds_status dsn_oracle_walk(const dsr_deform_attn *layer, dsr_slice slice, const dsn_preset *preset,
                          const dsn_layer_addresses *addresses, dsn_traffic *add_to,
                          ds_error *err);

/* Traffic of an executor layer record (bytes, bursts, row misses, time_ns). */
void dsn_traffic_from_exec(const dsr_exec_layer *layer, const dsn_preset *preset,
                           dsn_traffic *traffic);

/* Runs schedule through the executor and returns the traffic of layer (-1: all layers); all
 * zero when the schedule does not pass dsr_exec_check. */
void dsn_schedule_walk(const dsr_schedule *schedule, const dsn_preset *preset, int32_t layer,
                       dsn_traffic *traffic);

#endif
