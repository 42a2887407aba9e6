//! The time the server goes by. Everything that expires or counts within a window (sessions,
//! sealed tokens, lockout windows, metadata dates) asks the [`Clock`] in the shared state, so a
//! test can move time forward instead of waiting for it to pass.

use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// A source of the current time.
pub trait Clock: Debug + Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> i64;

    /// Whole seconds since the Unix epoch.
    fn now_seconds(&self) -> u64 {
        u64::try_from(self.now_millis() / 1000).unwrap_or(0)
    }

    /// The current time as IDM writes dates (ISO-8601 UTC with milliseconds).
    fn now_iso(&self) -> String {
        let now = chrono::DateTime::from_timestamp_millis(self.now_millis()).unwrap_or_default();
        ferridm_core::time::format_iso(now)
    }
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A clock that stands still until moved (for tests).
#[derive(Debug)]
pub struct ManualClock {
    millis: AtomicI64,
}

impl ManualClock {
    /// A clock showing the system time now.
    pub fn starting_now() -> Self {
        Self {
            millis: AtomicI64::new(SystemClock.now_millis()),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let millis = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.millis.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> i64 {
        self.millis.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::starting_now();
        let before = clock.now_millis();
        assert_eq!(clock.now_millis(), before);
        clock.advance(Duration::from_secs(90));
        assert_eq!(clock.now_millis(), before + 90_000);
        assert_eq!(clock.now_seconds(), u64::try_from((before + 90_000) / 1000).unwrap());
    }
}
