//! Work done on the side, on a thread of its own at a lower CPU priority:
//! encoding a snapshot takes tens of milliseconds of CPU at 10,000
//! addresses, and at normal priority it took them from the requests that
//! the same cores were serving (with every member building one at about
//! the same point of the log, the whole cluster's).

use std::io;

/// The nice value of a background thread: under load it gets about a
/// tenth of a core's time against one at 0, and all of an idle one.
const NICE: i32 = 10;

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

/// Gives the calling thread the background priority (on Linux the nice
/// value belongs to the thread). Best effort: at the normal priority the
/// work is only less polite.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // a call into libc that has no safe wrapper
fn lower_priority() {
    // SAFETY: setpriority takes three integers and has no precondition;
    // who = 0 is the calling thread.
    let failed = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, NICE) } != 0;
    if failed {
        tracing::debug!(error = %io::Error::last_os_error(), "lowering a thread's priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn work_runs_at_the_background_priority() {
        let nice = super::run("test-background", || {
            // SAFETY: as in lower_priority; getpriority has no precondition.
            #[allow(unsafe_code)]
            unsafe {
                libc::getpriority(libc::PRIO_PROCESS, 0)
            }
        })
        .await
        .unwrap();
        assert_eq!(nice, super::NICE);
    }
}
