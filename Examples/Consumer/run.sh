#!/usr/bin/env bash
# Builds and runs the consumer against swift-lora *by version*: the committed HEAD is cloned, tagged 0.1.0 in
# the clone, and resolved through a file:// URL, exactly as a tagged release would be. A manifest with
# unsafeFlags would fail here ("contains unsafe build flags").
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone --quiet "$root" "$work/swift-lora"
git -C "$work/swift-lora" tag 0.1.0
export SWIFT_LORA_GIT="file://$work/swift-lora"
# Build a copy, so no Package.resolved from an earlier run (naming an older clone) is picked up.
cp -R "$root/Examples/Consumer" "$work/consumer"
rm -rf "$work/consumer/.build" "$work/consumer/Package.resolved"
cd "$work/consumer"
swift build --scratch-path "$work/build"
"$work/build/debug/Consumer"
