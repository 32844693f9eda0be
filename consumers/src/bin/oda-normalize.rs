//! `oda-normalize`: see `oda-normalize --help`.

fn main() -> std::process::ExitCode {
    oda_consumers::main::<oda_consumers::processors::normalize::Normalize>()
}
