//! Bounded turns: at most a set number of holders at once; the others wait for a turn up to a
//! timeout. Used where one kind of work could otherwise take the whole machine (password
//! hashing, client queries).

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ferridm_core::{Error, Result};

/// At most `limit` turns at once.
#[derive(Debug)]
pub struct Gate {
    turns: Mutex<Turns>,
    freed: Condvar,
}

#[derive(Debug)]
struct Turns {
    limit: usize,
    busy: usize,
}

/// A turn; the next waiter goes when it is dropped.
#[derive(Debug)]
pub struct Turn<'a> {
    gate: &'a Gate,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut turns = self.gate.turns.lock().unwrap_or_else(PoisonError::into_inner);
        turns.busy = turns.busy.saturating_sub(1);
        self.gate.freed.notify_one();
    }
}

impl Gate {
    /// A gate letting `limit` (at least one) through at once.
    pub fn new(limit: usize) -> Self {
        Self {
            turns: Mutex::new(Turns {
                limit: limit.max(1),
                busy: 0,
            }),
            freed: Condvar::new(),
        }
    }

    /// Applies a new bound (after a reload).
    pub fn configure(&self, limit: usize) {
        self.turns.lock().unwrap_or_else(PoisonError::into_inner).limit = limit.max(1);
        self.freed.notify_all();
    }

    /// Waits up to `wait_millis` for a turn; without one, a 503 with `busy` as its message.
    pub fn turn(&self, wait_millis: u64, busy: &str) -> Result<Turn<'_>> {
        self.acquire(Duration::from_millis(wait_millis))
            .ok_or_else(|| Error::Unavailable(busy.to_owned()))
    }

    /// Waits up to `wait` for a turn; `None` when none came.
    pub fn acquire(&self, wait: Duration) -> Option<Turn<'_>> {
        let deadline = Instant::now() + wait;
        let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
        while turns.busy >= turns.limit {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            turns = self
                .freed
                .wait_timeout(turns, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        turns.busy += 1;
        Some(Turn { gate: self })
    }
}

/// A bound of 0 means one per core.
pub fn per_core_or(limit: u32) -> usize {
    match limit {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        limit => limit as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_lets_limit_through_and_times_out_the_rest() {
        let gate = Gate::new(2);
        let first = gate.acquire(Duration::ZERO).unwrap();
        let _second = gate.acquire(Duration::ZERO).unwrap();
        assert!(
            gate.acquire(Duration::from_millis(1)).is_none(),
            "a third waits, then gives up"
        );
        drop(first);
        assert!(gate.acquire(Duration::ZERO).is_some(), "a freed turn is taken at once");
        gate.configure(3);
        assert!(
            gate.acquire(Duration::ZERO).is_some(),
            "a raised bound lets one more in"
        );
        assert!(per_core_or(0) >= 1);
        assert_eq!(per_core_or(3), 3);
    }
}
