//! This host's clock, where the store needs the time of day (certificate
//! validity, enrollment windows); durations use `Instant`.

/// Seconds since the Unix epoch, by this host's clock.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
