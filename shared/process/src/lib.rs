//! What every azs-usage executable does before anything else: settle how glibc's malloc hands out
//! memory, then start the tokio runtime.
//!
//! ## Why the allocator is tuned
//!
//! The collector buffers one hourly window per stamp in flight (a 10,000-row window is about 4 MiB of
//! rows, allocated on whichever tokio worker thread pulled it and freed on the thread that committed
//! it). Left to its defaults, glibc gives every thread its own arena (up to 8 per core) and, after the
//! first large buffer is freed, raises its mmap threshold so that later window buffers also come from
//! those arenas. Memory freed in one arena cannot serve another thread's next window, so the process
//! holds several windows' worth of free pages: on the standard benchmark the collector peaked at
//! 72 MiB with the defaults and at 55 MiB with the settings below (`scripts/bench.sh standard`).
//! Lambda bills per MB and its smallest size is 128 MB. The price is a page fault per 4 KiB each time
//! a large buffer is mapped afresh, so code that fills large buffers repeatedly reuses them (the stamp
//! client's page body, for one).
//!
//! - `M_ARENA_MAX = 2`: at most two arenas, so freed window memory is found again by the next window.
//! - `M_MMAP_THRESHOLD = 128 KiB`: large buffers (window vectors, page bodies) are mapped and unmapped
//!   on their own and go back to the kernel when freed. Setting it also turns off the dynamic
//!   threshold that would otherwise climb to the largest buffer seen.
//!
//! An operator's own `MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_` or `GLIBC_TUNABLES` wins: glibc read
//! them at start-up and they are left alone. On other C libraries nothing is changed.

/// Arenas glibc may create (see the module documentation).
pub const ARENA_MAX: i32 = 2;
/// Allocations at least this large are mapped on their own and unmapped when freed.
pub const MMAP_THRESHOLD_BYTES: i32 = 128 * 1024;

/// The multi-threaded tokio runtime every entry point runs on, built after [`tune_allocator`] so that
/// the runtime's threads are created under the tuned settings.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tune_allocator();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}

/// Applies the malloc settings of the module documentation unless the environment already chose.
/// Call it first in `main`, before other threads exist.
pub fn tune_allocator() -> AllocatorSettings {
    let chosen_by_environment =
        |var: &str| std::env::var_os(var).is_some() || std::env::var_os("GLIBC_TUNABLES").is_some();
    AllocatorSettings {
        arena_max: !chosen_by_environment("MALLOC_ARENA_MAX") && set(Param::ArenaMax, ARENA_MAX),
        mmap_threshold: !chosen_by_environment("MALLOC_MMAP_THRESHOLD_")
            && set(Param::MmapThreshold, MMAP_THRESHOLD_BYTES),
    }
}

/// Which settings [`tune_allocator`] applied (`false`: left to the environment or not glibc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocatorSettings {
    pub arena_max: bool,
    pub mmap_threshold: bool,
}

enum Param {
    ArenaMax,
    MmapThreshold,
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set(param: Param, value: i32) -> bool {
    let param = match param {
        Param::ArenaMax => libc::M_ARENA_MAX,
        Param::MmapThreshold => libc::M_MMAP_THRESHOLD,
    };
    // SAFETY: mallopt only changes malloc's tuning parameters; it takes no pointers and glibc
    // serialises it against allocations in progress. It returns 1 on success, 0 on an invalid value.
    #[allow(unsafe_code)]
    let applied = unsafe { libc::mallopt(param, value) };
    applied == 1
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set(_param: Param, _value: i32) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_starts_and_runs_tasks_on_its_workers() {
        let runtime = runtime().expect("a runtime");
        let answer = runtime.block_on(async { tokio::spawn(async { 6 * 7 }).await.expect("the task ran") });
        assert_eq!(answer, 42);
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_accepts_both_settings_unless_the_environment_chose() {
        let settings = tune_allocator();
        let free =
            |var: &str| std::env::var_os(var).is_none() && std::env::var_os("GLIBC_TUNABLES").is_none();
        assert_eq!(settings.arena_max, free("MALLOC_ARENA_MAX"));
        assert_eq!(settings.mmap_threshold, free("MALLOC_MMAP_THRESHOLD_"));
    }
}
