//! `oda-history`: see `oda-history --help`.

/// Processors allocate per record (decoded events, outputs): mimalloc
/// keeps that off the hot path's profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    oda_consumers::main::<oda_consumers::processors::history::History>()
}
