//! `oda-normalize`: see `oda-normalize --help`.

/// One allocator for the whole process, librdkafka's buffers included:
/// with glibc's malloc under librdkafka, the pass-through ran a quarter
/// slower (docs/BENCHMARKS.md, "One allocator for the processors too").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    oda_consumers::main::<oda_consumers::processors::normalize::Normalize>()
}
