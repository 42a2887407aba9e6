//! Small pieces of state every node must agree on: which token of a self-service flow is still
//! valid, fixed-window request counters, and each account's session epoch. Each change is one
//! short write transaction with the same SQL on SQLite and PostgreSQL.

use diesel::prelude::*;

use crate::schema::{rate_counters, selfservice_flows, session_epochs};
use crate::sql::Sql;
use crate::{Store, StoreError};

/// A request budget: at most `limit` hits per window of `window_ms` milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Hits allowed per window.
    pub limit: i64,
    /// The window's length in milliseconds.
    pub window_ms: i64,
}

impl Store {
    /// Records that the flow's valid token is now the one carrying `step` (until `expires`,
    /// seconds); a flow's first step also forgets the flows that expired before `now`.
    pub fn record_flow_step(&self, flow: &str, step: i64, expires: i64, now: i64) -> Result<(), StoreError> {
        self.write(|conn| {
            if step == 1 {
                diesel::delete(selfservice_flows::table.filter(selfservice_flows::expires.lt(now))).execute(conn)?;
            }
            let mut upsert = Sql::cached("INSERT INTO selfservice_flows (flow, step, expires) VALUES (");
            upsert
                .bind_text(flow)
                .push(", ")
                .bind_i64(step)
                .push(", ")
                .bind_i64(expires)
                .push(") ON CONFLICT (flow) DO UPDATE SET step = excluded.step, expires = excluded.expires");
            upsert.execute(conn)?;
            Ok(())
        })
    }

    /// Claims the token carrying `step` of `flow`: true for exactly one caller while that token
    /// is the flow's valid one; false once it was used (or superseded, or the flow expired).
    pub fn claim_flow_step(&self, flow: &str, step: i64) -> Result<bool, StoreError> {
        self.write(|conn| {
            let claimed = diesel::update(
                selfservice_flows::table
                    .filter(selfservice_flows::flow.eq(flow))
                    .filter(selfservice_flows::step.eq(step)),
            )
            .set(selfservice_flows::step.eq(step + 1))
            .execute(conn)?;
            Ok(claimed == 1)
        })
    }

    /// Gives back a claim whose request failed, so the same token can be submitted again.
    pub fn release_flow_step(&self, flow: &str, step: i64) -> Result<(), StoreError> {
        self.write(|conn| {
            diesel::update(
                selfservice_flows::table
                    .filter(selfservice_flows::flow.eq(flow))
                    .filter(selfservice_flows::step.eq(step + 1)),
            )
            .set(selfservice_flows::step.eq(step))
            .execute(conn)?;
            Ok(())
        })
    }

    /// Counts one hit on `bucket` at `now` (milliseconds) in fixed windows; true while the
    /// hits of the current window stay within the limit.
    pub fn hit_rate_limit(&self, bucket: &str, now: i64, rule: RateLimit) -> Result<bool, StoreError> {
        self.write(|conn| {
            let mut create = Sql::cached("INSERT INTO rate_counters (bucket, window_start, hits) VALUES (");
            create
                .bind_text(bucket)
                .push(", ")
                .bind_i64(now)
                .push(", 0) ON CONFLICT (bucket) DO NOTHING");
            create.execute(conn)?;
            let (window_start, hits): (i64, i64) = rate_counters::table
                .filter(rate_counters::bucket.eq(bucket))
                .select((rate_counters::window_start, rate_counters::hits))
                .get_result(conn)?;
            let (window_start, hits) = if now - window_start >= rule.window_ms {
                (now, 1)
            } else {
                (window_start, hits + 1)
            };
            diesel::update(rate_counters::table.filter(rate_counters::bucket.eq(bucket)))
                .set((
                    rate_counters::window_start.eq(window_start),
                    rate_counters::hits.eq(hits),
                ))
                .execute(conn)?;
            Ok(hits <= rule.limit)
        })
    }

    /// The session epoch of `principal` (0 until it first moves).
    pub fn session_epoch(&self, principal: &str) -> Result<i64, StoreError> {
        self.read(|conn| {
            Ok(session_epochs::table
                .filter(session_epochs::principal.eq(principal))
                .select(session_epochs::epoch)
                .get_result::<i64>(conn)
                .optional()?
                .unwrap_or(0))
        })
    }

    /// Moves the session epoch of `principal` on, ending every session started before; returns
    /// the new epoch.
    pub fn advance_session_epoch(&self, principal: &str) -> Result<i64, StoreError> {
        self.write(|conn| {
            let mut upsert = Sql::cached("INSERT INTO session_epochs (principal, epoch) VALUES (");
            upsert
                .bind_text(principal)
                .push(", 1) ON CONFLICT (principal) DO UPDATE SET epoch = session_epochs.epoch + 1");
            upsert.execute(conn)?;
            Ok(session_epochs::table
                .filter(session_epochs::principal.eq(principal))
                .select(session_epochs::epoch)
                .get_result::<i64>(conn)?)
        })
    }
}
