//! Work done on the side, on a thread of its own that runs only when the
//! CPU has nothing else to do: encoding a snapshot takes tens of
//! milliseconds of CPU at 10,000 addresses, and every member builds one at
//! about the same point of the log. At the normal priority it took that
//! time from the requests the same cores were serving; at nice 10 it still
//! took a tenth of a core from them under load, and snapshot time set the
//! p99 of a loaded cluster.

use std::io;

/// Runs `work` on a new thread named `name` at the background priority
/// and returns its result.
pub async fn run<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            lower_priority();
            let _ = done.send(work());
        })?;
    result
        .await
        .map_err(|_| io::Error::other("a background thread stopped"))
}

/// Gives the calling thread the background priority: Linux's `SCHED_IDLE`
/// policy, whose threads a runnable thread of the normal policy preempts
/// at once (scheduling is per thread on Linux). Not starved: an idle
/// thread still gets a small share of a saturated core. Best effort: at
/// the normal priority the work is only less polite.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // a call into libc that has no safe wrapper
fn lower_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads the param it is given and has no
    // other precondition; pid 0 is the calling thread. Any thread may
    // lower its own policy to SCHED_IDLE.
    let failed = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &raw const param) } != 0;
    if failed {
        tracing::debug!(error = %io::Error::last_os_error(), "lowering a thread's priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn work_runs_at_the_background_priority() {
        let policy = super::run("test-background", || {
            // SAFETY: as in lower_priority; sched_getscheduler has no
            // precondition.
            #[allow(unsafe_code)]
            unsafe {
                libc::sched_getscheduler(0)
            }
        })
        .await
        .unwrap();
        assert_eq!(policy, libc::SCHED_IDLE);
    }
}
