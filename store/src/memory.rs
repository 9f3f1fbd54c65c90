//! Giving freed memory back to the system. glibc keeps what a burst of
//! allocations freed (a netlink dump of every link on the host, parsed in
//! one go; a snapshot built or installed) in its arenas, so a daemon would
//! stay at the size of its largest burst: at 1,000 endpoints on one host,
//! 90 MB resident of which 6 MB is live. Trimming now and then gives it back
//! (and right after a snapshot is installed, the largest burst the store
//! knows of), and fewer arenas keep less of it to begin with.

use std::time::Duration;

/// How often the daemon trims: a burst's pages are back within two seconds
/// (at 10,000 endpoints, a member kept about as much freed memory again as
/// it held live, 5-6 MB, between two trims). One trim took 9-35 ms of wall
/// time on members of a 50-member run sharing 2 cores, on a blocking
/// thread.
pub const TRIM_EVERY: Duration = Duration::from_secs(2);

/// Returns the free pages of every glibc arena to the system; whether any
/// were.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // a call into libc that has no safe wrapper
fn trim() -> bool {
    // SAFETY: malloc_trim takes no pointer and has no precondition: it
    // walks glibc's own arenas under their locks.
    unsafe { libc::malloc_trim(0) != 0 }
}

/// How many malloc arenas the daemon's threads share. glibc makes up to
/// eight per core, one more whenever a thread finds the others locked,
/// and each keeps the pages it freed; the daemon's threads rarely contend.
const ARENAS: i32 = 2;

/// Caps glibc's arenas at two, unless `MALLOC_ARENA_MAX` says
/// otherwise. Called before the runtime starts its threads.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // a call into libc that has no safe wrapper
pub fn limit_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    // SAFETY: mallopt takes two integers and has no precondition; glibc
    // applies M_ARENA_MAX to arenas created from now on.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit_arenas() {}

/// Other allocators give freed memory back by themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

/// Trims on a blocking thread of the runtime, without waiting: after a
/// burst the caller knows of.
pub fn trim_soon() {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        drop(runtime.spawn_blocking(trim));
    }
}

/// Trims every [`TRIM_EVERY`], for the daemon's life.
pub async fn keep_trimmed() {
    let mut every = tokio::time::interval(TRIM_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Ok(released) = tokio::task::spawn_blocking(trim).await {
            tracing::trace!(released, "trimmed the allocator");
        }
    }
}
