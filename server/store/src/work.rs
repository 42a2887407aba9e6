//! Leases on work that must run once across the nodes of a database (`work_leases`): one node
//! claims a job, records its progress as it goes and renews the lease with it; when the holder
//! stops renewing, the lease expires and another node resumes from the recorded progress.

use diesel::sql_types::{BigInt, Text};
use diesel::{OptionalExtension, RunQueryDsl};

use crate::sql::Sql;
use crate::{Store, StoreError};

/// A claimed job: where to resume (`None`: from the start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkLease {
    /// The progress the previous holder recorded for the same target.
    pub progress: Option<String>,
    /// How many items were done before it.
    pub done: i64,
}

/// A job in progress as the database records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkRecord {
    /// The job's name.
    pub job: String,
    /// What it works towards (e.g. the rule being applied).
    pub target: String,
    /// The node holding its lease.
    pub holder: String,
    /// When the lease runs out (milliseconds since the epoch).
    pub expires: i64,
    /// How many items are done.
    pub done: i64,
}

impl Store {
    /// Claims `job` (towards `target`, e.g. the rule being applied) for `holder` until
    /// `expires`, unless another holder's lease is still running at `now`. Progress recorded
    /// for another target is dropped.
    pub fn claim_work(
        &self,
        job: &str,
        target: &str,
        holder: &str,
        now: i64,
        expires: i64,
    ) -> Result<Option<WorkLease>, StoreError> {
        self.write(|conn| {
            let mut insert = Sql::cached("INSERT INTO work_leases (job, target, holder, expires) VALUES (");
            insert
                .bind_text(job)
                .push(", ")
                .bind_text(target)
                .push(", ")
                .bind_text(holder)
                .push(", ")
                .bind_i64(expires)
                .push(") ON CONFLICT (job) DO NOTHING");
            if insert.execute(conn)? == 1 {
                return Ok(Some(WorkLease {
                    progress: None,
                    done: 0,
                }));
            }
            let mut take = Sql::cached("UPDATE work_leases SET progress = CASE WHEN target = ");
            take.bind_text(target)
                .push(" THEN progress ELSE '' END, done = CASE WHEN target = ")
                .bind_text(target)
                .push(" THEN done ELSE 0 END, target = ")
                .bind_text(target)
                .push(", holder = ")
                .bind_text(holder)
                .push(", expires = ")
                .bind_i64(expires)
                .push(" WHERE job = ")
                .bind_text(job)
                .push(" AND (expires < ")
                .bind_i64(now)
                .push(" OR holder = ")
                .bind_text(holder)
                .push(") RETURNING progress, done");
            let taken: Option<(String, i64)> = take.typed::<(Text, BigInt)>().get_result(conn).optional()?;
            Ok(taken.map(|(progress, done)| WorkLease {
                progress: Some(progress).filter(|progress| !progress.is_empty()),
                done,
            }))
        })
    }

    /// Records `holder`'s progress on `job` (where to resume, and how many items are done) and
    /// extends its lease to `expires`; false when the lease is no longer `holder`'s (it expired
    /// and another node took it).
    pub fn record_work_progress(
        &self,
        job: &str,
        holder: &str,
        progress: (&str, i64),
        expires: i64,
    ) -> Result<bool, StoreError> {
        let mut renew = Sql::cached("UPDATE work_leases SET progress = ");
        renew
            .bind_text(progress.0)
            .push(", done = ")
            .bind_i64(progress.1)
            .push(", expires = ")
            .bind_i64(expires)
            .push(" WHERE job = ")
            .bind_text(job)
            .push(" AND holder = ")
            .bind_text(holder);
        Ok(self.write(|conn| Ok((&renew).execute(conn)?))? == 1)
    }

    /// Ends `holder`'s lease on a finished `job`.
    pub fn finish_work(&self, job: &str, holder: &str) -> Result<(), StoreError> {
        let mut finish = Sql::cached("DELETE FROM work_leases WHERE job = ");
        finish.bind_text(job).push(" AND holder = ").bind_text(holder);
        self.write(|conn| Ok((&finish).execute(conn)?)).map(drop)
    }
}

impl Store {
    /// Every job in progress, by name.
    pub fn work_in_progress(&self) -> Result<Vec<WorkRecord>, StoreError> {
        let sql = Sql::cached("SELECT job, target, holder, expires, done FROM work_leases ORDER BY job");
        let rows: Vec<(String, String, String, i64, i64)> =
            self.read(|conn| Ok(sql.typed::<(Text, Text, Text, BigInt, BigInt)>().load(conn)?))?;
        Ok(rows
            .into_iter()
            .map(|(job, target, holder, expires, done)| WorkRecord {
                job,
                target,
                holder,
                expires,
                done,
            })
            .collect())
    }
}
