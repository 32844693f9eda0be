//! `oda-replay`: see `oda-replay --help`.

fn main() -> std::process::ExitCode {
    oda_consumers::replay::cli::main()
}
