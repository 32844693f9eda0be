//! `oda-producer`: see `oda-producer --help`.

/// One allocator for the whole process, librdkafka's buffers included:
/// glibc's malloc spent a fifth of a snapshot's CPU freeing on one thread
/// what another allocated, and kept the freed heap (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    oda_producer::main()
}
