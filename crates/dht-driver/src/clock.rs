//! The clock origin: `std::time::Instant` and `SystemTime` mapped to the core's time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Maps the process's monotonic clock to [`dht_proto::Instant`]: microseconds since the moment
/// the clock was made. Every node a driver runs from one clock shares its time line.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: std::time::Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A clock whose origin is now.
    pub fn new() -> Clock {
        Clock {
            origin: std::time::Instant::now(),
        }
    }

    /// The core's time now.
    pub fn now(&self) -> dht_proto::Instant {
        self.instant(std::time::Instant::now())
    }

    /// The core's time at `t` (the origin if `t` is before it).
    pub fn instant(&self, t: std::time::Instant) -> dht_proto::Instant {
        let micros = t.saturating_duration_since(self.origin).as_micros();
        dht_proto::Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// The std instant of the core's time `t`, for a timer (far in the future if it overflows).
    pub fn std_instant(&self, t: dht_proto::Instant) -> std::time::Instant {
        let since = Duration::from_micros(t.as_micros());
        self.origin
            .checked_add(since)
            .unwrap_or_else(|| std::time::Instant::now() + Duration::from_secs(86_400 * 365))
    }

    /// How long from now until the core's time `t` (zero if it has passed): a poll timeout.
    pub fn until(&self, t: dht_proto::Instant) -> Duration {
        Duration::from_micros(t.as_micros().saturating_sub(self.now().as_micros()))
    }
}

/// Seconds since the Unix epoch by the system clock (0 if the clock is before it): the wall-clock
/// input the core needs for value creation times ([`dht_proto::Node::set_unix_time`]).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
