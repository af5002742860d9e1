//! The `payd` binary: see `payd --help`.

fn main() -> std::process::ExitCode {
    payd::cli::main()
}
