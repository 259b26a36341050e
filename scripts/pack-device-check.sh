#!/usr/bin/env bash
# Prepares, on a machine with the Swift toolchain and apt, the folder that scripts/device-check.sh runs from on a GPU
# machine that has neither (no Swift, no network; only a GPU driver). Copy the folder (or the .tar.gz made beside it)
# over and run `./device-check.sh` inside it; see that script's header and README's "Running on a GPU".
#
# Usage: scripts/pack-device-check.sh [OUT_DIR]        (default OUT_DIR: device-check; also writes OUT_DIR.tar.gz)
#
# What goes in:
#   bin/lora          `swift build -c release --static-swift-stdlib --product lora`: the Swift runtime, Foundation and
#                     its ICU data are linked into the binary, so it needs no Swift toolchain. No extra flags are needed
#                     for Foundation with Swift 6 toolchains (static Foundation ships in usr/lib/swift_static). What
#                     stays dynamic is only the C runtime: libc, libm, ld-linux, libstdc++ and libgcc_s (MANIFEST lists
#                     them and the newest GLIBC_/GLIBCXX_ symbol versions the binary asks for). Compiled for
#                     LORA_TARGET_CPU (default here: haswell, i.e. AVX2 + FMA, which every x86-64 server of the last
#                     decade has; the package's own default, native, would tie the binary to this machine's CPU and
#                     could stop with an illegal instruction on the GPU host's). The scratch folder is .build-device.
#   lib/              libOpenCL.so.1 (Debian's ocl-icd-libopencl1: the ICD loader) and libclblast.so.1 (libclblast1),
#                     from `apt-get download` + `dpkg -x`: OpenCL and CLBlast are loaded at run time (dlopen), so the
#                     binary runs without them and uses them where device-check.sh puts them on LD_LIBRARY_PATH.
#   lib/fallback/     libstdc++.so.6 and libgcc_s.so.1 (libstdc++6, libgcc-s1): used only when the GPU host's are
#                     missing or too old for the binary.
#   glibc/            this distribution's libc6 (ld-linux-x86-64.so.2, libc.so.6, libm.so.6, ...): used only when the
#                     host's glibc is older than the binary needs; the binary then starts through this loader.
#   device-check.sh   the check; MANIFEST: package versions, the build's toolchain and commit, what the binary links.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${1:-device-check}
case "$out" in /*) ;; *) out="$root/$out" ;; esac
target_cpu=${LORA_TARGET_CPU:-haswell}
scratch=${LORA_PACK_SCRATCH:-.build-device}

echo "== swift build -c release --static-swift-stdlib --product lora (LORA_TARGET_CPU=$target_cpu, --scratch-path $scratch)"
LORA_TARGET_CPU=$target_cpu swift build -c release --static-swift-stdlib --product lora --scratch-path "$scratch"
binary="$scratch/release/lora"
if ldd "$binary" | grep -qE 'libswift|libFoundation|lib_Foundation|libicu'; then
    ldd "$binary"; echo "the binary still links the Swift runtime or Foundation dynamically"; exit 1
fi

rm -rf "$out" "$out.tar.gz"
mkdir -p "$out/bin" "$out/lib/fallback" "$out/glibc"
cp "$binary" "$out/bin/lora"
strip --strip-debug "$out/bin/lora" 2>/dev/null || true

echo "== apt-get download + dpkg -x: the OpenCL ICD loader, CLBlast, and the C runtime fallbacks"
debs=$(mktemp -d)
chmod 755 "$debs"  # apt-get download fetches as the _apt user where it can
trap 'rm -rf "$debs"' EXIT
packages=(ocl-icd-libopencl1 libclblast1 libstdc++6 libgcc-s1 libc6)
(cd "$debs" && apt-get -o APT::Sandbox::User=root download "${packages[@]}")
for p in "${packages[@]}"; do dpkg -x "$debs/${p}"_*.deb "$debs/root-$p"; done
# Only the shared objects (with their symlinks); the packages' docs and configuration are not needed.
libdir() { echo "$debs/root-$1/usr/lib/x86_64-linux-gnu"; }
cp -a "$(libdir ocl-icd-libopencl1)"/libOpenCL.so.1* "$out/lib/"
cp -a "$(libdir libclblast1)"/libclblast.so.1* "$out/lib/"
cp -a "$(libdir libstdc++6)"/libstdc++.so.6* "$out/lib/fallback/"
cp -a "$debs/root-libgcc-s1"/{usr/,}lib/x86_64-linux-gnu/libgcc_s.so.1 "$out/lib/fallback/" 2>/dev/null || true
for dir in "$debs/root-libc6/lib/x86_64-linux-gnu" "$debs/root-libc6/usr/lib/x86_64-linux-gnu" "$debs/root-libc6/lib64"; do
    [ -d "$dir" ] && cp -a "$dir"/*.so* "$out/glibc/" 2>/dev/null || true
done
[ -e "$out/glibc/ld-linux-x86-64.so.2" ] || { echo "libc6 has no ld-linux-x86-64.so.2"; exit 1; }
[ -e "$out/lib/fallback/libgcc_s.so.1" ] || { echo "libgcc-s1 has no libgcc_s.so.1"; exit 1; }
cp scripts/device-check.sh "$out/device-check.sh"
chmod +x "$out/device-check.sh" "$out/bin/lora"

newest() { objdump -T "$1" | grep -oE "$2_[0-9.]+" | sort -uV | tail -1; }
{
    echo "swift-lora device check, packed $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "toolchain: $(swift --version 2>&1 | head -1)"
    echo "built on: $(. /etc/os-release && echo "$PRETTY_NAME"), $(ldd --version | head -1)"
    echo "LORA_TARGET_CPU: $target_cpu"
    echo "bin/lora: $(stat -c %s "$out/bin/lora") bytes; needs $(newest "$out/bin/lora" GLIBC), $(newest "$out/bin/lora" GLIBCXX || true)"
    echo "bin/lora links dynamically:"; ldd "$binary" | sed 's/^/    /'
    for p in "${packages[@]}"; do echo "package: $(dpkg-deb --showformat='${Package} ${Version}' -W "$debs/${p}"_*.deb)"; done
} > "$out/MANIFEST"
cat "$out/MANIFEST"
tar -C "$(dirname "$out")" -czf "$out.tar.gz" "$(basename "$out")"
echo "== $out ($(du -sh "$out" | cut -f1)), $out.tar.gz ($(du -h "$out.tar.gz" | cut -f1))"
echo "on the GPU machine: tar xzf $(basename "$out").tar.gz && $(basename "$out")/device-check.sh   (results in \$OUT or ./device-check-results)"
