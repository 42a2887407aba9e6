//! Managed objects: read, insert, conditional update and delete, each write in one transaction
//! that also rewrites the object's property-index rows and unique values; metadata updates and
//! login counting that do not touch the object's revision.

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{BigInt, Text};
use ferridm_core::{JsonPointer, Object, Revision};
use serde_json::Value;

use crate::connection::DbConnection;
use crate::flatten::{IndexSpec, Limits, PropRow, index_rows, prop_key, unique_values};
use crate::relationships::{RelationshipSet, delete_edges_of, insert_sets, managed_collection, sync_sets};
use crate::schema::objects;
use crate::sql::{Bind, Sql};
use crate::{Store, StoreError};

/// Rows per multi-row INSERT into the property index (7 values each, well below every
/// backend's placeholder limit).
const PROP_ROWS_PER_INSERT: usize = 400;

/// An object as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredObject {
    /// Internal key (creation order).
    pub pk: i64,
    /// The object id.
    pub id: String,
    /// Current revision.
    pub rev: Revision,
    /// Content without `_id`/`_rev`, private properties included.
    pub content: Object,
    /// Metadata (`createDate`, `lastChanged`, `loginCount`, …).
    pub meta: Object,
}

/// What to insert.
#[derive(Debug, Clone, Copy)]
pub struct NewObject<'a> {
    /// The object type (`user`).
    pub object_type: &'a str,
    /// The new id.
    pub id: &'a str,
    /// The content (without `_id`/`_rev`).
    pub content: &'a Object,
    /// Initial metadata (without `loginCount`, which starts at 0).
    pub meta: &'a Object,
    /// Indexing rules of the type.
    pub index: &'a IndexSpec,
}

/// A replacement of an object's content.
#[derive(Debug, Clone, Copy)]
pub struct ObjectUpdate<'a> {
    /// The new content.
    pub content: &'a Object,
    /// New metadata, or `None` to keep it.
    pub meta: Option<&'a Object>,
    /// Indexing rules of the type.
    pub index: &'a IndexSpec,
}

type ObjectColumns = (i64, String, i64, String, String, i64);

/// The columns of `objects o` an object is read from, in [`ObjectColumns`]' order.
pub(crate) const OBJECT_COLUMNS: &str = "o.pk, o.oid, o.rev, o.content, o.meta, o.login_count";
/// The SQL types of [`OBJECT_COLUMNS`].
pub(crate) type ObjectColumnTypes = (BigInt, Text, BigInt, Text, Text, BigInt);

pub(crate) fn object_from_columns(columns: ObjectColumns) -> Result<StoredObject, StoreError> {
    let (pk, id, rev, content, meta, login_count) = columns;
    let content: Object = serde_json::from_str(&content)?;
    let mut meta: Object = serde_json::from_str(&meta)?;
    meta.insert("loginCount".to_owned(), Value::from(login_count));
    Ok(StoredObject {
        pk,
        id,
        rev: Revision::from_i64(rev),
        content,
        meta,
    })
}

fn stored_meta(meta: &Object) -> Result<String, StoreError> {
    let mut meta = meta.clone();
    meta.remove("loginCount");
    Ok(serde_json::to_string(&meta)?)
}

fn nonce() -> u32 {
    rand::random()
}

/// Reads one object by type and id. The statement's text is fixed, so it is prepared once per
/// connection and found again without building SQL.
pub(crate) fn find(conn: &mut DbConnection, object_type: &str, id: &str) -> Result<Option<StoredObject>, StoreError> {
    let mut select = Sql::cached("SELECT ");
    select
        .push(OBJECT_COLUMNS)
        .push(" FROM objects o WHERE o.otype = ")
        .bind_text(object_type)
        .push(" AND o.oid = ")
        .bind_text(id);
    let columns = select
        .typed::<ObjectColumnTypes>()
        .get_result::<ObjectColumns>(conn)
        .optional()?;
    columns.map(object_from_columns).transpose()
}

fn is_unique_violation(error: &DieselError) -> bool {
    matches!(error, DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _))
}

/// Writes the index rows and unique values of `object` (whose `meta` is the stored metadata,
/// login count included) under key `pk`.
pub(crate) fn insert_index(
    conn: &mut DbConnection,
    pk: i64,
    object: &NewObject<'_>,
    limits: Limits,
) -> Result<(), StoreError> {
    let NewObject {
        object_type,
        id,
        content,
        meta,
        index: spec,
    } = *object;
    let rows = index_rows(id, content, meta, spec, limits)?;
    insert_prop_rows(conn, pk, object_type, &rows)?;
    insert_unique_values(conn, pk, object_type, content, spec)
}

/// Writes the unique values of `content` under key `pk`.
fn insert_unique_values(
    conn: &mut DbConnection,
    pk: i64,
    object_type: &str,
    content: &Object,
    spec: &IndexSpec,
) -> Result<(), StoreError> {
    for (property, value) in unique_values(content, spec) {
        let mut insert = Sql::cached("INSERT INTO unique_values (otype, prop, value, obj_pk) VALUES (");
        insert
            .bind_text(object_type)
            .push(", ")
            .bind_text(property.clone())
            .push(", ")
            .bind_text(value)
            .push(", ")
            .bind_i64(pk)
            .push(")");
        match insert.execute(conn) {
            Ok(_) => {}
            Err(error) if is_unique_violation(&error) => return Err(StoreError::UniqueViolation { property }),
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// Most properties one statement of [`update_index`] deletes the rows of.
const POINTERS_PER_DELETE: usize = 8;

/// Rewrites the index of an updated object where it changes: the rows of every value whose
/// pointer leads to a difference from `before` (descending into objects both sides hold, so a
/// new `_meta/lastChanged/date` rewrites that row and not every row of `_meta`), and of the
/// hidden properties (so that a property made private loses its rows on the object's next
/// write); the unique values when a unique property changed. A one-field change rewrites a few
/// rows instead of all of them.
fn update_index(
    conn: &mut DbConnection,
    pk: i64,
    before: &StoredObject,
    after: &NewObject<'_>,
    limits: Limits,
) -> Result<(), StoreError> {
    let spec = after.index;
    let mut pointers: Vec<String> = spec
        .hidden
        .iter()
        .map(|key| prop_key(&JsonPointer::from_segments([key.as_str()])))
        .collect();
    for key in member_keys(&before.content, after.content) {
        if spec.hidden.contains(key) {
            continue;
        }
        changed_pointers(
            &JsonPointer::from_segments([key.as_str()]),
            before.content.get(key),
            after.content.get(key),
            &mut pointers,
        );
    }
    // `_meta` has its own row only when it holds something (see `index_rows`).
    let meta = JsonPointer::from_segments(["_meta"]);
    if before.meta.is_empty() == after.meta.is_empty() {
        changed_members(&meta, &before.meta, after.meta, &mut pointers);
    } else {
        pointers.push(prop_key(&meta));
    }
    let rows = index_rows(after.id, after.content, after.meta, spec, limits)?;
    for chunk in pointers.chunks(POINTERS_PER_DELETE) {
        // Each property's own row and every row below it (`/` sorts just before `0`). The text
        // depends on the chunk length; lengths are bounded by the chunk size.
        let mut delete = Sql::cached("DELETE FROM object_props WHERE obj_pk = ");
        delete.bind_i64(pk).push(" AND (");
        for (index, pointer) in chunk.iter().enumerate() {
            delete
                .push(if index == 0 { "prop = " } else { " OR prop = " })
                .bind_text(pointer.clone())
                .push(" OR (prop > ")
                .bind_text(format!("{pointer}/"))
                .push(" AND prop < ")
                .bind_text(format!("{pointer}0"))
                .push(")");
        }
        delete.push(")");
        delete.execute(conn)?;
    }
    let rewritten: Vec<PropRow> = rows
        .into_iter()
        .filter(|row| {
            pointers.iter().any(|pointer| {
                row.prop
                    .strip_prefix(pointer.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
        })
        .collect();
    insert_prop_rows(conn, pk, after.object_type, &rewritten)?;
    if spec
        .unique
        .iter()
        .any(|property| before.content.get(property) != after.content.get(property))
    {
        let mut unique = Sql::cached("DELETE FROM unique_values WHERE obj_pk = ");
        unique.bind_i64(pk);
        unique.execute(conn)?;
        insert_unique_values(conn, pk, after.object_type, after.content, spec)?;
    }
    Ok(())
}

/// Writes `update` (its content serialized as `content_text`, under revision `rev`) over
/// `current` if the stored object is still at `current`'s revision, with its index and
/// relationships.
fn write_update(
    conn: &mut DbConnection,
    object_type: &str,
    current: &StoredObject,
    (rev, content_text): (Revision, &str),
    update: &ObjectUpdate<'_>,
    relationships: &[RelationshipSet],
) -> Result<StoredObject, StoreError> {
    let target = objects::table
        .filter(objects::pk.eq(current.pk))
        .filter(objects::rev.eq(current.rev.to_i64()));
    let changed = match update.meta {
        Some(meta) => diesel::update(target)
            .set((
                objects::rev.eq(rev.to_i64()),
                objects::content.eq(content_text),
                objects::meta.eq(stored_meta(meta)?),
            ))
            .execute(conn)?,
        None => diesel::update(target)
            .set((objects::rev.eq(rev.to_i64()), objects::content.eq(content_text)))
            .execute(conn)?,
    };
    if changed == 0 {
        return Err(StoreError::RevisionMismatch);
    }
    let mut indexed_meta = update.meta.cloned().unwrap_or_else(|| current.meta.clone());
    indexed_meta.insert(
        "loginCount".to_owned(),
        current.meta.get("loginCount").cloned().unwrap_or(Value::from(0)),
    );
    let indexed = NewObject {
        object_type,
        id: &current.id,
        content: update.content,
        meta: &indexed_meta,
        index: update.index,
    };
    update_index(conn, current.pk, current, &indexed, Limits::Enforced)?;
    sync_sets(conn, &managed_collection(object_type), &current.id, relationships)?;
    Ok(StoredObject {
        pk: current.pk,
        id: current.id.clone(),
        rev,
        content: update.content.clone(),
        meta: indexed_meta,
    })
}

/// Adds to `pointers` the index key of each place where `before` and `after` differ: where
/// both are objects it looks inside them (an object's own row does not depend on its members),
/// anywhere else a difference is the whole value at `pointer`.
fn changed_pointers(pointer: &JsonPointer, before: Option<&Value>, after: Option<&Value>, pointers: &mut Vec<String>) {
    if before == after {
        return;
    }
    if let (Some(Value::Object(old)), Some(Value::Object(new))) = (before, after) {
        changed_members(pointer, old, new, pointers);
        return;
    }
    pointers.push(prop_key(pointer));
}

/// [`changed_pointers`] for each member of the objects `before` and `after` at `pointer`.
fn changed_members(pointer: &JsonPointer, before: &Object, after: &Object, pointers: &mut Vec<String>) {
    for key in member_keys(before, after) {
        changed_pointers(&pointer.child(key.as_str()), before.get(key), after.get(key), pointers);
    }
}

/// The keys of `before`, then those only `after` has: each once, so that a member both hold is
/// compared once (visited twice at every level, a deep change would cost 2^depth).
fn member_keys<'o>(before: &'o Object, after: &'o Object) -> impl Iterator<Item = &'o String> {
    before
        .keys()
        .chain(after.keys().filter(|key| !before.contains_key(key.as_str())))
}

fn insert_prop_rows(conn: &mut DbConnection, pk: i64, object_type: &str, rows: &[PropRow]) -> Result<(), StoreError> {
    for chunk in rows.chunks(PROP_ROWS_PER_INSERT) {
        let mut insert =
            Sql::cached("INSERT INTO object_props (obj_pk, otype, prop, kind, num, str, full_str, sorted) VALUES ");
        // The text depends on the chunk length; lengths are bounded by the chunk size.
        for (index, row) in chunk.iter().enumerate() {
            insert.push(if index == 0 { "(" } else { ", (" });
            insert
                .bind_i64(pk)
                .push(", ")
                .bind_text(object_type)
                .push(", ")
                .bind_text(row.prop.clone())
                .push(", ")
                .bind(Bind::SmallInt(row.kind))
                .push(", ")
                .bind(Bind::Double(row.num))
                .push(", ")
                .bind_text(row.str.clone())
                .push(", ")
                .bind(Bind::NullableText(row.full_str.clone()))
                .push(", ")
                .bind(Bind::SmallInt(i16::from(row.sorted)))
                .push(")");
        }
        insert.execute(conn)?;
    }
    Ok(())
}

/// Rewrites the property index of `current` after a change that keeps its revision (metadata,
/// a re-encoded secret); the limits were checked when the content was written.
pub(crate) fn reindex(
    conn: &mut DbConnection,
    object_type: &str,
    current: &StoredObject,
    index: &IndexSpec,
) -> Result<(), StoreError> {
    delete_index(conn, current.pk)?;
    let indexed = NewObject {
        object_type,
        id: &current.id,
        content: &current.content,
        meta: &current.meta,
        index,
    };
    insert_index(conn, current.pk, &indexed, Limits::Waived)
}

pub(crate) fn delete_index(conn: &mut DbConnection, pk: i64) -> Result<(), StoreError> {
    let mut props = Sql::cached("DELETE FROM object_props WHERE obj_pk = ");
    props.bind_i64(pk);
    props.execute(conn)?;
    let mut unique = Sql::cached("DELETE FROM unique_values WHERE obj_pk = ");
    unique.bind_i64(pk);
    unique.execute(conn)?;
    Ok(())
}

impl Store {
    /// Reads one object.
    pub fn get(&self, object_type: &str, id: &str) -> Result<Option<StoredObject>, StoreError> {
        self.read(|conn| find(conn, object_type, id))
    }

    /// Reads the objects `ids` of `object_type` that exist, in one statement (in no particular
    /// order).
    pub fn get_many(&self, object_type: &str, ids: &[&str]) -> Result<Vec<StoredObject>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut select = if ids.len() <= 64 {
            Sql::cached("SELECT ")
        } else {
            Sql::uncached("SELECT ")
        };
        select
            .push(OBJECT_COLUMNS)
            .push(" FROM objects o WHERE o.otype = ")
            .bind_text(object_type)
            .push(" AND o.oid IN (");
        for (index, id) in ids.iter().enumerate() {
            if index > 0 {
                select.push(", ");
            }
            select.bind_text(*id);
        }
        select.push(")");
        let rows = self.read(|conn| Ok(select.typed::<ObjectColumnTypes>().load::<ObjectColumns>(conn)?))?;
        rows.into_iter().map(object_from_columns).collect()
    }

    /// Inserts a new object. An existing id → [`StoreError::AlreadyExists`]; a taken unique
    /// value → [`StoreError::UniqueViolation`]; nothing is stored in either case.
    pub fn insert(&self, new: NewObject<'_>) -> Result<StoredObject, StoreError> {
        self.insert_related(new, &[])
    }

    /// [`Store::insert`] with the object's relationships, written in the same transaction.
    pub fn insert_related(
        &self,
        new: NewObject<'_>,
        relationships: &[RelationshipSet],
    ) -> Result<StoredObject, StoreError> {
        let rev = Revision::initial(nonce());
        let content_text = serde_json::to_string(new.content)?;
        let meta_text = stored_meta(new.meta)?;
        let mut meta = new.meta.clone();
        meta.insert("loginCount".to_owned(), Value::from(0));
        let pk = self.write(|conn| {
            let inserted = diesel::insert_into(objects::table)
                .values((
                    objects::otype.eq(new.object_type),
                    objects::oid.eq(new.id),
                    objects::rev.eq(rev.to_i64()),
                    objects::content.eq(&content_text),
                    objects::meta.eq(&meta_text),
                ))
                .returning(objects::pk)
                .get_result::<i64>(conn);
            let pk = match inserted {
                Ok(pk) => pk,
                Err(error) if is_unique_violation(&error) => return Err(StoreError::AlreadyExists),
                Err(error) => return Err(error.into()),
            };
            insert_index(conn, pk, &NewObject { meta: &meta, ..new }, Limits::Enforced)?;
            insert_sets(conn, &managed_collection(new.object_type), new.id, relationships)?;
            Ok(pk)
        })?;
        Ok(StoredObject {
            pk,
            id: new.id.to_owned(),
            rev,
            content: new.content.clone(),
            meta,
        })
    }

    /// Inserts many new objects in one transaction (bulk loading); all or nothing.
    pub fn insert_many(&self, objects: &[NewObject<'_>]) -> Result<usize, StoreError> {
        let prepared: Vec<(Revision, String, String, Object)> = objects
            .iter()
            .map(|new| {
                let mut meta = new.meta.clone();
                meta.insert("loginCount".to_owned(), Value::from(0));
                Ok((
                    Revision::initial(nonce()),
                    serde_json::to_string(new.content)?,
                    stored_meta(new.meta)?,
                    meta,
                ))
            })
            .collect::<Result<_, StoreError>>()?;
        self.write(|conn| {
            for (new, (rev, content, meta_text, meta)) in objects.iter().zip(&prepared) {
                let inserted = diesel::insert_into(objects::table)
                    .values((
                        objects::otype.eq(new.object_type),
                        objects::oid.eq(new.id),
                        objects::rev.eq(rev.to_i64()),
                        objects::content.eq(content),
                        objects::meta.eq(meta_text),
                    ))
                    .returning(objects::pk)
                    .get_result::<i64>(conn);
                let pk = match inserted {
                    Ok(pk) => pk,
                    Err(error) if is_unique_violation(&error) => return Err(StoreError::AlreadyExists),
                    Err(error) => return Err(error.into()),
                };
                insert_index(conn, pk, &NewObject { meta, ..*new }, Limits::Enforced)?;
            }
            Ok(objects.len())
        })
    }

    /// Replaces an object's content if its revision is still `expected`; the revision moves on.
    pub fn update(
        &self,
        object_type: &str,
        id: &str,
        expected: Revision,
        update: ObjectUpdate<'_>,
    ) -> Result<StoredObject, StoreError> {
        self.update_related(object_type, id, expected, update, &[])
    }

    /// [`Store::update`] that also makes the object's relationships those of `relationships`
    /// (properties not named keep their edges), in the same transaction.
    pub fn update_related(
        &self,
        object_type: &str,
        id: &str,
        expected: Revision,
        update: ObjectUpdate<'_>,
        relationships: &[RelationshipSet],
    ) -> Result<StoredObject, StoreError> {
        let rev = expected.next(nonce());
        let content_text = serde_json::to_string(update.content)?;
        self.write(|conn| {
            let current = find(conn, object_type, id)?.ok_or(StoreError::NotFound)?;
            if current.rev != expected {
                return Err(StoreError::RevisionMismatch);
            }
            write_update(
                conn,
                object_type,
                &current,
                (rev, &content_text),
                &update,
                relationships,
            )
        })
    }

    /// [`Store::update_related`] of `current`, the object as the caller read it: the write
    /// succeeds only while the object is still at `current`'s revision (else
    /// [`StoreError::RevisionMismatch`], also when it is gone), and does not read it again.
    /// Metadata is written only when `update` brings new metadata, so a change of metadata or
    /// login count made since `current` was read (neither moves the revision) is kept.
    pub fn update_read(
        &self,
        object_type: &str,
        current: &StoredObject,
        update: ObjectUpdate<'_>,
        relationships: &[RelationshipSet],
    ) -> Result<StoredObject, StoreError> {
        let rev = current.rev.next(nonce());
        let content_text = serde_json::to_string(update.content)?;
        self.write(|conn| write_update(conn, object_type, current, (rev, &content_text), &update, relationships))
    }

    /// Deletes an object if its revision is still `expected`, with every edge it is an end of;
    /// returns it as it was.
    pub fn delete(&self, object_type: &str, id: &str, expected: Revision) -> Result<StoredObject, StoreError> {
        self.write(|conn| {
            let current = find(conn, object_type, id)?.ok_or(StoreError::NotFound)?;
            if current.rev != expected {
                return Err(StoreError::RevisionMismatch);
            }
            // The revision is part of the condition: of concurrent deleters that all read the
            // object, the database lets exactly one delete it (PostgreSQL re-checks the row
            // after the winner commits and finds nothing).
            let deleted = diesel::delete(
                objects::table
                    .filter(objects::pk.eq(current.pk))
                    .filter(objects::rev.eq(expected.to_i64())),
            )
            .execute(conn)?;
            if deleted == 0 {
                return Err(StoreError::RevisionMismatch);
            }
            delete_index(conn, current.pk)?;
            delete_edges_of(conn, &managed_collection(object_type), id)?;
            Ok(current)
        })
    }

    /// Adds one to an object's login count (atomically, for every node); returns the new count.
    pub fn increment_login_count(&self, object_type: &str, id: &str) -> Result<i64, StoreError> {
        self.write(|conn| {
            let updated = diesel::update(
                objects::table
                    .filter(objects::otype.eq(object_type))
                    .filter(objects::oid.eq(id)),
            )
            .set(objects::login_count.eq(objects::login_count + 1))
            .returning((objects::pk, objects::login_count))
            .get_result::<(i64, i64)>(conn)
            .optional()?;
            let (pk, count) = updated.ok_or(StoreError::NotFound)?;
            #[expect(clippy::cast_precision_loss, reason = "login counts stay far below 2^53")]
            let count_as_number = count as f64;
            let mut index = Sql::cached("UPDATE object_props SET num = ");
            index
                .bind(Bind::Double(count_as_number))
                .push(" WHERE obj_pk = ")
                .bind_i64(pk)
                .push(" AND prop = '/_meta/loginCount'");
            index.execute(conn)?;
            Ok(count)
        })
    }

    /// Changes an object's metadata (not its content or revision) with `change`, atomically.
    pub fn update_meta(
        &self,
        object_type: &str,
        id: &str,
        index: &IndexSpec,
        change: impl FnOnce(&mut Object),
    ) -> Result<StoredObject, StoreError> {
        self.write(|conn| {
            // Touch the row first so concurrent metadata writers on PostgreSQL queue here.
            let touched = diesel::update(
                objects::table
                    .filter(objects::otype.eq(object_type))
                    .filter(objects::oid.eq(id)),
            )
            .set(objects::meta_rev.eq(objects::meta_rev + 1))
            .execute(conn)?;
            if touched == 0 {
                return Err(StoreError::NotFound);
            }
            let mut current = find(conn, object_type, id)?.ok_or(StoreError::NotFound)?;
            change(&mut current.meta);
            diesel::update(objects::table.filter(objects::pk.eq(current.pk)))
                .set(objects::meta.eq(stored_meta(&current.meta)?))
                .execute(conn)?;
            reindex(conn, object_type, &current, index)?;
            Ok(current)
        })
    }
}
