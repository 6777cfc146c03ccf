#!/bin/sh
# Builds {{plugin}}.wasm with componentize-py (pip install componentize-py==0.25.1).
set -eu
cd "$(dirname "$0")"
componentize-py -d wit -w sink-world componentize -p . app -o {{plugin}}.wasm
echo "built {{plugin}}.wasm"
