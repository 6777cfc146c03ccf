//! The `oort` binary: everything lives in the library; this only hands over to its CLI.

#[global_allocator]
static ALLOCATOR: oort::Allocator = oort::Allocator;

fn main() -> std::process::ExitCode {
    oort::cli::main()
}
