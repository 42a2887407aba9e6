//! Managed objects: read, insert, conditional update and delete, each write in one transaction
//! that also rewrites the object's property-index rows and unique values; metadata updates and
//! login counting that do not touch the object's revision.

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{BigInt, Text};
use ferridm_core::{JsonPointer, Object, Revision};
use serde_json::Value;

use crate::connection::{Backend, DbConnection, rows_per_insert};
use crate::flatten::{IndexSpec, Limits, PropRow, index_rows, prop_key, unique_values};
use crate::relationships::{
    Edge, EdgeKey, RelationshipSet, delete_edges_of, edges_insert_alone, insert_sets, managed_collection, new_edges,
    push_edge_values, select_edges, set_targets, sync_sets,
};
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

/// Most index rows a cached statement of [`write_in_one_statement`] writes.
const CACHED_ROWS: usize = 16;
/// Most index rows a cached statement of [`insert_in_one_statement`] writes (a new object
/// holds all of its values, a few dozen for a typical user).
const CACHED_CREATE_ROWS: usize = 64;

/// Most properties one statement of [`update_index`] deletes the rows of.
const POINTERS_PER_DELETE: usize = 8;

/// How an update changes the index of an object: the rows of every value whose pointer leads
/// to a difference from `before` (descending into objects both sides hold, so a new
/// `_meta/lastChanged/date` rewrites that row and not every row of `_meta`) and of the hidden
/// properties (so that a property made private loses its rows on the object's next write) are
/// rewritten; the unique values when a unique property changed. A one-field change rewrites a
/// few rows instead of all of them.
struct IndexChange {
    /// The pointers whose rows (their own and those below them) are deleted.
    pointers: Vec<String>,
    /// The rows written again under those pointers.
    rows: Vec<PropRow>,
    /// Whether the unique values are written again.
    unique_changed: bool,
}

impl IndexChange {
    fn of(before: &StoredObject, after: &NewObject<'_>, limits: Limits) -> Result<Self, StoreError> {
        let spec = after.index;
        let mut pointers: Vec<String> = spec
            .hidden
            .iter()
            .map(|key| prop_key(&JsonPointer::from_segments([key.as_str()])))
            .collect();
        // Rows a property the index no longer holds kept from before are the coverage's concern
        // (`coverage.rs`): queries do not read them, and a reindex removes them.
        for key in member_keys(&before.content, after.content) {
            if spec.hidden.contains(key) || !spec.indexed.holds(key) {
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
        let rows = index_rows(after.id, after.content, after.meta, spec, limits)?
            .into_iter()
            .filter(|row| {
                pointers.iter().any(|pointer| {
                    row.prop
                        .strip_prefix(pointer.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
                })
            })
            .collect();
        let unique_changed = spec
            .unique
            .iter()
            .any(|property| before.content.get(property) != after.content.get(property));
        Ok(Self {
            pointers,
            rows,
            unique_changed,
        })
    }

    /// Whether the change fits one statement of [`write_in_one_statement`]: one delete, one
    /// insert, no unique value.
    fn fits_one_statement(&self) -> bool {
        self.pointers.len() <= POINTERS_PER_DELETE && self.rows.len() <= PROP_ROWS_PER_INSERT && !self.unique_changed
    }
}

/// A `DELETE` of the index rows of object `pk` under `pointers`: each property's own row and
/// every row below it (`/` sorts just before `0`). The text depends on the number of pointers,
/// which callers bound by [`POINTERS_PER_DELETE`].
fn delete_prop_rows(pk: i64, pointers: &[String]) -> Sql {
    let mut delete = Sql::cached("DELETE FROM object_props WHERE obj_pk = ");
    delete.bind_i64(pk).push(" AND (");
    for (index, pointer) in pointers.iter().enumerate() {
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
    delete
}

/// Rewrites the index of object `pk` of `object_type` where `prepared` changes it (see
/// [`IndexChange`]).
fn update_index(
    conn: &mut DbConnection,
    pk: i64,
    object_type: &str,
    prepared: &PreparedUpdate<'_>,
) -> Result<(), StoreError> {
    let change = &prepared.change;
    for chunk in change.pointers.chunks(POINTERS_PER_DELETE) {
        delete_prop_rows(pk, chunk).execute(conn)?;
    }
    insert_prop_rows(conn, pk, object_type, &change.rows)?;
    if change.unique_changed {
        let mut unique = Sql::cached("DELETE FROM unique_values WHERE obj_pk = ");
        unique.bind_i64(pk);
        unique.execute(conn)?;
        let update = prepared.update;
        insert_unique_values(conn, pk, object_type, update.content, update.index)?;
    }
    Ok(())
}

/// An update prepared for writing: the object as it will be stored and how its index changes.
struct PreparedUpdate<'a> {
    rev: Revision,
    content_text: String,
    update: &'a ObjectUpdate<'a>,
    /// The metadata as stored and indexed (with the login count as read).
    indexed_meta: Object,
    change: IndexChange,
}

impl<'a> PreparedUpdate<'a> {
    fn new(
        object_type: &str,
        current: &StoredObject,
        rev: Revision,
        update: &'a ObjectUpdate<'a>,
    ) -> Result<Self, StoreError> {
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
        let change = IndexChange::of(current, &indexed, Limits::Enforced)?;
        Ok(Self {
            rev,
            content_text: serde_json::to_string(update.content)?,
            update,
            indexed_meta,
            change,
        })
    }

    /// The object as stored once written.
    fn stored(self, current: &StoredObject) -> StoredObject {
        StoredObject {
            pk: current.pk,
            id: current.id.clone(),
            rev: self.rev,
            content: self.update.content.clone(),
            meta: self.indexed_meta,
        }
    }
}

/// Writes `prepared` over `current` if the stored object is still at `current`'s revision,
/// with its index and relationships.
fn write_update(
    conn: &mut DbConnection,
    object_type: &str,
    current: &StoredObject,
    prepared: &PreparedUpdate<'_>,
    relationships: &[RelationshipSet],
) -> Result<(), StoreError> {
    if matches!(conn, DbConnection::Postgres(_)) && prepared.change.fits_one_statement() {
        write_in_one_statement(conn, object_type, current, prepared)?;
    } else {
        let target = objects::table
            .filter(objects::pk.eq(current.pk))
            .filter(objects::rev.eq(current.rev.to_i64()));
        let rev = objects::rev.eq(prepared.rev.to_i64());
        let content = objects::content.eq(prepared.content_text.as_str());
        let changed = match prepared.update.meta {
            Some(meta) => diesel::update(target)
                .set((rev, content, objects::meta.eq(stored_meta(meta)?)))
                .execute(conn)?,
            None => diesel::update(target).set((rev, content)).execute(conn)?,
        };
        if changed == 0 {
            return Err(StoreError::RevisionMismatch);
        }
        update_index(conn, current.pk, object_type, prepared)?;
    }
    sync_sets(conn, &managed_collection(object_type), &current.id, relationships)?;
    Ok(())
}

/// Writes an update whose index change [fits one statement](IndexChange::fits_one_statement)
/// as one PostgreSQL statement: the object's row, then (only when that matched the revision
/// read) the deletes and inserts of its index rows, each a data-modifying `WITH` clause. One
/// round trip instead of three, and atomic without a transaction around it.
fn write_in_one_statement(
    conn: &mut DbConnection,
    object_type: &str,
    current: &StoredObject,
    prepared: &PreparedUpdate<'_>,
) -> Result<(), StoreError> {
    let mut sql = Sql::cached("WITH u AS (UPDATE objects SET rev = ");
    sql.bind_i64(prepared.rev.to_i64())
        .push(", content = ")
        .bind_text(prepared.content_text.clone());
    if let Some(meta) = prepared.update.meta {
        sql.push(", meta = ").bind_text(stored_meta(meta)?);
    }
    sql.push(" WHERE pk = ")
        .bind_i64(current.pk)
        .push(" AND rev = ")
        .bind_i64(current.rev.to_i64())
        .push(" RETURNING pk)");
    if !prepared.change.pointers.is_empty() {
        sql.push(", d AS (")
            .append(delete_prop_rows(current.pk, &prepared.change.pointers))
            .push(" AND EXISTS (SELECT 1 FROM u))");
    }
    if !prepared.change.rows.is_empty() {
        sql.push(
            ", i AS (INSERT INTO object_props (obj_pk, otype, prop, kind, num, str, full_str, sorted) SELECT * FROM (",
        );
        push_prop_values(&mut sql, Some(current.pk), object_type, &prepared.change.rows);
        sql.push(") AS v WHERE EXISTS (SELECT 1 FROM u))");
    }
    sql.push(" SELECT COUNT(*) FROM u");
    // The text's shape follows the numbers of pointers and rows: only few rows are cached.
    if prepared.change.rows.len() > CACHED_ROWS {
        sql.set_cacheable(false);
    }
    let changed: i64 = sql.typed::<BigInt>().get_result(conn)?;
    if changed == 0 {
        return Err(StoreError::RevisionMismatch);
    }
    Ok(())
}

/// Most edges the one statement of [`insert_in_one_statement`] writes.
const EDGES_PER_INSERT: usize = 8;

/// Inserts a new object as one PostgreSQL statement: its row, then its index rows, unique
/// values and edges, each a data-modifying `WITH` clause reading the new key. One round trip
/// instead of six, and atomic without a transaction around it. Returns the new key and whether
/// every one of `edges` (made from `relationships`) was inserted; a value already taken (the id
/// or a unique value) fails the whole statement.
fn insert_in_one_statement(
    conn: &mut DbConnection,
    new: &NewObject<'_>,
    rev: Revision,
    (content_text, meta_text): (&str, &str),
    rows: &[PropRow],
    (relationships, edges): (&[RelationshipSet], &[Edge]),
) -> Result<(i64, bool), StoreError> {
    let mut sql = Sql::cached("WITH o AS (INSERT INTO objects (otype, oid, rev, content, meta) VALUES (");
    sql.bind_text(new.object_type)
        .push(", ")
        .bind_text(new.id)
        .push(", ")
        .bind_i64(rev.to_i64())
        .push(", ")
        .bind_text(content_text)
        .push(", ")
        .bind_text(meta_text)
        .push(") RETURNING pk)");
    if !rows.is_empty() {
        sql.push(
            ", p AS (INSERT INTO object_props (obj_pk, otype, prop, kind, num, str, full_str, sorted) SELECT o.pk, v.* FROM o, (",
        );
        push_prop_values(&mut sql, None, new.object_type, rows);
        sql.push(") AS v)");
    }
    let unique = unique_values(new.content, new.index);
    if !unique.is_empty() {
        sql.push(", u AS (INSERT INTO unique_values (otype, prop, value, obj_pk) SELECT v.*, o.pk FROM o, (VALUES ");
        for (index, (property, value)) in unique.into_iter().enumerate() {
            sql.push(if index == 0 { "(" } else { ", (" })
                .bind_text(new.object_type)
                .push(", ")
                .bind_text(property)
                .push(", ")
                .bind_text(value)
                .push(")");
        }
        sql.push(") AS v)");
    }
    let collection = managed_collection(new.object_type);
    if edges.is_empty() {
        sql.push(" SELECT pk, CAST(0 AS BIGINT) FROM o");
    } else {
        sql.push(", e AS (INSERT INTO relationships (rid, rev, first_coll, first_id, first_prop, second_coll, second_id, second_prop, props) VALUES ");
        for (index, ((set, target), edge)) in set_targets(relationships).zip(edges).enumerate() {
            sql.push(if index == 0 { "" } else { ", " });
            push_edge_values(&mut sql, &collection, new.id, set, target, &EdgeKey::of(edge))?;
        }
        sql.push(" ON CONFLICT DO NOTHING RETURNING 1) SELECT pk, (SELECT count(*) FROM e) FROM o");
    }
    // The text's shape follows the numbers of rows and edges: only few rows are cached.
    if rows.len() > CACHED_CREATE_ROWS {
        sql.set_cacheable(false);
    }
    let (pk, inserted): (i64, i64) = sql.typed::<(BigInt, BigInt)>().get_result(conn)?;
    Ok((
        pk,
        usize::try_from(inserted).is_ok_and(|inserted| inserted == edges.len()),
    ))
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

/// Inserts the row of object `new` (stored as `content` and `meta`) and returns its key;
/// [`StoreError::AlreadyExists`] when its id is taken.
fn insert_object_row(
    conn: &mut DbConnection,
    new: &NewObject<'_>,
    rev: Revision,
    content: &str,
    meta: &str,
) -> Result<i64, StoreError> {
    let insert = diesel::insert_into(objects::table).values((
        objects::otype.eq(new.object_type),
        objects::oid.eq(new.id),
        objects::rev.eq(rev.to_i64()),
        objects::content.eq(content),
        objects::meta.eq(meta),
    ));
    let inserted = match conn {
        // SQLite runs an insert with `RETURNING` as one that may write several rows, with a
        // statement journal of every page it touches; the row id of a plain insert is free.
        DbConnection::Sqlite(_) => insert.execute(conn).and_then(|_| {
            Sql::cached("SELECT last_insert_rowid()")
                .typed::<BigInt>()
                .get_result::<i64>(conn)
        }),
        DbConnection::Postgres(_) => insert.returning(objects::pk).get_result::<i64>(conn),
    };
    match inserted {
        Ok(pk) => Ok(pk),
        Err(error) if is_unique_violation(&error) => Err(StoreError::AlreadyExists),
        Err(error) => Err(error.into()),
    }
}

/// Inserts index rows of object `pk`, as many per statement as [`rows_per_insert`] allows.
fn insert_prop_rows(conn: &mut DbConnection, pk: i64, object_type: &str, rows: &[PropRow]) -> Result<(), StoreError> {
    for chunk in rows.chunks(rows_per_insert(conn, PROP_ROWS_PER_INSERT)) {
        let mut insert =
            Sql::cached("INSERT INTO object_props (obj_pk, otype, prop, kind, num, str, full_str, sorted) ");
        push_prop_values(&mut insert, Some(pk), object_type, chunk);
        insert.execute(conn)?;
    }
    Ok(())
}

/// Appends `VALUES (…), (…)` with the index rows `rows` of object `pk` (without the key when
/// `pk` is `None`: the statement supplies it). The text depends on the number of rows, which
/// callers bound by [`PROP_ROWS_PER_INSERT`].
fn push_prop_values(sql: &mut Sql, pk: Option<i64>, object_type: &str, rows: &[PropRow]) {
    sql.push("VALUES ");
    for (index, row) in rows.iter().enumerate() {
        sql.push(if index == 0 { "(" } else { ", (" });
        if let Some(pk) = pk {
            sql.bind_i64(pk).push(", ");
        }
        sql.bind_text(object_type)
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
        self.insert_related(new, &[]).map(|(stored, _)| stored)
    }

    /// [`Store::insert`] with the object's relationships, written in the same transaction.
    /// Returns the object as stored and every edge it has then, as [`Store::edges`] reads them.
    pub fn insert_related(
        &self,
        new: NewObject<'_>,
        relationships: &[RelationshipSet],
    ) -> Result<(StoredObject, Vec<Edge>), StoreError> {
        let rev = Revision::initial(nonce());
        let content_text = serde_json::to_string(new.content)?;
        let meta_text = stored_meta(new.meta)?;
        let mut meta = new.meta.clone();
        meta.insert("loginCount".to_owned(), Value::from(0));
        let rows = index_rows(new.id, new.content, &meta, new.index, Limits::Enforced)?;
        let edges = new_edges(new.id, relationships);
        let collection = managed_collection(new.object_type);
        let one_statement = self.backend() == Backend::Postgres
            && rows.len() <= PROP_ROWS_PER_INSERT
            && edges.len() <= EDGES_PER_INSERT
            && relationships.iter().all(edges_insert_alone);
        let written = if one_statement {
            let written = self.write_one_statement(|conn| {
                insert_in_one_statement(
                    conn,
                    &new,
                    rev,
                    (&content_text, &meta_text),
                    &rows,
                    (relationships, &edges),
                )
            });
            match written {
                // The statement does not tell which value is taken: the writes one by one below
                // meet the same conflict and name it (or succeed, if it has gone since).
                Err(StoreError::Database(error)) if is_unique_violation(&error) => None,
                written => Some(written?),
            }
        } else {
            None
        };
        let (pk, edges_inserted) = match written {
            Some(written) => written,
            None => self.write(|conn| {
                let pk = insert_object_row(conn, &new, rev, &content_text, &meta_text)?;
                insert_prop_rows(conn, pk, new.object_type, &rows)?;
                insert_unique_values(conn, pk, new.object_type, new.content, new.index)?;
                let edges_inserted = insert_sets(conn, &collection, new.id, relationships, &edges)?;
                Ok((pk, edges_inserted))
            })?,
        };
        // An edge found already there was written by another writer meanwhile: read them all.
        let edges = if edges_inserted {
            edges
        } else {
            self.read(|conn| select_edges(conn, &collection, &[new.id], None))?
        };
        let stored = StoredObject {
            pk,
            id: new.id.to_owned(),
            rev,
            content: new.content.clone(),
            meta,
        };
        Ok((stored, edges))
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
                let pk = insert_object_row(conn, new, *rev, content, meta_text)?;
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
        self.write(|conn| {
            let current = find(conn, object_type, id)?.ok_or(StoreError::NotFound)?;
            if current.rev != expected {
                return Err(StoreError::RevisionMismatch);
            }
            let prepared = PreparedUpdate::new(object_type, &current, rev, &update)?;
            write_update(conn, object_type, &current, &prepared, relationships)?;
            Ok(prepared.stored(&current))
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
        let prepared = PreparedUpdate::new(object_type, current, current.rev.next(nonce()), &update)?;
        if relationships.is_empty() && prepared.change.fits_one_statement() {
            // On PostgreSQL one statement: no transaction needed around it.
            self.write_one_statement(|conn| write_update(conn, object_type, current, &prepared, &[]))?;
        } else {
            self.write(|conn| write_update(conn, object_type, current, &prepared, relationships))?;
        }
        Ok(prepared.stored(current))
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
        change: impl Fn(&mut Object),
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
