//! The Tokio runtime the `syncbridge` binary runs on, built in one place so that the benchmarks
//! measure the runtime the binary has.
//!
//! Its worker threads ask the kernel for short time slices ([`WORKER_SLICE`]). They carry the
//! network side of a run: HTTP connections, request slots handed on, answers read. Next to them
//! run threads that compute for milliseconds at a stretch: the meta-store's SQLite writer, a
//! run's loop mapping and hashing a batch. Linux's scheduler (EEVDF, since 6.6) gives a woken
//! thread the core at once only if its deadline comes first, and a thread's deadline is its
//! slice away. With the default slice, a worker woken by an answer often waited for such a
//! thread's slice to end, while the service (with four requests in flight) ran out of work.
//! With short slices the worker runs first, and the long-running threads lose nothing but the
//! moments the worker needs. `benches/push.rs` in the engine measured 0.74–0.76 of the minimal
//! client against 0.68–0.72 without it (BENCHMARKS.md).
//!
//! Linux reads the slice a thread asks for since 6.12 (`sched_setattr(2)`, `sched_runtime`
//! for `SCHED_OTHER`) and clamps it to 0.1–100 ms. Older kernels accept the call and ignore the
//! slice. Other systems get the runtime without it.

use std::time::Duration;

/// The time slice each worker thread asks for: the shortest Linux grants.
pub const WORKER_SLICE: Duration = Duration::from_micros(100);

/// A multi-threaded runtime with I/O and timers, one worker per core, whose threads ask for
/// [`WORKER_SLICE`].
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
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
