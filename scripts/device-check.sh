#!/usr/bin/env bash
# The device check: proves swift-lora's OpenCL backend on a GPU machine and measures it, in one go, in under 8 minutes,
# on a machine with no Swift toolchain and no network. Run it from the folder scripts/pack-device-check.sh made
# (bin/lora, lib/, lib/fallback/, glibc/, this script), or from the repository with --bundle DIR.
#
# Usage: ./device-check.sh [--device D] [--out DIR] [--budget SECONDS] [--bundle DIR]
#   --device   the OpenCL device to check (default: $LORA_CHECK_DEVICE, else opencl = the first GPU, else the first
#              OpenCL device). A dry run on a machine without a GPU: --device opencl:0 (PoCL).
#   --out      where results go (default: $OUT when set, else ./device-check-results).
#   --budget   seconds for the whole run (default: $LORA_CHECK_BUDGET, else 470: under 8 minutes with a margin).
#
# What it does, in order:
#  1. Libraries: LD_LIBRARY_PATH gets the bundle's lib/ (the ICD loader libOpenCL.so.1 and libclblast.so.1) and the
#     NVIDIA driver's folders (/usr/local/nvidia/lib64, /usr/local/nvidia/lib).
#  2. The OpenCL driver: when OCL_ICD_VENDORS is unset and /etc/OpenCL/vendors holds no .icd file, it finds
#     libnvidia-opencl.so.1 (under /usr/local/nvidia, or where $LORA_CHECK_VENDOR_LIB says), writes an .icd naming it
#     into OUT/vendors and points OCL_ICD_VENDORS there. An existing setup is left alone.
#  3. The binary: run as it is; if that fails (an older libstdc++ or glibc than it was built against), again with
#     lib/fallback/ on the path, then through the bundled glibc's loader (glibc/ld-linux-x86-64.so.2 --library-path).
#     LORA_CHECK_START=built|fallback|glibc forces one of the three.
#  4. The steps, each time-boxed with `timeout` (its own limit, and never past the overall budget; a step with under
#     10 s left is skipped; LORA_CHECK_SLOW=N multiplies every step's limit, for a dry run on a slow CPU device),
#     stdout to OUT/<step>.jsonl (or .txt), stderr to OUT/<step>.log:
#       devices           lora devices                                      (text)
#       selftest          lora selftest --device D --json                   every op and kernel against the CPU
#       tune              lora tune --device D --json --budget 60           skipped when this build has no tune command;
#                         its cache ($XDG_CACHE_HOME/swift-lora/) then tunes the bench steps after it
#       bench-all         lora bench all --device D --json --min-time 0.2   GEMM, softmax, LoRA, ops, NF4
#       train-gpt2-small  lora bench train --config gpt2-small --device D --steps 5 --json   (tokens/s: the median of
#                         5 steps after 2 warm-up steps; $LORA_CHECK_TRAIN_STEPS changes the 5)
#       train-smollm-135m lora bench train --config smollm-135m --device D --steps 5 --json
#       train-smollm-135m-nf4   the same with --quantize nf4 (QLoRA)
#       bench-gemm-large  lora bench gemm --device D --sizes 4096,8192 --json   (SGEMM against the GPU's fp32 peak;
#                         sizes from $LORA_CHECK_GEMM_SIZES)
#       cpu-train-gpt2-small, cpu-train-smollm-135m   the same training on the CPU backend, 3 steps: the GPU/CPU ratio
#  5. OUT/steps.jsonl: one object per step {step, command, exit, seconds, limit, timed_out, skipped};
#     OUT/environment.txt: the machine, driver (nvidia-smi when present), library setup and how lora was started.
# Exit status: 0 when every step that ran exited 0, else 1.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bundle=$here
device=${LORA_CHECK_DEVICE:-opencl}
out=${OUT:-$PWD/device-check-results}
budget=${LORA_CHECK_BUDGET:-470}
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --budget) budget=$2; shift 2 ;;
        --bundle) bundle=$(cd "$2" && pwd); shift 2 ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "device-check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
start=$(date +%s)
deadline=$((start + budget))
mkdir -p "$out"
out=$(cd "$out" && pwd)
: > "$out/steps.jsonl"
lora_bin="$bundle/bin/lora"
[ -x "$lora_bin" ] || { echo "no $lora_bin: run scripts/pack-device-check.sh first, or pass --bundle DIR" >&2; exit 2; }

# 1. Libraries.
nvidia_dirs=""
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do [ -d "$d" ] && nvidia_dirs="$nvidia_dirs:$d"; done
export LD_LIBRARY_PATH="$bundle/lib$nvidia_dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# 2. The OpenCL driver's .icd.
icd_note=""
system_vendors=${LORA_CHECK_SYSTEM_VENDORS:-/etc/OpenCL/vendors}
if [ -n "${OCL_ICD_VENDORS:-}" ]; then
    icd_note="OCL_ICD_VENDORS=$OCL_ICD_VENDORS was already set"
elif compgen -G "$system_vendors/*.icd" > /dev/null; then
    icd_note="using $system_vendors: $(cd "$system_vendors" && ls -- *.icd | paste -sd' ')"
else
    vendor_lib=${LORA_CHECK_VENDOR_LIB:-}
    if [ -z "$vendor_lib" ]; then
        for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64; do
            [ -e "$d/libnvidia-opencl.so.1" ] && { vendor_lib="$d/libnvidia-opencl.so.1"; break; }
        done
    fi
    if [ -z "$vendor_lib" ]; then
        vendor_lib=$(find /usr/local/nvidia -name 'libnvidia-opencl.so.1*' 2>/dev/null | sort | head -1)
    fi
    if [ -n "$vendor_lib" ]; then
        mkdir -p "$out/vendors"
        echo "$vendor_lib" > "$out/vendors/$(basename "$vendor_lib" | sed 's/\.so.*//').icd"
        export OCL_ICD_VENDORS="$out/vendors"
        icd_note="no .icd in $system_vendors: wrote $out/vendors/*.icd naming $vendor_lib"
    else
        icd_note="no .icd in $system_vendors and no libnvidia-opencl.so.1 found: OpenCL will list no devices"
    fi
fi
echo "device-check: OpenCL driver: $icd_note"

# 3. How to start the binary on this machine: as built, else with lib/fallback, else through the bundled glibc
# (LORA_CHECK_START=built|fallback|glibc forces one, to try each on a machine where the first works).
lora=("$lora_bin")
mode="as built"
force=${LORA_CHECK_START:-}
: > "$out/start.log"
if [ "$force" = fallback ] || [ "$force" = glibc ] || { [ -z "$force" ] && ! "${lora[@]}" --help > /dev/null 2>> "$out/start.log"; }; then
    export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$bundle/lib/fallback"
    mode="with lib/fallback (libstdc++, libgcc_s)"
    if [ "$force" = glibc ] || { [ -z "$force" ] && ! "${lora[@]}" --help > /dev/null 2>> "$out/start.log"; }; then
        lora=("$bundle/glibc/ld-linux-x86-64.so.2" --library-path "$bundle/glibc:$LD_LIBRARY_PATH" "$lora_bin")
        mode="through the bundled glibc loader"
    fi
fi
if ! "${lora[@]}" --help > /dev/null 2>> "$out/start.log"; then
    cat "$out/start.log" >&2; echo "device-check: bin/lora does not start on this machine ($mode)" >&2; exit 2
fi
echo "device-check: lora starts $mode; device $device; budget ${budget} s; results in $out"

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(uname -a)"
    echo "os: $( (. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME") || echo unknown)"
    echo "glibc: $(ldd --version 2>/dev/null | head -1 || echo unknown)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
    echo "lora: $mode: ${lora[*]}"
    echo "device: $device"
    echo "LD_LIBRARY_PATH: $LD_LIBRARY_PATH"
    echo "OpenCL driver: $icd_note"
    [ -n "${OCL_ICD_VENDORS:-}" ] && [ -d "$OCL_ICD_VENDORS" ] && for f in "$OCL_ICD_VENDORS"/*.icd; do echo "  $f: $(cat "$f")"; done
    [ -f "$bundle/MANIFEST" ] && { echo "bundle:"; sed 's/^/  /' "$bundle/MANIFEST"; }
    smi=$(command -v nvidia-smi || ls /usr/local/nvidia/bin/nvidia-smi 2>/dev/null || true)
    if [ -n "$smi" ]; then
        echo "nvidia-smi:"
        "$smi" --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit --format=csv 2>&1 | sed 's/^/  /'
    fi
} > "$out/environment.txt"

# 4. The steps. stdout goes to a file, where C stdio (Swift's print) buffers it: a step killed by `timeout` would lose
# every result it had printed. stdbuf -oL (coreutils) makes it line-buffered where stdbuf exists.
linebuffered=()
command -v stdbuf > /dev/null && linebuffered=(stdbuf -oL)
failures=0
json_string() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
# step NAME LIMIT OUTPUT_SUFFIX ARGS...: runs lora ARGS under `timeout`, never past the deadline.
step() {
    local name=$1 limit=$2 suffix=$3; shift 3
    local now left rc=0 t0 t1 timed_out=false skipped=false
    limit=$((limit * ${LORA_CHECK_SLOW:-1}))
    now=$(date +%s); left=$((deadline - now))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 10 ]; then
        skipped=true
        echo "device-check: $name skipped: ${left} s left of the budget"
        rc=0; t0=$now; t1=$now
    else
        echo "device-check: $name (at most ${limit} s): lora $*"
        t0=$(date +%s)
        timeout --kill-after=5 "$limit" "${linebuffered[@]}" "${lora[@]}" "$@" > "$out/$name.$suffix" 2> "$out/$name.log" || rc=$?
        t1=$(date +%s)
        if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then timed_out=true; fi
        [ "$rc" -ne 0 ] && failures=$((failures + 1))
        echo "device-check: $name: exit $rc after $((t1 - t0)) s$([ "$timed_out" = true ] && echo ' (timed out)')"
    fi
    printf '{"step": "%s", "command": %s, "exit": %d, "seconds": %d, "limit": %d, "timed_out": %s, "skipped": %s}\n' \
        "$name" "$(json_string "lora $*")" "$rc" "$((t1 - t0))" "$limit" "$timed_out" "$skipped" >> "$out/steps.jsonl"
}
# skip NAME REASON: records a step that cannot run with this build.
skip() {
    echo "device-check: $1 skipped: $2"
    printf '{"step": "%s", "command": null, "exit": 0, "seconds": 0, "limit": 0, "timed_out": false, "skipped": true, "reason": %s}\n' \
        "$1" "$(json_string "$2")" >> "$out/steps.jsonl"
}

step devices 20 txt devices --device "$device"
step selftest 150 jsonl selftest --device "$device" --json
# `lora tune --help` alone proves nothing (an unknown word goes to the default subcommand, train): look for tune among
# the subcommands lora --help lists.
if "${lora[@]}" --help 2>/dev/null | sed -n '/SUBCOMMANDS/,$p' | grep -qE '^ +tune( |$)'; then
    if "${lora[@]}" help tune 2>&1 | grep -q -- '--json'; then
        step tune 90 jsonl tune --device "$device" --json --budget 60
    else
        step tune 90 txt tune --device "$device"
    fi
else
    skip tune "this build of lora has no tune command"
fi
step bench-all 100 jsonl bench all --device "$device" --json --min-time 0.2
train_steps=${LORA_CHECK_TRAIN_STEPS:-5}
step train-gpt2-small 60 jsonl bench train --config gpt2-small --device "$device" --steps "$train_steps" --json
step train-smollm-135m 60 jsonl bench train --config smollm-135m --device "$device" --steps "$train_steps" --json
step train-smollm-135m-nf4 60 jsonl bench train --config smollm-135m --quantize nf4 --device "$device" --steps "$train_steps" --json
step bench-gemm-large 45 jsonl bench gemm --device "$device" --sizes "${LORA_CHECK_GEMM_SIZES:-4096,8192}" --json --min-time 0.2
step cpu-train-gpt2-small 45 jsonl bench train --config gpt2-small --device cpu --steps 3 --json
step cpu-train-smollm-135m 45 jsonl bench train --config smollm-135m --device cpu --steps 3 --json

# 5. A summary for the terminal; the files hold everything.
echo "== device-check summary ($(( $(date +%s) - start )) s; results in $out)"
[ -s "$out/selftest.log" ] && tail -1 "$out/selftest.log"
if [ -s "$out/selftest.jsonl" ]; then
    echo "selftest lines: $(wc -l < "$out/selftest.jsonl"), passed: $(grep -c '"pass": true' "$out/selftest.jsonl"), failed: $(grep -c '"pass": false' "$out/selftest.jsonl")"
    grep '"pass": false' "$out/selftest.jsonl" | head -5
fi
field() { grep -oE "\"$1\": ?[0-9.]+" <<< "$2" | head -1 | grep -oE '[0-9.]+$'; }
for f in "$out"/train-*.jsonl "$out"/cpu-train-*.jsonl; do
    [ -s "$f" ] && echo "$(basename "$f" .jsonl): $(field tokens_per_s "$(cat "$f")") tokens/s"
done
if [ -s "$out/bench-gemm-large.jsonl" ]; then
    while read -r line; do
        echo "sgemm $(field m "$line")x$(field n "$line")x$(field k "$line"): $(field gflops "$line" | cut -d. -f1) GFLOP/s"
    done < "$out/bench-gemm-large.jsonl"
fi
echo "steps: $(grep -c . "$out/steps.jsonl"), failed: $failures"
[ "$failures" -eq 0 ]
