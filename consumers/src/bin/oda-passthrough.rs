//! `oda-passthrough`: see `oda-passthrough --help`.

fn main() -> std::process::ExitCode {
    oda_consumers::main::<oda_consumers::processors::passthrough::Passthrough>()
}
