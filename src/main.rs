//! The `payd` binary: see `payd --help`.

/// mimalloc: the money path allocates many small, short-lived objects across threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    payd::cli::main()
}
