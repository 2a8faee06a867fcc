//! How SyncBridge's threads are scheduled, in one place so that the benchmarks measure what the
//! binary does.
//!
//! A run's network side (HTTP connections, request slots handed on, answers read) runs on the
//! Tokio runtime's worker threads. Next to them run threads that compute for milliseconds at a
//! stretch: SQLite's connection threads (a ledger transaction of thousands of rows), a run's
//! loop mapping and hashing a batch. When the cores are busy, a worker woken by an answer used
//! to wait for such a thread's time slice to end, while the service, with four requests in
//! flight, ran out of work. Two settings put the network side first:
//! - [`runtime`]'s workers ask the kernel for short time slices ([`WORKER_SLICE`]). Linux's
//!   scheduler (EEVDF, since 6.6) runs a woken thread at once when its deadline comes first,
//!   and a thread's deadline is its slice away.
//! - [`yield_threads_named`] and [`yield_current_thread`] lower the priority of bulk workers
//!   ([`BACKGROUND_NICE`]): the meta-store applies it to SQLite's connection threads, the engine
//!   to the thread that runs a run's loop. They then take the cores the network side leaves,
//!   which on a busy machine is most of them.
//!
//! `benches/push.rs` in the engine measured each (BENCHMARKS.md). Linux reads the slice a
//! thread asks for since 6.12 (`sched_setattr(2)`, `sched_runtime` for `SCHED_OTHER`) and clamps
//! it to 0.1–100 ms; older kernels accept the call and ignore the slice. Other systems get
//! neither setting.

use std::time::Duration;

/// The time slice each worker thread asks for: the shortest Linux grants.
pub const WORKER_SLICE: Duration = Duration::from_micros(100);

/// The nice value of bulk workers: they get about a tenth of a core's time against a thread at
/// the default 0 when both want it, and all of it otherwise.
pub const BACKGROUND_NICE: i32 = 10;

/// A multi-threaded runtime with I/O and timers, one worker per core, whose threads ask for
/// [`WORKER_SLICE`].
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(ask_for_short_slices)
        .build()
}

/// Asks the kernel to give the calling thread [`WORKER_SLICE`]. Failing costs only the
/// scheduling advantage, so it is logged, not returned.
fn ask_for_short_slices() {
    if let Err(error) = slice::set_current(WORKER_SLICE) {
        tracing::debug!(%error, "the kernel refused a shorter time slice for a runtime thread");
    }
}

/// The calling thread's time slice as the kernel reports it: the one it asked for, or the
/// kernel's default. `None` where the kernel does not say (Linux before 6.12 reports zero;
/// other systems have no such call).
pub fn current_thread_slice() -> std::io::Result<Option<Duration>> {
    slice::current()
}

/// Lowers the priority of this process's threads whose name starts with `prefix` to
/// [`BACKGROUND_NICE`] (a thread already lower is left alone). For threads a library starts
/// without a hook into them, such as sqlx's SQLite connection threads: call it after the
/// library started them. Failing costs only the scheduling advantage, so a thread that cannot
/// be changed is logged and skipped.
pub fn yield_threads_named(prefix: &str) {
    for tid in threads_named(prefix) {
        if let Err(error) = nice::lower(Some(tid), BACKGROUND_NICE) {
            tracing::debug!(%error, tid, prefix, "cannot lower a thread's priority");
        }
    }
}

/// The ids of this process's threads whose name starts with `prefix` (empty where the system
/// does not list them).
pub fn threads_named(prefix: &str) -> Vec<u32> {
    nice::threads_named(prefix)
}

/// Lowers the calling thread's priority to [`BACKGROUND_NICE`] (unless it is lower already), for
/// a thread of its own that does bulk work. Threads it starts inherit the value. Failing costs
/// only the scheduling advantage, so it is logged, not returned.
pub fn yield_current_thread() {
    if let Err(error) = nice::lower(None, BACKGROUND_NICE) {
        tracing::debug!(%error, "cannot lower a thread's priority");
    }
}

/// The nice value of this process's thread `tid`, or the calling thread's. `None` where the
/// system has no per-thread nice value.
pub fn thread_nice(tid: Option<u32>) -> std::io::Result<Option<i32>> {
    nice::get(tid)
}

#[cfg(target_os = "linux")]
mod nice {
    use std::io;

    use rustix::process::{Pid, getpriority_process, setpriority_process};

    fn pid(tid: u32) -> io::Result<Pid> {
        i32::try_from(tid)
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a thread id"))
    }

    /// On Linux the nice value belongs to each thread, and `setpriority(PRIO_PROCESS, tid)`
    /// sets one thread's (`setpriority(2)`, NOTES).
    pub(super) fn get(tid: Option<u32>) -> io::Result<Option<i32>> {
        let pid = tid.map(pid).transpose()?;
        Ok(Some(getpriority_process(pid)?))
    }

    /// Sets thread `tid`'s nice value, or the calling thread's, to `nice` unless it is higher
    /// already.
    pub(super) fn lower(tid: Option<u32>, nice: i32) -> io::Result<()> {
        let pid = tid.map(pid).transpose()?;
        if getpriority_process(pid)? < nice {
            setpriority_process(pid, nice)?;
        }
        Ok(())
    }

    /// From `/proc/self/task/*/comm`; a thread that ends meanwhile is left out.
    pub(super) fn threads_named(prefix: &str) -> Vec<u32> {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return Vec::new();
        };
        tasks
            .flatten()
            .filter(|task| {
                std::fs::read_to_string(task.path().join("comm"))
                    .is_ok_and(|name| name.starts_with(prefix))
            })
            .filter_map(|task| task.file_name().to_str()?.parse().ok())
            .collect()
    }
}

#[cfg(not(target_os = "linux"))]
mod nice {
    use std::io;

    pub(super) fn get(_tid: Option<u32>) -> io::Result<Option<i32>> {
        Ok(None)
    }

    pub(super) fn lower(_tid: Option<u32>, _nice: i32) -> io::Result<()> {
        Ok(())
    }

    pub(super) fn threads_named(_prefix: &str) -> Vec<u32> {
        Vec::new()
    }
}

#[cfg(target_os = "linux")]
mod slice {
    use std::io;
    use std::time::Duration;

    /// The thread's scheduling attributes (`sched_getattr(2)`), for the calling thread.
    fn get() -> io::Result<libc::sched_attr> {
        let mut attr = libc::sched_attr {
            size: 0,
            sched_policy: 0,
            sched_flags: 0,
            sched_nice: 0,
            sched_priority: 0,
            sched_runtime: 0,
            sched_deadline: 0,
            sched_period: 0,
        };
        let size = std::mem::size_of::<libc::sched_attr>() as libc::c_uint;
        // SAFETY: `attr` is a valid, writable `sched_attr` of `size` bytes that outlives the
        // call; thread id 0 is the calling thread; flags must be 0.
        #[allow(unsafe_code)]
        let result = unsafe {
            libc::syscall(
                libc::SYS_sched_getattr,
                0,
                &mut attr as *mut libc::sched_attr,
                size,
                0,
            )
        };
        if result == 0 {
            Ok(attr)
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Sets the calling thread's slice, keeping its policy and nice value; threads it starts
    /// later do not inherit the slice. Threads under another policy than the normal or batch
    /// one (an operator's `chrt`) are left as they are.
    pub(super) fn set_current(slice: Duration) -> io::Result<()> {
        let mut attr = get()?;
        if !matches!(
            attr.sched_policy as libc::c_int,
            libc::SCHED_OTHER | libc::SCHED_BATCH
        ) {
            return Ok(());
        }
        attr.size = std::mem::size_of::<libc::sched_attr>() as u32;
        // Threads the worker starts (SQLite's connection threads, opened from a task) start
        // with the kernel's default slice instead of inheriting this one.
        attr.sched_flags = libc::SCHED_FLAG_RESET_ON_FORK as u64;
        attr.sched_runtime = u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX);
        // SAFETY: `attr` is a valid, initialised `sched_attr` whose `size` field is its size,
        // and it outlives the call; thread id 0 is the calling thread; flags must be 0.
        #[allow(unsafe_code)]
        let result = unsafe {
            libc::syscall(
                libc::SYS_sched_setattr,
                0,
                &attr as *const libc::sched_attr,
                0,
            )
        };
        if result == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub(super) fn current() -> io::Result<Option<Duration>> {
        let attr = get()?;
        Ok((attr.sched_runtime > 0).then(|| Duration::from_nanos(attr.sched_runtime)))
    }
}

#[cfg(not(target_os = "linux"))]
mod slice {
    use std::io;
    use std::time::Duration;

    pub(super) fn set_current(_slice: Duration) -> io::Result<()> {
        Ok(())
    }

    pub(super) fn current() -> io::Result<Option<Duration>> {
        Ok(None)
    }
}
