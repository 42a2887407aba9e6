//! Which top-level properties the property index holds complete rows for, per type: its
//! coverage, recorded in `store_settings` under `index-coverage/<type>`. No record means every
//! property (every write indexed everything before the index followed the schema, and a type
//! without objects is covered by any rule).
//!
//! A query reads from the index only the properties that both the type's current
//! [`IndexSpec::indexed`] and the coverage hold (`query.rs`); filters and sort keys on any other
//! property are answered by reading the objects. When a configuration indexes a property the
//! coverage lacks, [`Store::reindex_page`] rewrites the rows of every object, a page at a time,
//! and the caller records the new coverage once all are done.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use diesel::RunQueryDsl;

use crate::connection::DbConnection;
use crate::flatten::{IndexSpec, Indexed};
use crate::objects::{OBJECT_COLUMNS, reindex};
use crate::query::load;
use crate::sql::Sql;
use crate::{Store, StoreError};

/// The coverage of each type as this store last read or recorded it.
#[derive(Debug, Default)]
pub(crate) struct CoverageCache {
    known: RwLock<HashMap<String, Arc<Indexed>>>,
}

fn setting_name(object_type: &str) -> String {
    format!("index-coverage/{object_type}")
}

impl Store {
    /// The properties of `object_type` whose index rows are complete for every object (read
    /// once, then remembered until [`Store::forget_index_coverage`]).
    pub fn index_coverage(&self, object_type: &str) -> Result<Arc<Indexed>, StoreError> {
        let cached = self
            .coverage
            .known
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(object_type)
            .cloned();
        if let Some(indexed) = cached {
            return Ok(indexed);
        }
        let indexed = Arc::new(match self.setting(&setting_name(object_type))? {
            Some(text) => serde_json::from_str(&text)?,
            None => Indexed::All,
        });
        self.coverage
            .known
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(object_type.to_owned(), Arc::clone(&indexed));
        Ok(indexed)
    }

    /// Records that the index rows of `indexed` are complete for every object of `object_type`,
    /// if the coverage recorded is still `expected` (a rule applied meanwhile changed it, and the
    /// rows it stopped maintaining are not complete); whether it was recorded.
    pub fn replace_index_coverage(
        &self,
        object_type: &str,
        expected: &Indexed,
        indexed: &Indexed,
    ) -> Result<bool, StoreError> {
        let name = setting_name(object_type);
        let (expected_text, text) = (serde_json::to_string(expected)?, serde_json::to_string(indexed)?);
        let replaced = self.write(|conn| {
            // No record is every property's coverage.
            if *expected == Indexed::All {
                let mut insert = Sql::cached("INSERT INTO store_settings (name, value) VALUES (");
                insert
                    .bind_text(name.as_str())
                    .push(", ")
                    .bind_text(text.as_str())
                    .push(") ON CONFLICT (name) DO NOTHING");
                if insert.execute(conn)? == 1 {
                    return Ok(true);
                }
            }
            let mut update = Sql::cached("UPDATE store_settings SET value = ");
            update
                .bind_text(text.as_str())
                .push(" WHERE name = ")
                .bind_text(name.as_str())
                .push(" AND value = ")
                .bind_text(expected_text.as_str());
            Ok(update.execute(conn)? == 1)
        })?;
        self.forget_index_coverage();
        Ok(replaced)
    }

    /// Forgets the coverage read so far, so that the next query reads what another node may
    /// have recorded since.
    pub fn forget_index_coverage(&self) {
        self.coverage
            .known
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Rewrites, as `spec` asks, the index rows of at most `page` objects of `object_type` with
    /// a key greater than `after`, in one transaction; the number rewritten and the last key
    /// (`None` once no object is left).
    pub fn reindex_page(
        &self,
        object_type: &str,
        spec: &IndexSpec,
        after: i64,
        page: u32,
    ) -> Result<Option<(usize, i64)>, StoreError> {
        self.write(|conn| {
            let mut select = Sql::cached("SELECT ");
            select
                .push(OBJECT_COLUMNS)
                .push(" FROM objects o WHERE o.otype = ")
                .bind_text(object_type)
                .push(" AND o.pk > ")
                .bind_i64(after)
                .push(" ORDER BY o.pk");
            select.push_limit(u64::from(page), 0);
            if matches!(conn, DbConnection::Postgres(_)) {
                // Locked, so that an object deleted meanwhile is either skipped here or waits:
                // its index rows are not written again after its delete removed them.
                select.push(" FOR UPDATE OF o");
            }
            let objects = load(conn, select)?;
            for object in &objects {
                reindex(conn, object_type, object, spec)?;
            }
            Ok(objects.last().map(|last| (objects.len(), last.pk)))
        })
    }
}
