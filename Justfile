# Developer recipes. Each one is a thin wrapper over `cargo xtask`, which needs nothing but
# rustup's stable toolchain: `just` is a convenience, never the only way to do a thing.

# List the recipes.
default:
    @just --list

# Build the shipped sinks into plugins/sinks/ and run the demo rule end to end.
demo:
    cargo xtask demo

# Run the whole test suite (the tests build their wasm guests from source).
test *ARGS:
    cargo xtask test {{ARGS}}

# rustfmt --check and clippy -D warnings.
lint:
    cargo xtask lint

# What CI runs: lint, then test.
ci:
    cargo xtask ci

# Build the shipped sinks (default: into plugins/sinks/).
sinks *ARGS:
    cargo xtask sinks {{ARGS}}

# Run the benchmarks (release build) and print their figures.
bench *ARGS:
    cargo xtask bench {{ARGS}}

# Build a sink crate of your own into plugins/sinks/<Name>.wasm.
build-sink CRATE NAME:
    cargo build --release --target wasm32-wasip2 --manifest-path {{CRATE}}/Cargo.toml
    mkdir -p plugins/sinks
    cp {{CRATE}}/target/wasm32-wasip2/release/*.wasm plugins/sinks/{{NAME}}.wasm
