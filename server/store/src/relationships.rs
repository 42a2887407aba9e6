//! Relationships between objects (IDM's edges), kept in their own table rather than inside the
//! objects' JSON. An edge joins two ends, each an object (`managed/user` + id) and the property
//! that holds the edge there (`roles`); the far end of a relationship without a reverse
//! property has an empty property (a user's `authzRoles` to `internal/role/...`).
//!
//! Each edge is stored once, in a canonical direction: the end whose (collection, property, id)
//! sorts first is `first`. A grant made from either side (a user's `roles`, a role's `members`)
//! therefore meets the same unique key, so concurrent grants of one role to one user leave one
//! edge. Reading an object's edges is two indexed lookups in one statement: as the first end,
//! and as the second.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use ferridm_core::{Object, Revision};

use crate::connection::DbConnection;
use crate::objects::{StoredObject, find, object_from_columns};
use crate::sql::Sql;
use crate::{Store, StoreError};

/// An edge as seen from one of its objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    /// The edge id (`_refProperties._id`).
    pub id: String,
    /// The edge revision (`_refProperties._rev`).
    pub rev: Revision,
    /// The object the edge was read for.
    pub owner_id: String,
    /// The property of that object that holds the edge.
    pub property: String,
    /// The collection of the object at the other end (`managed/role`).
    pub collection: String,
    /// The id of the object at the other end.
    pub target_id: String,
    /// The edge's own properties (`_refProperties` without `_id` and `_rev`).
    pub properties: Object,
}

/// The object at the far end of an edge, and the edge's own properties.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeTarget {
    /// Its collection (`managed/role`, `internal/role`).
    pub collection: String,
    /// Its id.
    pub id: String,
    /// The edge's own properties (`_refProperties` without `_id` and `_rev`).
    pub properties: Object,
}

/// The edges one relationship property of an object holds after a write: exactly `targets`.
#[derive(Debug, Clone, PartialEq)]
pub struct RelationshipSet {
    /// The property (`roles`).
    pub property: String,
    /// The property that holds the edge on the targets (`members`), if the relationship has one.
    pub reverse: Option<String>,
    /// Whether that property holds one reference (a report's `manager`): a new edge then
    /// replaces the target's edge under it.
    pub reverse_single: bool,
    /// Every object the property refers to after the write, each once.
    pub targets: Vec<EdgeTarget>,
}

/// One object's change in [`Store::apply_grants`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantChange<'a> {
    /// The object.
    pub id: &'a str,
    /// Its revision when the change was decided.
    pub revision: Revision,
    /// The edge to remove (`_refProperties._id`), or `None` to grant the set's targets.
    pub revoked_edge: Option<&'a str>,
}

/// One end of an edge: an object and the property holding the edge (empty for the far end of
/// a relationship without a reverse property).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct End<'a> {
    collection: &'a str,
    property: &'a str,
    id: &'a str,
}

/// The ends of an edge in stored order.
fn canonical<'a>(near: End<'a>, far: End<'a>) -> (End<'a>, End<'a>) {
    if !far.property.is_empty() && far < near {
        (far, near)
    } else {
        (near, far)
    }
}

/// Reads of at most this many objects' edges keep their statements prepared (one shape per
/// count: the page sizes in use).
const CACHED_IDS: usize = 64;
/// … naming at most this many properties.
const CACHED_PROPERTIES: usize = 4;

type EdgeColumns = (i64, String, i64, String, String, String, String, String);
type EdgeColumnTypes = (BigInt, Text, BigInt, Text, Text, Text, Text, Text);

/// The edges held by `properties` of the objects `ids` of `collection`: as the first end, then as
/// the second, each row naming the other end; in the order the edges were made.
pub(crate) fn select_edges(
    conn: &mut DbConnection,
    collection: &str,
    ids: &[&str],
    properties: Option<&[&str]>,
) -> Result<Vec<Edge>, StoreError> {
    // The far end of a one-way edge holds it under no property: nothing reads it from there.
    let properties: Option<Vec<&str>> =
        properties.map(|names| names.iter().copied().filter(|p| !p.is_empty()).collect());
    if ids.is_empty() || properties.as_ref().is_some_and(Vec::is_empty) {
        return Ok(Vec::new());
    }
    // A page's worth of ids and a type's properties have few enough shapes to cache.
    let few = ids.len() <= CACHED_IDS && properties.as_ref().is_none_or(|names| names.len() <= CACHED_PROPERTIES);
    let mut select = if few { Sql::cached("") } else { Sql::uncached("") };
    for (index, (near, far)) in [("first", "second"), ("second", "first")].into_iter().enumerate() {
        if index > 0 {
            select.push(" UNION ALL ");
        }
        select
            .push("SELECT pk, rid, rev, ")
            .push(near)
            .push("_id, ")
            .push(near)
            .push("_prop, ")
            .push(far)
            .push("_coll, ")
            .push(far)
            .push("_id, props FROM relationships WHERE ")
            .push(near)
            .push("_coll = ")
            .bind_text(collection);
        push_in(&mut select, &format!("{near}_id"), ids);
        match &properties {
            Some(names) => push_in(&mut select, &format!("{near}_prop"), names),
            None => {
                select.push(&format!(" AND {near}_prop <> ''"));
            }
        }
    }
    // Ordered here rather than by the statement: SQLite prepares a compound select with an
    // `ORDER BY` again each time it is bound.
    let mut rows: Vec<EdgeColumns> = select.typed::<EdgeColumnTypes>().load(conn)?;
    rows.sort_unstable_by_key(|row| row.0);
    rows.into_iter()
        .map(|(_pk, id, rev, owner_id, property, collection, target_id, props)| {
            Ok(Edge {
                id,
                rev: Revision::from_i64(rev),
                owner_id,
                property,
                collection,
                target_id,
                properties: serde_json::from_str(&props)?,
            })
        })
        .collect()
}

/// Every edge held by the objects `ids` of `collection`, under any property.
pub(crate) fn all_edges_of(conn: &mut DbConnection, collection: &str, ids: &[&str]) -> Result<Vec<Edge>, StoreError> {
    select_edges(conn, collection, ids, None)
}

/// Whose edges a statement reading objects and their edges together reads.
pub(crate) enum EdgeOwners<'a> {
    /// The object with this id.
    One(&'a str),
    /// The objects the statement's common table `q` (with an `oid` column) holds.
    Page,
}

/// Appends to `select`, whose rows are objects (row kind 0, then [`OBJECT_COLUMNS`], then three
/// empty texts), the edges `properties` hold for `owners` of `collection`: row kind 1, then the
/// edge's key, id, revision, property, properties, a zero, the far end's collection and id, and
/// the owner's id. [`load_objects_and_edges`] reads the rows back.
///
/// [`OBJECT_COLUMNS`]: crate::objects::OBJECT_COLUMNS
pub(crate) fn push_edges_of(select: &mut Sql, owners: EdgeOwners<'_>, collection: &str, properties: &[&str]) {
    for (near, far) in [("first", "second"), ("second", "first")] {
        select.push(&format!(
            " UNION ALL SELECT 1, r.pk, r.rid, r.rev, r.{near}_prop, r.props, 0, r.{far}_coll, r.{far}_id, r.{near}_id FROM relationships r WHERE r.{near}_id "
        ));
        match owners {
            EdgeOwners::One(id) => select.push("= ").bind_text(id),
            EdgeOwners::Page => select.push("IN (SELECT oid FROM q)"),
        };
        select.push(&format!(" AND r.{near}_coll = ")).bind_text(collection);
        push_in(select, &format!("r.{near}_prop"), properties);
    }
    if properties.len() > CACHED_PROPERTIES {
        select.set_cacheable(false);
    }
}

/// Reads the rows of a statement [`push_edges_of`] completed: the objects in creation order,
/// and the edges in the order they were made.
pub(crate) fn load_objects_and_edges(
    conn: &mut DbConnection,
    select: Sql,
) -> Result<(Vec<StoredObject>, Vec<Edge>), StoreError> {
    type Row = (i64, i64, String, i64, String, String, i64, String, String, String);
    let rows: Vec<Row> = select
        .typed::<(BigInt, BigInt, Text, BigInt, Text, Text, BigInt, Text, Text, Text)>()
        .load(conn)?;
    let mut objects = Vec::new();
    let mut edges = Vec::new();
    for (kind, pk, text, rev, first, second, login_count, far_collection, far_id, owner_id) in rows {
        if kind == 0 {
            objects.push(object_from_columns((pk, text, rev, first, second, login_count))?);
        } else {
            edges.push((
                pk,
                Edge {
                    id: text,
                    rev: Revision::from_i64(rev),
                    owner_id,
                    property: first,
                    collection: far_collection,
                    target_id: far_id,
                    properties: serde_json::from_str(&second)?,
                },
            ));
        }
    }
    objects.sort_unstable_by_key(|object| object.pk);
    Ok((objects, in_creation_order(edges)))
}

/// Edges read with their keys, in the order they were made.
fn in_creation_order(mut edges: Vec<(i64, Edge)>) -> Vec<Edge> {
    edges.sort_unstable_by_key(|(key, _)| *key);
    edges.into_iter().map(|(_, edge)| edge).collect()
}

/// `columns` of `objects o` (in [`OBJECT_COLUMNS`]' shape) followed by two columns with the
/// edges `properties` hold for each object of `collection`, read by subqueries of the row: one
/// JSON array per end, of `[key, id, revision, property, properties, far collection, far id]`,
/// then `from` (which names `objects o`). SQLite only; [`load_objects_with_edge_arrays`] reads
/// the rows back. There one statement costs less than a page, its edges and the transaction
/// that keeps them consistent.
///
/// [`OBJECT_COLUMNS`]: crate::objects::OBJECT_COLUMNS
pub(crate) fn select_objects_with_edge_arrays(
    columns: &str,
    collection: &str,
    properties: &[&str],
    cacheable: bool,
    from: &str,
) -> Sql {
    let mut select = Sql::uncached(&format!("SELECT {columns}"));
    select.set_cacheable(cacheable && properties.len() <= CACHED_PROPERTIES);
    for (near, far) in [("first", "second"), ("second", "first")] {
        select.push(&format!(
            ", (SELECT json_group_array(json_array(r.pk, r.rid, r.rev, r.{near}_prop, r.props, r.{far}_coll, r.{far}_id)) FROM relationships r WHERE r.{near}_id = o.oid AND r.{near}_coll = "
        ));
        select.bind_text(collection);
        push_in(&mut select, &format!("r.{near}_prop"), properties);
        select.push(")");
    }
    select.push(from);
    select
}

/// Reads the rows of a statement built on [`select_objects_with_edge_arrays`]: the objects in
/// the statement's order and their edges in the order the edges were made.
pub(crate) fn load_objects_with_edge_arrays(
    conn: &mut DbConnection,
    select: Sql,
) -> Result<(Vec<StoredObject>, Vec<Edge>), StoreError> {
    type Row = (i64, String, i64, String, String, i64, String, String);
    type EdgeArray = (i64, String, i64, String, String, String, String);
    let rows: Vec<Row> = select
        .typed::<(BigInt, Text, BigInt, Text, Text, BigInt, Text, Text)>()
        .load(conn)?;
    let mut objects = Vec::with_capacity(rows.len());
    let mut edges = Vec::new();
    for (pk, id, rev, content, meta, login_count, as_first, as_second) in rows {
        for array in [as_first, as_second] {
            for (key, edge_id, edge_rev, property, props, collection, target_id) in
                serde_json::from_str::<Vec<EdgeArray>>(&array)?
            {
                edges.push((
                    key,
                    Edge {
                        id: edge_id,
                        rev: Revision::from_i64(edge_rev),
                        owner_id: id.clone(),
                        property,
                        collection,
                        target_id,
                        properties: serde_json::from_str(&props)?,
                    },
                ));
            }
        }
        objects.push(object_from_columns((pk, id, rev, content, meta, login_count))?);
    }
    Ok((objects, in_creation_order(edges)))
}

/// Appends ` AND column = ?` for one value, ` AND column IN (?, …)` for several.
fn push_in(select: &mut Sql, column: &str, values: &[&str]) {
    select.push(" AND ").push(column);
    if let [only] = values {
        select.push(" = ").bind_text(*only);
        return;
    }
    select.push(" IN (");
    for (index, value) in values.iter().enumerate() {
        if index > 0 {
            select.push(", ");
        }
        select.bind_text(*value);
    }
    select.push(")");
}

/// Makes the edges of `property` of object `id` exactly `set.targets`: edges to objects no
/// longer named are deleted, new ones inserted (an edge another writer inserted meanwhile is
/// kept once), and kept ones whose properties changed get them and a new revision. Returns
/// whether anything changed.
fn sync_set(conn: &mut DbConnection, collection: &str, id: &str, set: &RelationshipSet) -> Result<bool, StoreError> {
    let existing = select_edges(conn, collection, &[id], Some(&[set.property.as_str()]))?;
    let mut changed = false;
    for edge in &existing {
        let wanted = set
            .targets
            .iter()
            .find(|target| target.collection == edge.collection && target.id == edge.target_id);
        match wanted {
            None => {
                let mut delete = Sql::cached("DELETE FROM relationships WHERE rid = ");
                delete.bind_text(edge.id.clone());
                delete.execute(conn)?;
                changed = true;
            }
            Some(target) if target.properties != edge.properties => {
                let mut update = Sql::cached("UPDATE relationships SET props = ");
                update
                    .bind_text(serde_json::to_string(&target.properties)?)
                    .push(", rev = ")
                    .bind_i64(edge.rev.next(rand::random()).to_i64())
                    .push(" WHERE rid = ")
                    .bind_text(edge.id.clone());
                update.execute(conn)?;
                changed = true;
            }
            Some(_) => {}
        }
    }
    for target in &set.targets {
        if !existing
            .iter()
            .any(|edge| edge.collection == target.collection && edge.target_id == target.id)
        {
            changed |= insert_edge(conn, collection, id, set, target, &EdgeKey::new())?;
        }
    }
    Ok(changed)
}

/// Inserts the edge from `property` of object `id` to `target`, unless it exists (another
/// writer may have inserted it meanwhile, from either side); returns whether it was inserted.
fn insert_edge(
    conn: &mut DbConnection,
    collection: &str,
    id: &str,
    set: &RelationshipSet,
    target: &EdgeTarget,
    key: &EdgeKey,
) -> Result<bool, StoreError> {
    if !edges_insert_alone(set) {
        let far = End {
            collection: &target.collection,
            property: set.reverse.as_deref().unwrap_or(""),
            id: &target.id,
        };
        for (end, other) in [("first", "second"), ("second", "first")] {
            let mut replace = Sql::cached("DELETE FROM relationships WHERE ");
            replace
                .push(end)
                .push("_coll = ")
                .bind_text(far.collection)
                .push(" AND ")
                .push(end)
                .push("_id = ")
                .bind_text(far.id)
                .push(" AND ")
                .push(end)
                .push("_prop = ")
                .bind_text(far.property)
                .push(" AND NOT (")
                .push(other)
                .push("_coll = ")
                .bind_text(collection)
                .push(" AND ")
                .push(other)
                .push("_id = ")
                .bind_text(id)
                .push(")");
            replace.execute(conn)?;
        }
    }
    let mut insert = Sql::cached(
        "INSERT INTO relationships (rid, rev, first_coll, first_id, first_prop, second_coll, second_id, second_prop, props) VALUES ",
    );
    push_edge_values(&mut insert, collection, id, set, target, key)?;
    insert.push(" ON CONFLICT DO NOTHING");
    Ok(insert.execute(conn)? > 0)
}

/// Whether the edges of `set` are written by their inserts alone: not when the far end holds
/// one edge only, which a new edge replaces.
pub(crate) fn edges_insert_alone(set: &RelationshipSet) -> bool {
    !set.reverse_single || set.reverse.as_deref().unwrap_or("").is_empty()
}

/// Appends `(…)`: the columns of a new edge from object `id` of `collection` under `set` to
/// `target`, in stored order, with the id and revision `key`.
pub(crate) fn push_edge_values(
    insert: &mut Sql,
    collection: &str,
    id: &str,
    set: &RelationshipSet,
    target: &EdgeTarget,
    key: &EdgeKey,
) -> Result<(), StoreError> {
    let near = End {
        collection,
        property: &set.property,
        id,
    };
    let far = End {
        collection: &target.collection,
        property: set.reverse.as_deref().unwrap_or(""),
        id: &target.id,
    };
    let (first, second) = canonical(near, far);
    insert
        .push("(")
        .bind_text(key.id.clone())
        .push(", ")
        .bind_i64(key.rev.to_i64())
        .push(", ")
        .bind_text(first.collection)
        .push(", ")
        .bind_text(first.id)
        .push(", ")
        .bind_text(first.property)
        .push(", ")
        .bind_text(second.collection)
        .push(", ")
        .bind_text(second.id)
        .push(", ")
        .bind_text(second.property)
        .push(", ")
        .bind_text(serde_json::to_string(&target.properties)?)
        .push(")");
    Ok(())
}

/// Writes the edges of every set of a new object `id` (which holds none yet).
pub(crate) fn insert_sets(
    conn: &mut DbConnection,
    collection: &str,
    id: &str,
    sets: &[RelationshipSet],
    edges: &[Edge],
) -> Result<bool, StoreError> {
    let mut all_inserted = true;
    for ((set, target), edge) in set_targets(sets).zip(edges) {
        all_inserted &= insert_edge(conn, collection, id, set, target, &EdgeKey::of(edge))?;
    }
    Ok(all_inserted)
}

/// Each target of each of `sets`, with its set, in order.
pub(crate) fn set_targets(sets: &[RelationshipSet]) -> impl Iterator<Item = (&RelationshipSet, &EdgeTarget)> {
    sets.iter()
        .flat_map(|set| set.targets.iter().map(move |target| (set, target)))
}

/// The edges a new object `id` gets from `sets`, each with a new id and revision, as
/// [`Store::edges`] would read them.
pub(crate) fn new_edges(id: &str, sets: &[RelationshipSet]) -> Vec<Edge> {
    set_targets(sets)
        .map(|(set, target)| {
            let key = EdgeKey::new();
            Edge {
                id: key.id,
                rev: key.rev,
                owner_id: id.to_owned(),
                property: set.property.clone(),
                collection: target.collection.clone(),
                target_id: target.id.clone(),
                properties: target.properties.clone(),
            }
        })
        .collect()
}

/// The id and revision of an edge about to be written.
pub(crate) struct EdgeKey {
    id: String,
    rev: Revision,
}

impl EdgeKey {
    /// A new edge id and initial revision.
    fn new() -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            rev: Revision::initial(rand::random()),
        }
    }

    /// The id and revision of `edge`.
    pub(crate) fn of(edge: &Edge) -> Self {
        Self {
            id: edge.id.clone(),
            rev: edge.rev,
        }
    }
}

/// Syncs every set of object `id` (see [`sync_set`]); returns whether any edge changed.
pub(crate) fn sync_sets(
    conn: &mut DbConnection,
    collection: &str,
    id: &str,
    sets: &[RelationshipSet],
) -> Result<bool, StoreError> {
    let mut changed = false;
    for set in sets {
        changed |= sync_set(conn, collection, id, set)?;
    }
    Ok(changed)
}

/// Deletes every edge with object `id` of `collection` at either end.
pub(crate) fn delete_edges_of(conn: &mut DbConnection, collection: &str, id: &str) -> Result<usize, StoreError> {
    let mut deleted = 0;
    for end in ["first", "second"] {
        let mut delete = Sql::cached("DELETE FROM relationships WHERE ");
        delete
            .push(end)
            .push("_coll = ")
            .bind_text(collection)
            .push(" AND ")
            .push(end)
            .push("_id = ")
            .bind_text(id);
        deleted += delete.execute(conn)?;
    }
    Ok(deleted)
}

/// The collection of stored objects of `object_type`.
pub(crate) fn managed_collection(object_type: &str) -> String {
    format!("managed/{object_type}")
}

impl Store {
    /// The edges held by `properties` of the objects `ids` of `collection`, in one statement
    /// (a page of objects costs one query, not one per object), in the order they were made.
    pub fn edges(&self, collection: &str, ids: &[&str], properties: &[&str]) -> Result<Vec<Edge>, StoreError> {
        self.read(|conn| select_edges(conn, collection, ids, Some(properties)))
    }

    /// Reads one object and the edges its `properties` hold in one statement (one round trip
    /// on PostgreSQL): the object's row and its edges' rows, told apart by the first column.
    pub fn get_with_edges(
        &self,
        object_type: &str,
        id: &str,
        properties: &[&str],
    ) -> Result<Option<(StoredObject, Vec<Edge>)>, StoreError> {
        let properties: Vec<&str> = properties.iter().copied().filter(|p| !p.is_empty()).collect();
        if properties.is_empty() || properties.len() > CACHED_PROPERTIES {
            return self.read(|conn| {
                let object = find(conn, object_type, id)?;
                let edges = match object {
                    Some(_) => select_edges(conn, &managed_collection(object_type), &[id], Some(&properties))?,
                    None => Vec::new(),
                };
                Ok(object.map(|object| (object, edges)))
            });
        }
        let collection = managed_collection(object_type);
        let mut select = Sql::cached(
            "SELECT CAST(0 AS BIGINT) AS row_kind, o.pk, o.oid, o.rev, o.content, o.meta, o.login_count, '' AS far_coll, '' AS far_id, '' AS owner_id FROM objects o WHERE o.otype = ",
        );
        select.bind_text(object_type).push(" AND o.oid = ").bind_text(id);
        push_edges_of(&mut select, EdgeOwners::One(id), &collection, &properties);
        let (mut objects, edges) = self.read(|conn| load_objects_and_edges(conn, select))?;
        Ok(objects.pop().map(|object| (object, edges)))
    }

    /// Grants and revokes one relationship for many objects of `object_type` in one
    /// transaction (a conditional role re-evaluated over a page of users): each change names an
    /// object, the revision it was judged at and, for a revocation, the edge to remove. An
    /// object whose revision moved meanwhile is left alone (its own write judged it); every
    /// changed object gets a new revision. `set` names the property and the one target granted.
    /// Returns how many objects changed.
    pub fn apply_grants(
        &self,
        object_type: &str,
        set: &RelationshipSet,
        changes: &[GrantChange<'_>],
    ) -> Result<usize, StoreError> {
        if changes.is_empty() {
            return Ok(0);
        }
        let collection = managed_collection(object_type);
        self.write(|conn| {
            let mut changed = 0;
            for change in changes {
                let mut bump = Sql::cached("UPDATE objects SET rev = ");
                bump.bind_i64(change.revision.next(rand::random()).to_i64())
                    .push(" WHERE otype = ")
                    .bind_text(object_type)
                    .push(" AND oid = ")
                    .bind_text(change.id)
                    .push(" AND rev = ")
                    .bind_i64(change.revision.to_i64());
                if bump.execute(conn)? == 0 {
                    continue;
                }
                match change.revoked_edge {
                    Some(edge) => {
                        let mut delete = Sql::cached("DELETE FROM relationships WHERE rid = ");
                        delete.bind_text(edge);
                        delete.execute(conn)?;
                    }
                    None => {
                        for target in &set.targets {
                            insert_edge(conn, &collection, change.id, set, target, &EdgeKey::new())?;
                        }
                    }
                }
                changed += 1;
            }
            Ok(changed)
        })
    }

    /// Makes the edges of object `id` of `collection` exactly those of `sets`, in one
    /// transaction, without touching the object itself. Returns whether any edge changed.
    pub fn set_edges(&self, collection: &str, id: &str, sets: &[RelationshipSet]) -> Result<bool, StoreError> {
        self.write(|conn| sync_sets(conn, collection, id, sets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_side_of_a_reverse_relationship_stores_the_same_direction() {
        let user = End {
            collection: "managed/user",
            property: "roles",
            id: "u1",
        };
        let role = End {
            collection: "managed/role",
            property: "members",
            id: "r1",
        };
        assert_eq!(canonical(user, role), canonical(role, user));
        assert_eq!(canonical(user, role).0, role);
        let internal = End {
            collection: "internal/role",
            property: "",
            id: "openidm-admin",
        };
        assert_eq!(
            canonical(user, internal),
            (user, internal),
            "a one-way edge starts at its owner"
        );
    }
}
