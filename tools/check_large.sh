#!/usr/bin/env bash
# Exports the full-size DAT and DAT++ models and checks the C runtime's float output against
# PyTorch's, and ONNX Runtime's where onnxruntime-node is installed.
#
# Usage: tools/check_large.sh [--bin build/bin/deformslice] [--exports /work/exports]
#                             [--only REGEX] [--tolerance 1e-4] [--reexport]
#
# Cases (opset 16, random weights with seed 0): DAT-T and DAT-T++ at 224, 225, 224x320 and
# 800x1333; DAT-S, DAT-B, DAT-S++ and DAT-B++ at 224. An export is reused when its .onnx,
# .input.f32, .output.f32 and .json exist and are newer than the model sources; --reexport
# writes them again. Each case prints one line per check; a table at the end gives every
# case's export, C runtime and ONNX Runtime result with the reason for a failure, and is also
# written to EXPORTS/check_large.txt. ONNX Runtime is skipped with a message when
# onnxruntime-node is not found ($ORT_NODE_MODULES, else bench/ort/node_modules).
# Exit status: 0 when every export and every C runtime check passes, 1 otherwise.
set -u

root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/build/bin/deformslice"
exports="/work/exports"
only=""
tolerance="1e-4"
reexport=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --exports) exports="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --tolerance) tolerance="$2"; shift 2 ;;
    --reexport) reexport=1; shift ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "check_large: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

python=/usr/bin/python3
cases="dat_t:224 dat_pp_t:224 dat_t:225 dat_pp_t:225 dat_t:224x320 dat_pp_t:224x320
dat_s:224 dat_b:224 dat_pp_s:224 dat_pp_b:224 dat_t:800x1333 dat_pp_t:800x1333"

if [ ! -x "$bin" ]; then
  echo "check_large: $bin not found; build it first (make build)" >&2
  exit 1
fi
mkdir -p "$exports" || exit 1
modules="${ORT_NODE_MODULES:-$root/bench/ort/node_modules}"
if ! command -v node > /dev/null; then
  echo "check_large: ONNX Runtime checks skipped: node is not installed"
elif [ ! -d "$modules/onnxruntime-node" ]; then
  echo "check_large: ONNX Runtime checks skipped: onnxruntime-node not found in $modules" \
       "(run 'npm install --ignore-scripts' in bench/ort, or set ORT_NODE_MODULES)"
fi
newest_source="$root/tools/models/dat_family.py"
for f in "$root/tools/models/dat.py" "$root/tools/models/local_attention.py" \
         "$root/tools/export_models.py"; do
  [ "$f" -nt "$newest_source" ] && newest_source="$f"
done

# The number after "max abs diff" in a check line.
max_diff() {
  sed -n 's/.*max abs diff \([^ ]*\) .*/\1/p' <<< "$1"
}

summary=()
failed=0
for item in $cases; do
  model="${item%%:*}"
  size="${item#*:}"
  name="${model}_${size}_op16"
  if [ -n "$only" ] && ! [[ "$name" =~ $only ]]; then
    continue
  fi
  base="$exports/$name"
  export_result="reused"
  if [ "$reexport" = 1 ] || [ ! -f "$base.json" ] || [ ! -f "$base.output.f32" ] ||
     [ ! -f "$base.input.f32" ] || [ "$newest_source" -nt "$base.onnx" ]; then
    start=$(date +%s)
    if "$python" "$root/tools/export_models.py" --model "$model" --size "$size" --opset 16 \
         --out "$exports" > "$base.export.log" 2>&1; then
      export_result="exported in $(( $(date +%s) - start )) s"
    else
      reason="$(grep -v '^ ' "$base.export.log" | tail -n 1)"
      summary+=("$(printf '%-22s export FAIL: %s' "$name" "$reason")")
      echo "$name: export failed: $reason (log: $base.export.log)"
      failed=1
      continue
    fi
  fi
  shape="$("$python" -c "import json,sys; print(','.join(map(str, json.load(open(sys.argv[1]))['input'])))" "$base.json")"

  start=$(date +%s)
  c_line="$("$bin" check "$base.onnx" --input "$base.input.f32" --expect "$base.output.f32" \
              --tolerance "$tolerance" 2>&1 | tail -n 1)"
  c_seconds=$(( $(date +%s) - start ))
  echo "$c_line"
  case "$c_line" in
    *": PASS") c_result="PASS (max abs diff $(max_diff "$c_line"), ${c_seconds} s)" ;;
    *": FAIL") c_result="FAIL (max abs diff $(max_diff "$c_line"))"; failed=1 ;;
    *) reason="${c_line#deformslice: error: }"
       c_result="FAIL: ${reason:0:240}"; failed=1 ;;
  esac

  ort_line="$root/tools/ort_check.js: ONNX Runtime SKIP: node is not installed"
  command -v node > /dev/null &&
  ort_line="$(node "$root/tools/ort_check.js" "$base.onnx" "$base.input.f32" "$base.output.f32" \
                "$shape" --tolerance "$tolerance" --modules "$modules" 2>&1 | tail -n 1)"
  echo "$ort_line"
  case "$ort_line" in
    *": PASS") ort_result="PASS (max abs diff $(max_diff "$ort_line"))" ;;
    *": FAIL") ort_result="FAIL (max abs diff $(max_diff "$ort_line"))" ;;
    *"SKIP: onnxruntime-node not found"*) ort_result="SKIP (onnxruntime-node not installed)" ;;
    *) ort_result="SKIP: ${ort_line#*ONNX Runtime SKIP: }" ;;
  esac
  summary+=("$(printf '%-22s export %s | C runtime %s | ONNX Runtime %s' "$name" \
                 "$export_result" "$c_result" "$ort_result")")
done

{
  echo "check-large: C runtime (float) and ONNX Runtime against PyTorch, tolerance $tolerance"
  for line in "${summary[@]}"; do
    echo "  $line"
  done
} | tee "$exports/check_large.txt"
exit "$failed"
