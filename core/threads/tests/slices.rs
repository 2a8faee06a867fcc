//! The runtime's worker threads ask for short time slices and keep their nice value (Linux).
#![cfg(target_os = "linux")]

use std::process::Command;
use std::time::Duration;

use syncbridge_threads::{WORKER_SLICE, current_thread_slice, runtime, thread_nice};

/// Linux's version as (major, minor), from `/proc/sys/kernel/osrelease`.
fn kernel() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|part| part.parse::<u32>().expect("version number"));
    (parts.next().expect("major"), parts.next().expect("minor"))
}

/// The calling thread's nice value.
fn nice() -> i32 {
    thread_nice(None)
        .expect("getpriority")
        .expect("Linux has one per thread")
}

fn on_a_worker<T: Send + 'static>(probe: fn() -> T) -> T {
    let runtime = runtime().expect("runtime");
    runtime.block_on(async {
        tokio::spawn(async move { probe() })
            .await
            .expect("probe task")
    })
}

#[test]
fn workers_ask_for_the_short_slice() {
    let slice = on_a_worker(|| current_thread_slice().expect("sched_getattr"));
    if kernel() >= (6, 12) {
        // The kernel reports the slice it gives the thread: the one asked for.
        assert_eq!(slice, Some(WORKER_SLICE));
    } else {
        // Before 6.12 the kernel reports no slice for normal threads.
        assert_eq!(slice, None);
    }
}

#[test]
fn threads_outside_the_runtime_keep_the_default_slice() {
    let slice = std::thread::spawn(|| current_thread_slice().expect("sched_getattr"))
        .join()
        .expect("thread");
    assert_ne!(slice, Some(WORKER_SLICE));
    if kernel() >= (6, 12) {
        assert!(slice.is_some_and(|slice| slice > Duration::from_micros(100)));
    }
}

#[test]
fn threads_started_by_a_worker_get_the_default_slice() {
    // SQLite's connection threads are started by whichever task opens a connection; they
    // compute for milliseconds and must not take the workers' short slice with them.
    let slice = on_a_worker(|| {
        std::thread::spawn(|| current_thread_slice().expect("sched_getattr"))
            .join()
            .expect("thread")
    });
    assert_ne!(slice, Some(WORKER_SLICE));
}

#[test]
fn workers_keep_the_nice_value_they_started_with() {
    // A thread of its own at nice 5 builds the runtime: its workers start at 5, and asking for a
    // slice (which sets every attribute at once) must not put them back to 0.
    std::thread::spawn(|| {
        let thread = std::fs::read_link("/proc/thread-self").expect("thread-self");
        let tid = thread
            .file_name()
            .expect("thread id")
            .to_string_lossy()
            .into_owned();
        let status = Command::new("renice")
            .args(["-n", "5", "-p", &tid])
            .output()
            .expect("renice runs");
        assert!(status.status.success(), "renice: {status:?}");
        assert_eq!(nice(), 5);
        assert_eq!(on_a_worker(nice), 5);
    })
    .join()
    .expect("thread");
}
