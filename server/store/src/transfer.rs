//! Moving whole data sets in and out: a consistent read-only snapshot of every object, read page
//! by page (export), and restoring objects with the ids, revisions and metadata they had, a
//! batch per transaction, with the import's checkpoint recorded in the same transaction.

use std::collections::BTreeMap;

use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::prelude::*;
use ferridm_core::{Object, Revision};
use serde_json::Value;

use crate::connection::DbConnection;
use crate::flatten::{IndexSpec, Limits, unique_values};
use crate::objects::{NewObject, StoredObject, find, insert_index, object_from_columns};
use crate::relationships::{Edge, RelationshipSet, all_edges_of, managed_collection, sync_sets};
use crate::schema::{objects, store_settings};
use crate::settings::upsert_setting;
use crate::sql::Sql;
use crate::{Store, StoreError};

/// An object read from a snapshot, with its type.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotObject {
    /// The object type (`user`).
    pub object_type: String,
    /// The object as stored (its metadata includes `loginCount`).
    pub object: StoredObject,
}

/// One read-only view of the database as it was when the snapshot began; writers carry on.
pub struct Snapshot<'a> {
    conn: &'a mut DbConnection,
}

impl std::fmt::Debug for Snapshot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").finish_non_exhaustive()
    }
}

impl Snapshot<'_> {
    /// How many objects of each type the snapshot holds.
    pub fn counts(&mut self) -> Result<BTreeMap<String, i64>, StoreError> {
        let rows = objects::table
            .group_by(objects::otype)
            .select((objects::otype, diesel::dsl::count_star()))
            .load::<(String, i64)>(self.conn)?;
        Ok(rows.into_iter().collect())
    }

    /// Every edge the objects `ids` of type `object_type` hold, under any of their properties.
    pub fn edges_of(&mut self, object_type: &str, ids: &[&str]) -> Result<Vec<Edge>, StoreError> {
        all_edges_of(self.conn, &managed_collection(object_type), ids)
    }

    /// Up to `limit` objects (of every type) with an internal key above `after`, in key order;
    /// the last one's [`StoredObject::pk`] is the next call's `after`.
    #[expect(
        clippy::disallowed_methods,
        reason = "one statement per page of thousands of objects: preparing it again costs nothing"
    )]
    pub fn objects_after(&mut self, after: i64, limit: i64) -> Result<Vec<SnapshotObject>, StoreError> {
        let rows = objects::table
            .filter(objects::pk.gt(after))
            .order(objects::pk.asc())
            .limit(limit)
            .select((
                objects::otype,
                (
                    objects::pk,
                    objects::oid,
                    objects::rev,
                    objects::content,
                    objects::meta,
                    objects::login_count,
                ),
            ))
            .load::<(String, (i64, String, i64, String, String, i64))>(self.conn)?;
        rows.into_iter()
            .map(|(object_type, columns)| {
                Ok(SnapshotObject {
                    object_type,
                    object: object_from_columns(columns)?,
                })
            })
            .collect()
    }
}

/// An object to restore exactly as it was exported.
#[derive(Debug, Clone, Copy)]
pub struct RestoredObject<'a> {
    /// The object type.
    pub object_type: &'a str,
    /// Its id.
    pub id: &'a str,
    /// Its revision.
    pub rev: Revision,
    /// Its content (without `_id`/`_rev`/`_meta`).
    pub content: &'a Object,
    /// Its metadata; `loginCount` in it is restored too.
    pub meta: &'a Object,
    /// Indexing rules of the type.
    pub index: &'a IndexSpec,
    /// Its relationships: the edges each property holds (an edge listed by both of its
    /// objects is stored once).
    pub relationships: &'a [RelationshipSet],
}

/// Why an object cannot be restored next to what is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreConflict {
    /// An object of the type with this id exists.
    IdExists,
    /// A stored object of the type already holds this unique property's value.
    UniqueValue {
        /// The unique property.
        property: String,
    },
}

/// The unique-property values of `content` as the uniqueness index keys them (equal keys
/// collide), so an import can find duplicates within its own input.
pub fn unique_keys(content: &Object, index: &IndexSpec) -> Vec<(String, String)> {
    unique_values(content, index)
}

impl Store {
    /// Runs `work` in one read-only snapshot: a WAL read transaction on SQLite, a
    /// `REPEATABLE READ, READ ONLY` transaction on PostgreSQL. Writers on other connections
    /// (this process's or another server's) are not held up, and `work` sees none of their
    /// changes.
    pub fn snapshot<T, E: From<StoreError>>(
        &self,
        work: impl FnOnce(&mut Snapshot<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut pooled = self.connection()?;
        let conn: &mut DbConnection = &mut pooled;
        let begin = match conn {
            DbConnection::Sqlite(sqlite) => AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN DEFERRED"),
            DbConnection::Postgres(postgres) => AnsiTransactionManager::begin_transaction_sql(
                postgres,
                "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            ),
        };
        begin.map_err(StoreError::from)?;
        let outcome = work(&mut Snapshot { conn });
        // Nothing was written: ending the transaction either way releases the snapshot.
        let ended = <DbConnection as Connection>::TransactionManager::rollback_transaction(conn);
        let value = outcome?;
        ended.map_err(StoreError::from)?;
        Ok(value)
    }

    /// What keeps `object` from being restored next to the stored objects, if anything.
    pub fn restore_conflict(
        &self,
        object_type: &str,
        id: &str,
        content: &Object,
        index: &IndexSpec,
    ) -> Result<Option<RestoreConflict>, StoreError> {
        self.read(|conn| {
            if find(conn, object_type, id)?.is_some() {
                return Ok(Some(RestoreConflict::IdExists));
            }
            for (property, value) in unique_values(content, index) {
                let mut taken = Sql::cached("SELECT COUNT(*) FROM unique_values WHERE otype = ");
                taken
                    .bind_text(object_type)
                    .push(" AND prop = ")
                    .bind_text(property.clone())
                    .push(" AND value = ")
                    .bind_text(value);
                let count = taken.typed::<diesel::sql_types::BigInt>().get_result::<i64>(conn)?;
                if count > 0 {
                    return Ok(Some(RestoreConflict::UniqueValue { property }));
                }
            }
            Ok(None)
        })
    }

    /// Restores `batch` in one transaction, each object with its id, revision and metadata,
    /// and records `checkpoint` (a name and value, as [`Store::setting`] reads them) in the same
    /// transaction: either all of it is stored or none. An existing id →
    /// [`StoreError::AlreadyExists`]; a taken unique value → [`StoreError::UniqueViolation`].
    pub fn restore_batch(
        &self,
        batch: &[RestoredObject<'_>],
        checkpoint: Option<(&str, &str)>,
    ) -> Result<usize, StoreError> {
        let prepared = batch
            .iter()
            .map(|object| {
                let mut meta = object.meta.clone();
                let login_count = meta.remove("loginCount").and_then(|count| count.as_i64()).unwrap_or(0);
                let meta_text = serde_json::to_string(&meta)?;
                meta.insert("loginCount".to_owned(), Value::from(login_count));
                Ok((serde_json::to_string(object.content)?, meta_text, meta, login_count))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.write(|conn| {
            for (object, (content, meta_text, meta, login_count)) in batch.iter().zip(&prepared) {
                let inserted = diesel::insert_into(objects::table)
                    .values((
                        objects::otype.eq(object.object_type),
                        objects::oid.eq(object.id),
                        objects::rev.eq(object.rev.to_i64()),
                        objects::content.eq(content),
                        objects::meta.eq(meta_text),
                        objects::login_count.eq(login_count),
                    ))
                    .returning(objects::pk)
                    .get_result::<i64>(conn);
                let pk = match inserted {
                    Ok(pk) => pk,
                    Err(diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::UniqueViolation,
                        _,
                    )) => {
                        return Err(StoreError::AlreadyExists);
                    }
                    Err(error) => return Err(error.into()),
                };
                let indexed = NewObject {
                    object_type: object.object_type,
                    id: object.id,
                    content: object.content,
                    meta,
                    index: object.index,
                };
                insert_index(conn, pk, &indexed, Limits::Waived)?;
                sync_sets(
                    conn,
                    &managed_collection(object.object_type),
                    object.id,
                    object.relationships,
                )?;
            }
            if let Some((name, value)) = checkpoint {
                upsert_setting(conn, name, value)?;
            }
            Ok(batch.len())
        })
    }

    /// Forgets a named value (an import's finished checkpoint).
    pub fn remove_setting(&self, name: &str) -> Result<(), StoreError> {
        self.write(|conn| {
            diesel::delete(store_settings::table.filter(store_settings::name.eq(name))).execute(conn)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;
    use crate::testing::TestDatabase;

    fn spec() -> IndexSpec {
        IndexSpec {
            hidden: vec!["password".into()],
            unique: vec!["userName".into()],
            ..IndexSpec::default()
        }
    }

    fn object(json: Value) -> Object {
        json.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_snapshot_sees_nothing_written_after_it_began_and_restores_keep_revisions() {
        for database in TestDatabase::all() {
            let store = Store::open(database.url(), &StoreOptions::default()).unwrap();
            let spec = spec();
            let content = object(serde_json::json!({"userName": "a"}));
            let meta = object(serde_json::json!({"createDate": "2026-01-01T00:00:00Z", "loginCount": 7}));
            let rev = Revision::from_i64(0x0000_0005_0000_000a);
            let restored = RestoredObject {
                object_type: "user",
                id: "a",
                rev,
                content: &content,
                meta: &meta,
                index: &spec,
                relationships: &[],
            };
            store.restore_batch(&[restored], Some(("import:test", "1"))).unwrap();
            assert_eq!(store.setting("import:test").unwrap().as_deref(), Some("1"));
            let (counts, late) = store
                .snapshot(|snapshot| {
                    let counts = snapshot.counts()?;
                    let later = object(serde_json::json!({"userName": "b"}));
                    let late = RestoredObject {
                        id: "b",
                        content: &later,
                        ..restored
                    };
                    store.restore_batch(&[late], None)?;
                    let seen = snapshot.objects_after(0, 10)?;
                    Ok::<_, StoreError>((counts, seen))
                })
                .unwrap();
            assert_eq!(counts.get("user"), Some(&1));
            assert_eq!(late.len(), 1, "the snapshot does not see b");
            assert_eq!(late[0].object.rev, rev);
            assert_eq!(late[0].object.meta.get("loginCount"), Some(&Value::from(7)));
            assert_eq!(
                store.restore_conflict("user", "a", &content, &spec).unwrap(),
                Some(RestoreConflict::IdExists)
            );
            assert_eq!(
                store.restore_conflict("user", "c", &content, &spec).unwrap(),
                Some(RestoreConflict::UniqueValue {
                    property: "userName".into()
                })
            );
            assert!(matches!(
                store.restore_batch(&[restored], None),
                Err(StoreError::AlreadyExists)
            ));
            store.remove_setting("import:test").unwrap();
            assert_eq!(store.setting("import:test").unwrap(), None);
        }
    }
}
