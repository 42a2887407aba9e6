//! Failed-login bookkeeping shared by every node: the recent failures of each principal and the
//! lock they trigger, updated in one transaction that holds the principal's row (the same SQL on
//! SQLite and PostgreSQL).

use diesel::prelude::*;

use crate::schema::login_failures;
use crate::sql::Sql;
use crate::{Store, StoreError};

/// The lockout state of one principal (times in milliseconds since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginFailure {
    /// Failed logins since the last success or unlock.
    pub failures: i64,
    /// Time of the oldest failure still counted towards a lock.
    pub window_start: i64,
    /// Locked until this time (0 when never locked).
    pub locked_until: i64,
}

impl LoginFailure {
    /// True while the lock holds at `now`.
    pub fn locked_at(&self, now: i64) -> bool {
        self.locked_until > now
    }
}

/// How failures turn into a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutRule {
    /// Failures within the window that lock.
    pub max_failures: i64,
    /// Window length in milliseconds.
    pub window_ms: i64,
    /// Lock length in milliseconds.
    pub lock_ms: i64,
}

impl Store {
    /// The lockout state of a principal, if it ever failed.
    pub fn login_failure(&self, principal: &str) -> Result<Option<LoginFailure>, StoreError> {
        self.read(|conn| {
            let row = login_failures::table
                .filter(login_failures::principal.eq(principal))
                .select((
                    login_failures::failures,
                    login_failures::window_start,
                    login_failures::locked_until,
                ))
                .get_result::<(i64, i64, i64)>(conn)
                .optional()?;
            Ok(row.map(|(failures, window_start, locked_until)| LoginFailure {
                failures,
                window_start,
                locked_until,
            }))
        })
    }

    /// Starts a password check of `principal` at `now`: unless the principal is locked (then
    /// `None`, and nothing is counted), the attempt is counted as a failure before the password
    /// is checked, and locks the principal when `max_failures` of its recent failures fall
    /// within one window (a sliding window). A check that succeeds then clears the failures
    /// ([`Store::clear_login_failures`]). Counting before checking, under the principal's row
    /// lock, means that however many guesses arrive at once, on however many nodes, no more
    /// than `max_failures` are checked per window. Returns the state afterwards.
    pub fn begin_login_attempt(
        &self,
        principal: &str,
        now: i64,
        rule: LockoutRule,
    ) -> Result<Option<LoginFailure>, StoreError> {
        self.write(|conn| {
            let mut create = Sql::cached(
                "INSERT INTO login_failures (principal, failures, window_start, locked_until, recent) VALUES (",
            );
            create
                .bind_text(principal)
                .push(", 0, ")
                .bind_i64(now)
                .push(", 0, '') ON CONFLICT (principal) DO NOTHING");
            create.execute(conn)?;
            // Counting first also takes the row lock, so concurrent attempts queue here, and
            // each sees the lock the ones before it set.
            let counted = diesel::update(
                login_failures::table
                    .filter(login_failures::principal.eq(principal))
                    .filter(login_failures::locked_until.le(now)),
            )
            .set(login_failures::failures.eq(login_failures::failures + 1))
            .execute(conn)?;
            if counted == 0 {
                return Ok(None);
            }
            let (failures, locked_until, recent): (i64, i64, String) = login_failures::table
                .filter(login_failures::principal.eq(principal))
                .select((
                    login_failures::failures,
                    login_failures::locked_until,
                    login_failures::recent,
                ))
                .get_result(conn)?;
            let keep = usize::try_from(rule.max_failures.max(1)).unwrap_or(1);
            let mut times: Vec<i64> = recent.split(',').filter_map(|t| t.parse().ok()).collect();
            times.push(now);
            if times.len() > keep {
                times.drain(..times.len() - keep);
            }
            let oldest = times.first().copied().unwrap_or(now);
            let mut state = LoginFailure {
                failures,
                window_start: oldest,
                locked_until,
            };
            if times.len() >= keep && now - oldest <= rule.window_ms && !state.locked_at(now) {
                state.locked_until = now + rule.lock_ms;
                times.clear();
            }
            let recent = times.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
            diesel::update(login_failures::table.filter(login_failures::principal.eq(principal)))
                .set((
                    login_failures::locked_until.eq(state.locked_until),
                    login_failures::window_start.eq(state.window_start),
                    login_failures::recent.eq(recent),
                ))
                .execute(conn)?;
            Ok(Some(state))
        })
    }

    /// Forgets a principal's failures and lock (after a successful login, or an unlock).
    pub fn clear_login_failures(&self, principal: &str) -> Result<(), StoreError> {
        self.write(|conn| {
            diesel::delete(login_failures::table.filter(login_failures::principal.eq(principal))).execute(conn)?;
            Ok(())
        })
    }
}
