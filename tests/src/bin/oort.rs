//! The `oort` command, built inside the test package so integration tests can run the real
//! binary (`CARGO_BIN_EXE_oort`); it is the same `main` as `runtime/src/main.rs`.

#[global_allocator]
static ALLOCATOR: oort::Allocator = oort::Allocator;

fn main() -> std::process::ExitCode {
    oort::cli::main()
}
