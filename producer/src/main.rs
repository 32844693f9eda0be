//! `oda-producer`: see `oda-producer --help`.

fn main() -> std::process::ExitCode {
    oda_producer::main()
}
