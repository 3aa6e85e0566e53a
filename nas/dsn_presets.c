/*
 * The accelerator presets built into the binary, so the tool works from any folder. Each
 * string is byte for byte the file presets/<name>.json; tests/test_nas.c checks that the two
 * stay identical, so edit both together.
 */
#include "dsn_preset.h"

#include <string.h>

typedef struct dsn_builtin_preset {
  const char *name;
  const char *json;
} dsn_builtin_preset;

static const dsn_builtin_preset builtin_presets[] = {
    {"zcu102",
     "{\n"
     "  \"name\": \"zcu102\",\n"
     "  \"device\": {\n"
     "    \"part\": \"XCZU9EG\",\n"
     "    \"luts\": 274080,\n"
     "    \"bram36_blocks\": 912,\n"
     "    \"uram_blocks\": 0,\n"
     "    \"dsp_slices\": 2520\n"
     "  },\n"
     "  \"clock_mhz\": 300,\n"
     "  \"dram\": {\n"
     "    \"bus_width_bits\": 64,\n"
     "    \"burst_length\": 8,\n"
     "    \"peak_bandwidth_gbps\": 19.2,\n"
     "    \"row_bytes\": 8192,\n"
     "    \"row_miss_latency_ns\": 28,\n"
     "    \"latency_ns\": 100,\n"
     "    \"standard\": \"DDR4-2400\",\n"
     "    \"address_mapping\": \"RoBaRaCoCh\"\n"
     "  },\n"
     "  \"feature_buffer_bytes\": 589824,\n"
     "  \"weight_buffer_bytes\": 1179648,\n"
     "  \"feature_banks\": 16,\n"
     "  \"sampling_lanes\": 16,\n"
     "  \"mac_array\": {\n"
     "    \"rows\": 32,\n"
     "    \"cols\": 32\n"
     "  },\n"
     "  \"activation_bits\": 8,\n"
     "  \"weight_bits\": 8,\n"
     "  \"accumulator_bits\": 32\n"
     "}\n"},
    {"kv260",
     "{\n"
     "  \"name\": \"kv260\",\n"
     "  \"device\": {\n"
     "    \"part\": \"XCK26\",\n"
     "    \"luts\": 117120,\n"
     "    \"bram36_blocks\": 144,\n"
     "    \"uram_blocks\": 64,\n"
     "    \"dsp_slices\": 1248\n"
     "  },\n"
     "  \"clock_mhz\": 300,\n"
     "  \"dram\": {\n"
     "    \"bus_width_bits\": 64,\n"
     "    \"burst_length\": 8,\n"
     "    \"peak_bandwidth_gbps\": 19.2,\n"
     "    \"row_bytes\": 8192,\n"
     "    \"row_miss_latency_ns\": 28,\n"
     "    \"latency_ns\": 100,\n"
     "    \"standard\": \"DDR4-2400\",\n"
     "    \"address_mapping\": \"RoBaRaCoCh\"\n"
     "  },\n"
     "  \"feature_buffer_bytes\": 589824,\n"
     "  \"weight_buffer_bytes\": 589824,\n"
     "  \"feature_banks\": 16,\n"
     "  \"sampling_lanes\": 16,\n"
     "  \"mac_array\": {\n"
     "    \"rows\": 16,\n"
     "    \"cols\": 32\n"
     "  },\n"
     "  \"activation_bits\": 8,\n"
     "  \"weight_bits\": 8,\n"
     "  \"accumulator_bits\": 32\n"
     "}\n"},
    {"pynq-z2",
     "{\n"
     "  \"name\": \"pynq-z2\",\n"
     "  \"device\": {\n"
     "    \"part\": \"XC7Z020\",\n"
     "    \"luts\": 53200,\n"
     "    \"bram36_blocks\": 140,\n"
     "    \"uram_blocks\": 0,\n"
     "    \"dsp_slices\": 220\n"
     "  },\n"
     "  \"clock_mhz\": 100,\n"
     "  \"dram\": {\n"
     "    \"bus_width_bits\": 16,\n"
     "    \"burst_length\": 8,\n"
     "    \"peak_bandwidth_gbps\": 2.1,\n"
     "    \"row_bytes\": 2048,\n"
     "    \"row_miss_latency_ns\": 28,\n"
     "    \"latency_ns\": 120,\n"
     "    \"standard\": \"DDR3-1050\",\n"
     "    \"address_mapping\": \"RoBaRaCoCh\"\n"
     "  },\n"
     "  \"feature_buffer_bytes\": 147456,\n"
     "  \"weight_buffer_bytes\": 147456,\n"
     "  \"feature_banks\": 8,\n"
     "  \"sampling_lanes\": 4,\n"
     "  \"mac_array\": {\n"
     "    \"rows\": 8,\n"
     "    \"cols\": 8\n"
     "  },\n"
     "  \"activation_bits\": 8,\n"
     "  \"weight_bits\": 8,\n"
     "  \"accumulator_bits\": 32\n"
     "}\n"},
};

#define BUILTIN_COUNT ((int32_t)(sizeof builtin_presets / sizeof builtin_presets[0]))

int32_t dsn_preset_builtin_count(void) {
  return BUILTIN_COUNT;
}

const char *dsn_preset_builtin_name(int32_t index) {
  if (index < 0 || index >= BUILTIN_COUNT)
    return NULL;
  return builtin_presets[index].name;
}

const char *dsn_preset_builtin_json(const char *name) {
  if (name == NULL)
    return NULL;
  for (int32_t i = 0; i < BUILTIN_COUNT; i++) {
    if (strcmp(builtin_presets[i].name, name) == 0)
      return builtin_presets[i].json;
  }
  return NULL;
}
