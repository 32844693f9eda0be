//! Giving freed heap memory back to the system.
//!
//! glibc's malloc keeps what a thread frees in that thread's arena for
//! reuse and returns only the top of each heap. A snapshot's burst of
//! pages, events and batches across many threads leaves most of it behind:
//! measured after a full-size snapshot, the producer held 300 MB of heap of
//! which 81 MB were in use, and `malloc_trim(0)` brought its RSS from
//! 305 MiB to 129 MiB at once (docs/BENCHMARKS.md). Allocators that purge
//! on their own did worse here (mimalloc's RSS kept growing while
//! streaming), so a long-running process trims now and then instead.

use std::time::Duration;

use crate::shutdown::CancellationToken;

/// Returns free heap pages to the system; `false` where there is nothing
/// to do (an allocator other than glibc's).
pub fn release_free_memory() -> bool {
    trim()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() -> bool {
    // SAFETY: malloc_trim takes no pointers, locks every arena itself and
    // may be called from any thread at any time (glibc's manual).
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

/// Caps glibc's malloc at `arenas` arenas, unless the operator chose
/// (`MALLOC_ARENA_MAX`, or `GLIBC_TUNABLES` naming `arena_max`). Call it
/// before any thread starts. glibc gives every thread that meets a locked
/// arena a new one, up to eight per core; a snapshot's burst then leaves
/// freed memory spread over many heaps. Measured on a full-size snapshot
/// (docs/BENCHMARKS.md): two arenas took the peak from 179 to 174 MiB and
/// the RSS after it from 108 to 81 MiB, at the same rate.
pub fn cap_arenas(arenas: i32) -> bool {
    let chosen = std::env::var_os("MALLOC_ARENA_MAX").is_some()
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("arena_max"));
    !chosen && set_arena_max(arenas)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_arena_max(arenas: i32) -> bool {
    // SAFETY: mallopt takes no pointers; glibc applies M_ARENA_MAX to
    // arenas created after the call.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_arenas: i32) -> bool {
    false
}

/// Trims every `every` until `shutdown`, on a blocking thread (a trim of a
/// large heap takes milliseconds, too long for a runtime worker).
pub fn trim_periodically(every: Duration, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let _ = tokio::task::spawn_blocking(release_free_memory).await;
        }
    });
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    fn rss_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    }

    #[test]
    fn what_another_thread_freed_goes_back_to_the_system() {
        // 128 MiB in small blocks, written by another thread, which then
        // frees all but one block in 64: the pinned blocks keep glibc from
        // trimming the heap's top, as a snapshot's survivors do.
        let pinned = std::thread::spawn(|| {
            let blocks: Vec<Vec<u8>> = (0..128 * 1024).map(|i| vec![i as u8; 1024]).collect();
            blocks.into_iter().step_by(64).collect::<Vec<_>>()
        })
        .join()
        .expect("the allocating thread");
        let held = rss_kib();
        assert!(release_free_memory(), "glibc had something to release");
        let after = rss_kib();
        assert!(
            after + 64 * 1024 < held,
            "RSS {held} KiB before the trim, {after} KiB after"
        );
        assert_eq!(pinned.len(), 2048);
    }
}
