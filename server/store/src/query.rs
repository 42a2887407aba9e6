//! Queries: a core [`Filter`] compiled to SQL over the property index, sorting with missing
//! values last, keyset paging with opaque cookies, and counting. A query on a property the
//! index does not hold for every object is answered by reading the objects (`scan.rs`).
//!
//! Every leaf becomes `SELECT obj_pk FROM object_props WHERE otype = ? AND prop = ? AND kind = ?
//! …`, which the `(otype, prop, kind, num, str, obj_pk)` index answers; `and`, `or` and `!`
//! combine them with `INTERSECT`, `UNION` and `EXCEPT`, and objects are looked up by key (on
//! SQLite, one equality with a short string joins the objects to its rows: [`IndexSeek`]).
//! Sorting on one key walks the same index in order (on SQLite, few matches are sorted instead);
//! several keys (or an offset) use one join per key. Objects missing a sort value come last; ties are broken
//! by creation order in the direction of the last sort key. Cookies carry the last row's sort
//! values and key, so a walk sees every object once even while others are inserted.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use diesel::RunQueryDsl;
use diesel::sql_types::BigInt;
use ferridm_core::filter::{ComparisonOp, Filter, Literal};
use ferridm_core::query::SortKey;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::connection::{Backend, DbConnection, Deadline, in_read_snapshot};
use crate::flatten::{
    IndexSpec, KIND_BOOLEAN, KIND_NULL, KIND_NUMBER, KIND_STRING, fold_string, index_text, prop_key,
    rows_of_every_property, split_key,
};
use crate::objects::{OBJECT_COLUMNS, ObjectColumnTypes, StoredObject, object_from_columns};
use crate::relationships::{
    Edge, EdgeOwners, load_objects_and_edges, load_objects_with_edge_arrays, managed_collection, push_edges_of,
    select_edges, select_objects_with_edge_arrays,
};
use crate::scan::{Answerable, scan_page};
use crate::sql::{Bind, Sql};
use crate::{Store, StoreError};

/// Filters with at most this many leaves have few enough shapes to cache their statements.
const CACHEABLE_LEAVES: usize = 2;

/// A query over one object type.
#[derive(Debug, Clone, Copy)]
pub struct ObjectQuery<'a> {
    /// The object type.
    pub object_type: &'a str,
    /// The filter (extended operators must have been refused by the caller).
    pub filter: &'a Filter,
    /// Sort keys (may be empty: creation order).
    pub sort: &'a [SortKey],
    /// Page size, or `None` for every match up to `limit`.
    pub page_size: Option<u32>,
    /// Results to skip (only without a cookie).
    pub offset: u64,
    /// A cookie from a previous page.
    pub cookie: Option<&'a str>,
    /// Whether to count every match.
    pub count: bool,
    /// Whether to load content (false: ids and revisions only, unless a sorted page's cookie
    /// needs it).
    pub with_content: bool,
    /// Most rows an unpaged query may return; one more is fetched to detect overflow.
    pub limit: u64,
    /// Indexing rules of the type (needed to compute cookies exactly as the index sorts).
    pub index: &'a IndexSpec,
    /// How long the query may run before it is cancelled with [`StoreError::TimedOut`]
    /// (`None`: no limit).
    pub time_limit: Option<std::time::Duration>,
}

impl<'a> ObjectQuery<'a> {
    /// What the filter is compiled for.
    /// A page of a walk over the objects of `object_type` matching `filter`, `page_size` at a
    /// time in creation order from `cookie` (background work: no count, no time limit).
    pub fn walk(
        object_type: &'a str,
        filter: &'a Filter,
        index: &'a IndexSpec,
        page_size: u32,
        cookie: Option<&'a str>,
        with_content: bool,
    ) -> Self {
        Self {
            object_type,
            filter,
            sort: &[],
            page_size: Some(page_size),
            offset: 0,
            cookie,
            count: false,
            with_content,
            limit: u64::from(page_size),
            index,
            time_limit: None,
        }
    }

    /// Whether the page is read with its content: when asked for, and for a sorted paged query,
    /// whose cookie carries the sort values of its last object.
    pub(crate) fn loads_content(&self) -> bool {
        self.with_content || (!self.sort.is_empty() && self.page_size.is_some())
    }

    pub(crate) fn scope(&self, backend: Backend) -> Scope<'_> {
        Scope {
            object_type: self.object_type,
            relationships: &self.index.relationships,
            backend,
        }
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryPage {
    /// The objects, in order.
    pub objects: Vec<StoredObject>,
    /// The cookie for the next page, when paging and the page was full.
    pub cookie: Option<String>,
    /// Total matches, when counted.
    pub total: Option<u64>,
}

/// The sort position of the last row of a page: per sort key the row's value (`None` when it
/// lacks the field), and the row's key. Object queries key by `(kind, num, str)`, audit queries
/// by the folded column value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Cookie<K> {
    /// Per sort key: the row's value.
    pub(crate) k: Vec<Option<K>>,
    /// The row's key.
    pub(crate) p: i64,
}

impl<K: Serialize + DeserializeOwned> Cookie<K> {
    /// The opaque text handed to the client.
    pub(crate) fn encode(&self) -> Result<String, StoreError> {
        Ok(URL_SAFE_NO_PAD.encode(serde_json::to_vec(self)?))
    }

    /// Reads a cookie made for a query with `keys` sort keys.
    pub(crate) fn decode(text: &str, keys: usize) -> Result<Self, StoreError> {
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| StoreError::InvalidCookie)?;
        let cookie: Self = serde_json::from_slice(&bytes).map_err(|_| StoreError::InvalidCookie)?;
        if cookie.k.len() != keys {
            return Err(StoreError::InvalidCookie);
        }
        Ok(cookie)
    }
}

/// One sort value as the index keys it (`None`: the object lacks it).
pub(crate) type SortValue = Option<(i16, f64, String)>;

/// An object query's cookie: each sort value as the index keys it.
pub(crate) type ObjectCookie = Cookie<(i16, f64, String)>;

/// An object query's cookie, with its numbers checked.
fn decode_object_cookie(text: &str, keys: usize) -> Result<ObjectCookie, StoreError> {
    let cookie = ObjectCookie::decode(text, keys)?;
    if cookie
        .k
        .iter()
        .flatten()
        .any(|(kind, num, _)| !num.is_finite() || *kind < 0)
    {
        return Err(StoreError::InvalidCookie);
    }
    Ok(cookie)
}

fn leaf_count(filter: &Filter) -> usize {
    let mut count = 0;
    filter.for_each_leaf(&mut |_| count += 1);
    count
}

/// The smallest string greater than every string starting with `prefix` (byte order), if any.
pub(crate) fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        if (0xD800..0xE000).contains(&next) {
            next = 0xE000;
        }
        if let Some(successor) = char::from_u32(next) {
            chars.push(successor);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

pub(crate) fn like_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The most operands one `UNION`/`INTERSECT` chain gets (SQLite's limit is 500).
const MAX_COMPOUND_TERMS: usize = 64;

/// What a filter is compiled for: the object type, and which of its top-level properties are
/// relationships (whose filters read the edges, not the property index).
pub(crate) struct Scope<'a> {
    pub(crate) object_type: &'a str,
    pub(crate) relationships: &'a [String],
    /// The backend the SQL is for (edge properties are read from JSON in its dialect).
    pub(crate) backend: Backend,
}

impl Scope<'_> {
    /// The relationship a filter field is about, and the rest of its path.
    fn relationship<'f>(&self, field: &'f ferridm_core::JsonPointer) -> Option<(&'f str, &'f [String])> {
        let (first, rest) = field.segments().split_first()?;
        self.relationships
            .iter()
            .any(|name| name == first)
            .then_some((first.as_str(), rest))
    }
}

/// What a relationship filter compares of an edge.
#[derive(Clone, Copy, PartialEq)]
enum EdgeField<'a> {
    /// `_ref` (or the relationship itself): collection and id of the far end.
    Reference,
    /// `_refResourceId`.
    Id,
    /// `_refResourceCollection`.
    Collection,
    /// `_refProperties/<name>`: a top-level string property of the edge.
    Property(&'a str),
}

impl<'a> EdgeField<'a> {
    /// The field a filter's path below the relationship names, if it is one of these.
    fn of(rest: &'a [String]) -> Option<Self> {
        match rest {
            [] => Some(Self::Reference),
            [field] => match field.as_str() {
                "_ref" => Some(Self::Reference),
                "_refResourceId" => Some(Self::Id),
                "_refResourceCollection" => Some(Self::Collection),
                _ => None,
            },
            [properties, name] if properties == "_refProperties" && !name.contains(['"', '\\']) => {
                Some(Self::Property(name))
            }
            _ => None,
        }
    }

    /// Appends the SQL value of the field of edge `r` (far end `far`), as text compared
    /// byte-wise. An edge property is read from the edge's JSON, the one dialect difference:
    /// `json_extract` on SQLite, `->>` on PostgreSQL.
    fn push_value(self, sql: &mut Sql, far: &str, backend: Backend) {
        match (self, backend) {
            (Self::Reference, _) => sql.push(&format!("r.{far}_coll || '/' || r.{far}_id")),
            (Self::Id, _) => sql.push(&format!("r.{far}_id")),
            (Self::Collection, _) => sql.push(&format!("r.{far}_coll")),
            (Self::Property(name), Backend::Sqlite) => sql
                .push("json_extract(r.props, ")
                .bind_text(format!("$.\"{name}\""))
                .push(")"),
            (Self::Property(name), Backend::Postgres) => sql
                .push("(CAST(r.props AS jsonb) ->> ")
                .bind_text(name)
                .push(") COLLATE \"C\""),
        };
    }

    /// Appends a condition that holds when the field has a value of the JSON type the
    /// comparisons read (a string; for presence, anything but null): always, but for an edge
    /// property.
    fn push_typed(self, sql: &mut Sql, backend: Backend, presence: bool) {
        let Self::Property(name) = self else {
            sql.push("1 = 1");
            return;
        };
        match backend {
            Backend::Sqlite => sql
                .push("json_type(r.props, ")
                .bind_text(format!("$.\"{name}\""))
                .push(")"),
            Backend::Postgres => sql
                .push("jsonb_typeof(CAST(r.props AS jsonb) -> ")
                .bind_text(name)
                .push(")"),
        };
        let string = if backend == Backend::Sqlite {
            "'text'"
        } else {
            "'string'"
        };
        if presence {
            sql.push(" <> 'null'");
        } else {
            sql.push(" = ").push(string);
        }
    }
}

/// A leaf over a relationship: the objects holding, in `property`, an edge whose far end
/// satisfies what `condition` appends (given the far end's column prefix, after ` AND `).
/// Both directions an edge may be stored in are read; the indexes lead with each end's id, so
/// a condition on the far end's id is an index probe.
fn push_relationship_leaf(sql: &mut Sql, scope: &Scope<'_>, property: &str, condition: &dyn Fn(&mut Sql, &str)) {
    let collection = crate::relationships::managed_collection(scope.object_type);
    for (index, (near, far)) in [("first", "second"), ("second", "first")].into_iter().enumerate() {
        if index > 0 {
            sql.push(" UNION ");
        }
        // `CROSS JOIN` keeps SQLite from starting at the objects of the type (it joins in the
        // order written); PostgreSQL plans it as any inner join.
        sql.push(&format!(
            "SELECT ro.pk AS v FROM relationships r CROSS JOIN objects ro WHERE ro.oid = r.{near}_id AND ro.otype = "
        ))
        .bind_text(scope.object_type)
        .push(&format!(" AND r.{near}_coll = "))
        .bind_text(collection.clone())
        .push(&format!(" AND r.{near}_prop = "))
        .bind_text(property)
        .push(" AND ");
        condition(sql, far);
    }
}

/// A comparison over a relationship (see [`push_relationship_leaf`]): strings compare exactly
/// (ids are not case-folded); an equality on `_ref` compares collection and id apart, so it
/// is an index probe; other literals, and fields below the reference other than `_ref`,
/// `_refResourceId` and `_refResourceCollection`, match nothing.
fn push_relationship_comparison(
    sql: &mut Sql,
    scope: &Scope<'_>,
    (property, rest): (&str, &[String]),
    op: ComparisonOp,
    value: &Literal,
    depth: &mut usize,
) {
    let (Literal::String(text), Some(field)) = (value, EdgeField::of(rest)) else {
        push_set(sql, &Filter::False, scope, depth);
        return;
    };
    if field == EdgeField::Reference && op == ComparisonOp::Eq {
        let Some((collection, id)) = text.rsplit_once('/') else {
            push_set(sql, &Filter::False, scope, depth);
            return;
        };
        push_relationship_leaf(sql, scope, property, &|sql: &mut Sql, far: &str| {
            sql.push(&format!("r.{far}_id = "))
                .bind_text(id)
                .push(&format!(" AND r.{far}_coll = "))
                .bind_text(collection);
        });
        return;
    }
    // Exact on both backends: SQLite's `LIKE` would fold ASCII case, PostgreSQL's would not.
    let backend = scope.backend;
    push_relationship_leaf(sql, scope, property, &|sql: &mut Sql, far: &str| {
        field.push_typed(sql, backend, false);
        sql.push(" AND ");
        match op {
            ComparisonOp::Co if text.is_empty() => {
                sql.push("1 = 1");
            }
            ComparisonOp::Co => {
                sql.push("REPLACE(");
                field.push_value(sql, far, backend);
                sql.push(", ").bind_text(text.clone()).push(", '') <> ");
                field.push_value(sql, far, backend);
            }
            ComparisonOp::Sw => {
                sql.push("SUBSTR(");
                field.push_value(sql, far, backend);
                sql.push(&format!(", 1, {}) = ", text.chars().count()))
                    .bind_text(text.clone());
            }
            _ => {
                field.push_value(sql, far, backend);
                sql.push(comparison_sql(op)).bind_text(text.clone());
            }
        }
    });
}

/// Presence of a relationship, or of one of its reference fields: any edge (for an edge
/// property, any edge holding it with a value other than null).
fn push_relationship_presence(
    sql: &mut Sql,
    scope: &Scope<'_>,
    (property, rest): (&str, &[String]),
    depth: &mut usize,
) {
    let Some(field) = EdgeField::of(rest) else {
        push_set(sql, &Filter::False, scope, depth);
        return;
    };
    let backend = scope.backend;
    push_relationship_leaf(sql, scope, property, &|sql: &mut Sql, far: &str| {
        sql.push(&format!("r.{far}_id IS NOT NULL AND "));
        field.push_typed(sql, backend, true);
    });
}

/// Appends a `SELECT v FROM …` yielding the keys (`objects.pk`) of the objects of
/// `object_type` that match `filter`. Leaves read the property index; `and`, `or` and `!`
/// become `INTERSECT`, `UNION` and `EXCEPT`, so the database starts from the index and looks
/// objects up by key rather than scanning the type.
fn push_set(sql: &mut Sql, filter: &Filter, scope: &Scope<'_>, depth: &mut usize) {
    let object_type = scope.object_type;
    match filter {
        Filter::True => {
            sql.push("SELECT pk AS v FROM objects WHERE otype = ")
                .bind_text(object_type);
        }
        Filter::False => {
            sql.push("SELECT pk AS v FROM objects WHERE 1 <> 1");
        }
        Filter::And(children) | Filter::Or(children) if children.is_empty() => {
            let empty = if matches!(filter, Filter::And(_)) {
                Filter::True
            } else {
                Filter::False
            };
            push_set(sql, &empty, scope, depth);
        }
        Filter::And(children) | Filter::Or(children) if children.len() > MAX_COMPOUND_TERMS => {
            // SQLite refuses compound selects of more than 500 terms: group them.
            let regroup = |group: &[Filter]| match filter {
                Filter::And(_) => Filter::And(group.to_vec()),
                _ => Filter::Or(group.to_vec()),
            };
            let groups: Vec<Filter> = children.chunks(MAX_COMPOUND_TERMS).map(regroup).collect();
            push_set(sql, &regroup(&groups), scope, depth);
        }
        Filter::And(children) | Filter::Or(children) => {
            let joiner = if matches!(filter, Filter::And(_)) {
                " INTERSECT "
            } else {
                " UNION "
            };
            for (index, child) in children.iter().enumerate() {
                if index > 0 {
                    sql.push(joiner);
                }
                push_nested(sql, child, scope, depth);
            }
        }
        Filter::Not(child) if matches!(**child, Filter::Extended { .. }) => {
            push_set(sql, &Filter::False, scope, depth);
        }
        Filter::Not(child) => {
            push_set(sql, &Filter::True, scope, depth);
            sql.push(" EXCEPT ");
            push_nested(sql, child, scope, depth);
        }
        Filter::Extended { .. } => push_set(sql, &Filter::False, scope, depth),
        Filter::Present(field) if scope.relationship(field).is_some() => {
            if let Some(relationship) = scope.relationship(field) {
                push_relationship_presence(sql, scope, relationship, depth);
            }
        }
        Filter::Comparison { field, op, value } if scope.relationship(field).is_some() => {
            if let Some(relationship) = scope.relationship(field) {
                push_relationship_comparison(sql, scope, relationship, *op, value, depth);
            }
        }
        Filter::Present(field) => {
            push_leaf(sql, object_type, &field.to_string(), |sql| {
                sql.push(" AND kind > ").bind(Bind::SmallInt(KIND_NULL));
            });
        }
        Filter::Comparison { field, op, value } => push_comparison(sql, scope, &field.to_string(), *op, value, depth),
    }
}

/// A set as one operand of a compound select (wrapped, since SQLite does not accept a
/// parenthesised compound as an operand).
fn push_nested(sql: &mut Sql, filter: &Filter, scope: &Scope<'_>, depth: &mut usize) {
    *depth += 1;
    let alias = format!("s{depth}");
    sql.push("SELECT v FROM (");
    push_set(sql, filter, scope, depth);
    sql.push(&format!(") {alias}"));
}

fn push_leaf(sql: &mut Sql, object_type: &str, prop: &str, rest: impl FnOnce(&mut Sql)) {
    sql.push("SELECT obj_pk AS v FROM object_props WHERE ");
    push_rows_of(sql, "", object_type, prop);
    rest(sql);
}

/// Appends `otype = ? AND prop = ?`: the index rows of `prop` of `object_type`, each column
/// prefixed with `rows` (a table alias and its dot, or nothing).
fn push_rows_of(sql: &mut Sql, rows: &str, object_type: &str, prop: &str) {
    sql.push(rows)
        .push("otype = ")
        .bind_text(object_type)
        .push(" AND ")
        .push(rows)
        .push("prop = ")
        .bind_text(index_text(prop));
}

/// Appends ` AND kind = ? AND num = 0 AND str` (columns prefixed with `rows`): the rows' string
/// keys, for a comparison to follow.
fn push_string_key(sql: &mut Sql, rows: &str) {
    sql.push(" AND ")
        .push(rows)
        .push("kind = ")
        .bind(Bind::SmallInt(KIND_STRING))
        .push(" AND ")
        .push(rows)
        .push("num = 0 AND ")
        .push(rows)
        .push("str");
}

/// A leaf over string keys: `… AND str` followed by what `compare` appends.
fn push_string_leaf(sql: &mut Sql, object_type: &str, prop: &str, compare: impl FnOnce(&mut Sql)) {
    push_leaf(sql, object_type, prop, |sql| {
        push_string_key(sql, "");
        compare(sql);
    });
}

/// A leaf over the long strings whose key is `key`: `… AND full_str` followed by what
/// `compare` appends.
fn push_long_tie(sql: &mut Sql, object_type: &str, prop: &str, key: String, compare: impl FnOnce(&mut Sql)) {
    push_string_leaf(sql, object_type, prop, |sql| {
        sql.push(" = ").bind_text(key).push(" AND full_str");
        compare(sql);
    });
}

fn comparison_sql(op: ComparisonOp) -> &'static str {
    match op {
        ComparisonOp::Eq | ComparisonOp::Co | ComparisonOp::Sw => " = ",
        ComparisonOp::Gt => " > ",
        ComparisonOp::Ge => " >= ",
        ComparisonOp::Lt => " < ",
        ComparisonOp::Le => " <= ",
    }
}

fn push_comparison(sql: &mut Sql, scope: &Scope<'_>, prop: &str, op: ComparisonOp, value: &Literal, depth: &mut usize) {
    let object_type = scope.object_type;
    match value {
        Literal::Null if op == ComparisonOp::Eq => {
            // Missing or null: every object without a non-null value, plus arrays holding null.
            push_nested(sql, &Filter::True, scope, depth);
            sql.push(" EXCEPT SELECT v FROM (");
            push_leaf(sql, object_type, prop, |sql| {
                sql.push(" AND kind > ").bind(Bind::SmallInt(KIND_NULL));
            });
            sql.push(") nn UNION SELECT v FROM (");
            push_leaf(sql, object_type, prop, |sql| {
                sql.push(" AND kind = ").bind(Bind::SmallInt(KIND_NULL));
            });
            sql.push(") nl");
        }
        Literal::Null => push_set(sql, &Filter::False, scope, depth),
        Literal::String(text) => {
            let (key, full) = split_key(fold_string(text));
            match (op, full) {
                (ComparisonOp::Co, full) => {
                    // The key holds the start of a long string; the rest is searched in the
                    // long strings' own rows (a partial index keeps that part small).
                    let pattern = format!("%{}%", like_escape(full.as_deref().unwrap_or(&key)));
                    push_string_leaf(sql, object_type, prop, |sql| {
                        sql.push(" LIKE ").bind_text(pattern.clone()).push(" ESCAPE '\\'");
                    });
                    sql.push(" UNION ");
                    push_leaf(sql, object_type, prop, |sql| {
                        sql.push(" AND full_str IS NOT NULL AND full_str LIKE ")
                            .bind_text(pattern)
                            .push(" ESCAPE '\\'");
                    });
                }
                (ComparisonOp::Sw, None) => push_string_leaf(sql, object_type, prop, |sql| {
                    let successor = prefix_successor(&key);
                    sql.push(" >= ").bind_text(key);
                    if let Some(successor) = successor {
                        sql.push(" AND str < ").bind_text(successor);
                    }
                }),
                (_, None) => push_string_leaf(sql, object_type, prop, |sql| {
                    sql.push(comparison_sql(op)).bind_text(key);
                }),
                (ComparisonOp::Eq, Some(full)) => push_long_tie(sql, object_type, prop, key, |sql| {
                    sql.push(" = ").bind_text(full);
                }),
                (ComparisonOp::Sw, Some(full)) => push_long_tie(sql, object_type, prop, key, |sql| {
                    let successor = prefix_successor(&full);
                    sql.push(" >= ").bind_text(full);
                    if let Some(successor) = successor {
                        sql.push(" AND full_str < ").bind_text(successor);
                    }
                }),
                (_, Some(full)) => {
                    // A long operand: strings whose keys differ compare as their keys do;
                    // those with the same key compare whole.
                    let strict = match op {
                        ComparisonOp::Gt | ComparisonOp::Ge => " > ",
                        _ => " < ",
                    };
                    push_string_leaf(sql, object_type, prop, |sql| {
                        sql.push(strict).bind_text(key.clone());
                    });
                    sql.push(" UNION ");
                    push_long_tie(sql, object_type, prop, key, |sql| {
                        sql.push(comparison_sql(op)).bind_text(full);
                    });
                }
            }
        }
        Literal::Integer(_) | Literal::Float(_) | Literal::Boolean(_) => {
            let (kind, number) = match value {
                Literal::Boolean(flag) => (KIND_BOOLEAN, f64::from(u8::from(*flag))),
                #[expect(clippy::cast_precision_loss, reason = "filters compare numbers as doubles, like IDM")]
                Literal::Integer(integer) => (KIND_NUMBER, *integer as f64),
                Literal::Float(float) => (KIND_NUMBER, *float),
                Literal::String(_) | Literal::Null => (KIND_NULL, 0.0),
            };
            push_leaf(sql, object_type, prop, |sql| {
                sql.push(" AND kind = ")
                    .bind(Bind::SmallInt(kind))
                    .push(" AND num")
                    .push(comparison_sql(op))
                    .bind(Bind::Double(number));
            });
        }
    }
}

/// Appends the condition (on the alias `o`) selecting the matching objects of the type.
pub(crate) fn push_condition(sql: &mut Sql, filter: &Filter, scope: &Scope<'_>) {
    if *filter == Filter::True {
        sql.push("o.otype = ").bind_text(scope.object_type);
        return;
    }
    push_keys_in(sql, "o.pk", filter, scope);
}

/// Appends `column IN (…)` with the keys of the objects of the type that match `filter`.
fn push_keys_in(sql: &mut Sql, column: &str, filter: &Filter, scope: &Scope<'_>) {
    sql.push(column).push(" IN (");
    push_set(sql, filter, scope, &mut 0);
    sql.push(")");
}

const ID_COLUMNS: &str = "o.pk, o.oid, o.rev, '{}', '{}', o.login_count";

/// The columns of `objects o` a query reads: [`OBJECT_COLUMNS`], or the same columns with the
/// content and metadata left empty when it reads only ids.
fn object_columns(query: &ObjectQuery<'_>) -> &'static str {
    if query.loads_content() {
        OBJECT_COLUMNS
    } else {
        ID_COLUMNS
    }
}

/// The sort values of an object for each key, as an index of every property holds them (so
/// whether its type indexes the key or not).
pub(crate) fn sort_values(object: &StoredObject, keys: &[SortKey], hidden: &[String]) -> Vec<SortValue> {
    let rows = rows_of_every_property(&object.id, &object.content, &object.meta, hidden);
    keys.iter()
        .map(|key| {
            let prop = prop_key(&key.field);
            rows.iter()
                .find(|row| row.sorted && row.prop == prop)
                .map(|row| (row.kind, row.num, row.str.clone()))
        })
        .collect()
}

/// One ordered column of the general sort: SQL expression, ascending?, cookie value.
struct Component {
    expr: String,
    ascending: bool,
    value: Bind,
}

fn keyset_components(keys: &[SortKey], cookie: &ObjectCookie) -> Vec<Component> {
    let mut components = Vec::with_capacity(keys.len() * 4 + 1);
    for (index, (key, value)) in keys.iter().zip(&cookie.k).enumerate() {
        let alias = format!("s{index}");
        let (missing, kind, num, text) = match value {
            Some((kind, num, text)) => (0, *kind, *num, text.clone()),
            None => (1, 0, 0.0, String::new()),
        };
        components.push(Component {
            expr: format!("(CASE WHEN {alias}.kind IS NULL THEN 1 ELSE 0 END)"),
            ascending: true,
            value: Bind::BigInt(missing),
        });
        components.push(Component {
            expr: format!("COALESCE({alias}.kind, 0)"),
            ascending: key.ascending,
            value: Bind::SmallInt(kind),
        });
        components.push(Component {
            expr: format!("COALESCE({alias}.num, 0)"),
            ascending: key.ascending,
            value: Bind::Double(num),
        });
        components.push(Component {
            expr: format!("COALESCE({alias}.str, '')"),
            ascending: key.ascending,
            value: Bind::Text(text),
        });
    }
    components.push(Component {
        expr: "o.pk".to_owned(),
        ascending: keys.last().is_none_or(|key| key.ascending),
        value: Bind::BigInt(cookie.p),
    });
    components
}

/// `(c0 after v0) OR (c0 = v0 AND c1 after v1) OR …`
fn push_after(sql: &mut Sql, components: &[Component]) {
    sql.push(" AND (");
    for (j, component) in components.iter().enumerate() {
        if j > 0 {
            sql.push(" OR ");
        }
        sql.push("(");
        for earlier in &components[..j] {
            sql.push(&earlier.expr)
                .push(" = ")
                .bind(earlier.value.clone())
                .push(" AND ");
        }
        sql.push(&component.expr)
            .push(if component.ascending { " > " } else { " < " })
            .bind(component.value.clone())
            .push(")");
    }
    sql.push(")");
}

impl Store {
    /// Runs a query and returns one page.
    pub fn query(&self, query: &ObjectQuery<'_>) -> Result<QueryPage, StoreError> {
        Ok(self.query_with_edges(query, &[])?.0)
    }

    /// Runs a query and returns one page with the edges `properties` hold for its objects, read
    /// on the same connection. On PostgreSQL a page in creation order and its edges are one
    /// statement (one round trip).
    pub fn query_with_edges(
        &self,
        query: &ObjectQuery<'_>,
        properties: &[&str],
    ) -> Result<(QueryPage, Vec<Edge>), StoreError> {
        let properties: Vec<&str> = properties.iter().copied().filter(|p| !p.is_empty()).collect();
        let cookie = query
            .cookie
            .map(|text| decode_object_cookie(text, query.sort.len()))
            .transpose()?;
        let cacheable = leaf_count(query.filter) <= CACHEABLE_LEAVES;
        let deadline = query.time_limit.and_then(Deadline::after);
        let coverage = self.index_coverage(query.object_type)?;
        let answerable = Answerable {
            spec: query.index,
            coverage: &coverage,
        };
        let scanned = !answerable.query(query);
        // A page in creation order reads its edges in its own statement; any other reads them
        // with a second one.
        let edges_apart = !properties.is_empty() && (scanned || !query.sort.is_empty());
        // A page with its edges or its count reads more than once: from one snapshot.
        let read = |conn: &mut DbConnection| {
            // With a count, a paged query reads one row ahead, so a page that ends the results
            // (however it was reached) carries no cookie; without one, IDM's rule is a cookie
            // on every full page.
            let look_ahead = u64::from(query.count && query.page_size.is_some());
            let limit = query
                .page_size
                .map_or(query.limit.saturating_add(1), |size| u64::from(size) + look_ahead);
            let mut scanned_total = None;
            let (mut objects, page_edges) = match query.sort {
                _ if scanned => {
                    let (objects, total) =
                        scan_page(conn, query, &answerable, cookie.as_ref(), limit, deadline.as_ref())?;
                    scanned_total = total;
                    (objects, None)
                }
                [key] if query.offset == 0 => (
                    single_key_page(conn, query, key, cookie.as_ref(), limit, cacheable)?,
                    None,
                ),
                [] => creation_order_page(conn, query, cookie.as_ref(), limit, cacheable, &properties)?,
                _ => (general_page(conn, query, cookie.as_ref(), limit, cacheable)?, None),
            };
            let total = if scanned_total.is_some() {
                scanned_total
            } else if query.count {
                if let Some(deadline) = &deadline {
                    deadline.bound_next_statements(conn)?;
                }
                let mut sql = Sql::uncached("SELECT COUNT(*) FROM objects o WHERE ");
                sql.set_cacheable(cacheable);
                push_condition(&mut sql, query.filter, &query.scope(backend_of(conn)));
                let count: i64 = sql.typed::<BigInt>().get_result(conn)?;
                Some(u64::try_from(count).unwrap_or_default())
            } else {
                None
            };
            let mut read_ahead = None;
            let more_beyond = match query.page_size {
                Some(size) if look_ahead == 1 => {
                    let more = objects.len() > size as usize;
                    if more {
                        read_ahead = objects.pop();
                    }
                    more
                }
                _ => true,
            };
            let edges = match page_edges {
                // The object read ahead is not on the page; neither are its edges.
                Some(mut edges) => {
                    if let Some(read_ahead) = read_ahead {
                        edges.retain(|edge| edge.owner_id != read_ahead.id);
                    }
                    edges
                }
                None => {
                    let ids: Vec<&str> = objects.iter().map(|object| object.id.as_str()).collect();
                    select_edges(conn, &managed_collection(query.object_type), &ids, Some(&properties))?
                }
            };
            let next = match (query.page_size, objects.last()) {
                (Some(size), Some(last)) if objects.len() >= size as usize && more_beyond => Some(
                    Cookie {
                        k: sort_values(last, query.sort, &query.index.hidden),
                        p: last.pk,
                    }
                    .encode()?,
                ),
                _ => None,
            };
            Ok((
                QueryPage {
                    objects,
                    cookie: next,
                    total,
                },
                edges,
            ))
        };
        let several_reads = query.count || scanned || edges_apart;
        self.read_within(deadline.as_ref(), |conn| {
            if several_reads {
                in_read_snapshot(conn, read)
            } else {
                read(conn)
            }
        })
    }
}

pub(crate) fn load(conn: &mut DbConnection, sql: Sql) -> Result<Vec<StoredObject>, StoreError> {
    let rows: Vec<(i64, String, i64, String, String, i64)> = sql.typed::<ObjectColumnTypes>().load(conn)?;
    rows.into_iter().map(object_from_columns).collect()
}

fn select_from_objects(query: &ObjectQuery<'_>, cacheable: bool) -> Sql {
    select_objects_from(query, cacheable, FROM_OBJECTS)
}

fn select_objects_from(query: &ObjectQuery<'_>, cacheable: bool, from: &str) -> Sql {
    let mut sql = Sql::uncached(&format!("SELECT {}{from}", object_columns(query)));
    sql.set_cacheable(cacheable);
    sql
}

/// The objects a query reads.
const FROM_OBJECTS: &str = " FROM objects o";

/// Where a page in creation order reads its objects, and the column that holds their keys.
struct PageSource {
    from: &'static str,
    /// Continues the conditions with the keys after a cookie's.
    after: &'static str,
    /// Orders the page by key (grouping first where one object can have several rows).
    order: &'static str,
}

/// The objects themselves.
const OBJECTS: PageSource = PageSource {
    from: FROM_OBJECTS,
    after: " AND o.pk > ",
    order: " ORDER BY o.pk",
};

/// The objects through the index rows `s` of one value ([`IndexSeek`]).
const INDEX_ROWS: PageSource = PageSource {
    from: " FROM object_props s CROSS JOIN objects o ON o.pk = s.obj_pk",
    after: " AND s.obj_pk > ",
    order: " GROUP BY s.obj_pk ORDER BY s.obj_pk",
};

/// The index rows of one value: what a filter that is one equality with a short string selects
/// (`userName eq "bjensen"`). Rows with every index column but the key fixed come in key order,
/// so SQLite reads a page of them by joining the objects to the rows, grouped by key (an object
/// whose array holds the value twice has two rows), with no temporary table for the keys of
/// `o.pk IN (…)`. (The cached join is not prepared again for each new value because the bundled
/// SQLite keeps plans stable: `SQLITE_ENABLE_QPSG`.)
struct IndexSeek {
    prop: String,
    key: String,
}

impl IndexSeek {
    /// The seek that answers `filter` on its own, if there is one.
    fn of(filter: &Filter, scope: &Scope<'_>) -> Option<Self> {
        let Filter::Comparison {
            field,
            op: ComparisonOp::Eq,
            value: Literal::String(text),
        } = filter
        else {
            return None;
        };
        if scope.relationship(field).is_some() {
            return None;
        }
        match split_key(fold_string(text)) {
            (key, None) => Some(Self {
                prop: field.to_string(),
                key,
            }),
            (_, Some(_)) => None,
        }
    }

    /// Appends ` WHERE` and the conditions on the rows `s` of [`INDEX_ROWS`]: those of
    /// the equality's leaf ([`push_string_leaf`]).
    fn push_where(self, sql: &mut Sql, object_type: &str) {
        sql.push(" WHERE ");
        push_rows_of(sql, "s.", object_type, &self.prop);
        push_string_key(sql, "s.");
        sql.push(" = ").bind_text(self.key);
    }
}

/// The backend a connection runs on.
fn backend_of(conn: &DbConnection) -> Backend {
    match conn {
        DbConnection::Sqlite(_) => Backend::Sqlite,
        DbConnection::Postgres(_) => Backend::Postgres,
    }
}

fn push_where(sql: &mut Sql, query: &ObjectQuery<'_>, backend: Backend) {
    sql.push(" WHERE ");
    push_condition(sql, query.filter, &query.scope(backend));
}

/// A page in creation order and, when `properties` names any, the edges they hold for its
/// objects, read in the same statement (on PostgreSQL, one round trip; on SQLite, no
/// transaction around two statements).
fn creation_order_page(
    conn: &mut DbConnection,
    query: &ObjectQuery<'_>,
    cookie: Option<&ObjectCookie>,
    limit: u64,
    cacheable: bool,
    properties: &[&str],
) -> Result<(Vec<StoredObject>, Option<Vec<Edge>>), StoreError> {
    let backend = backend_of(conn);
    let collection = managed_collection(query.object_type);
    let seek = match backend {
        Backend::Sqlite => IndexSeek::of(query.filter, &query.scope(backend)),
        Backend::Postgres => None,
    };
    let source = if seek.is_some() { INDEX_ROWS } else { OBJECTS };
    let mut sql = if properties.is_empty() || backend == Backend::Postgres {
        select_objects_from(query, cacheable, source.from)
    } else {
        select_objects_with_edge_arrays(object_columns(query), &collection, properties, cacheable, source.from)
    };
    match seek {
        Some(seek) => seek.push_where(&mut sql, query.object_type),
        None => push_where(&mut sql, query, backend),
    }
    if let Some(cookie) = cookie {
        sql.push(source.after).bind_i64(cookie.p);
    }
    sql.push(source.order);
    sql.push_limit(limit, if cookie.is_some() { 0 } else { query.offset });
    if properties.is_empty() {
        return Ok((load(conn, sql)?, None));
    }
    if backend == Backend::Sqlite {
        let (objects, edges) = load_objects_with_edge_arrays(conn, sql)?;
        return Ok((objects, Some(edges)));
    }
    let mut with_edges = Sql::cached("WITH q (pk, oid, rev, content, meta, login_count) AS MATERIALIZED (");
    with_edges
        .append(sql)
        .push(") SELECT CAST(0 AS BIGINT), q.pk, q.oid, q.rev, q.content, q.meta, q.login_count, '', '', '' FROM q");
    push_edges_of(&mut with_edges, EdgeOwners::Page, &collection, properties);
    let (objects, edges) = load_objects_and_edges(conn, with_edges)?;
    Ok((objects, Some(edges)))
}

/// Below this many matches, a page sorted on one key is read from the matches (each one's sort
/// row looked up, then all sorted) rather than by walking the key's rows in order until the page
/// is full: the walk passes about `objects × page size / matches` rows, the sort handles every
/// match.
const FEW_MATCHES: i64 = 1000;

/// Whether fewer than `bound` index rows match `filter` (counting stops at `bound`).
fn fewer_matches_than(
    conn: &mut DbConnection,
    filter: &Filter,
    scope: &Scope<'_>,
    bound: i64,
    cacheable: bool,
) -> Result<bool, StoreError> {
    let mut sql = Sql::uncached("SELECT COUNT(*) FROM (SELECT v FROM (");
    sql.set_cacheable(cacheable);
    push_set(&mut sql, filter, scope, &mut 0);
    sql.push(") m LIMIT ").bind_i64(bound).push(" + 0) c");
    let count: i64 = sql.typed::<BigInt>().get_result(conn)?;
    Ok(count < bound)
}

fn single_key_page(
    conn: &mut DbConnection,
    query: &ObjectQuery<'_>,
    key: &SortKey,
    cookie: Option<&ObjectCookie>,
    limit: u64,
    cacheable: bool,
) -> Result<Vec<StoredObject>, StoreError> {
    let prop = prop_key(&key.field);
    let position = cookie.map(|cookie| (cookie.k.first().cloned().flatten(), cookie.p));
    let mut objects = Vec::new();
    // Phase one: objects that have the field, in index order.
    if !matches!(position, Some((None, _))) {
        let backend = backend_of(conn);
        let scope = query.scope(backend);
        let from_matches = backend == Backend::Sqlite
            && *query.filter != Filter::True
            && fewer_matches_than(conn, query.filter, &scope, FEW_MATCHES, cacheable)?;
        let mut sql = Sql::uncached(&format!("SELECT {}", object_columns(query)));
        sql.set_cacheable(cacheable);
        if from_matches {
            // Few matches: their sort rows, looked up by key, then sorted. SQLite keeps the
            // order of a `CROSS JOIN`.
            sql.push(" FROM (SELECT DISTINCT v FROM (");
            push_set(&mut sql, query.filter, &scope, &mut 0);
            sql.push(") m) f CROSS JOIN object_props s ON s.obj_pk = f.v CROSS JOIN objects o ON o.pk = s.obj_pk");
        } else {
            sql.push(" FROM object_props s JOIN objects o ON o.pk = s.obj_pk");
        }
        sql.push(" WHERE s.otype = ")
            .bind_text(query.object_type)
            .push(" AND s.prop = ")
            .bind_text(prop.clone())
            .push(" AND s.sorted = 1");
        if *query.filter != Filter::True && !from_matches {
            // The sort rows in order, each checked against the matches before its object is
            // read.
            sql.push(" AND ");
            push_keys_in(&mut sql, "s.obj_pk", query.filter, &scope);
        }
        let direction = if key.ascending { "ASC" } else { "DESC" };
        if let Some((Some((kind, num, text)), pk)) = &position {
            // One row-value comparison, so both backends can seek in the index.
            let after = if key.ascending { ">" } else { "<" };
            sql.push(&format!(" AND (s.kind, s.num, s.str, s.obj_pk) {after} ("))
                .bind(Bind::SmallInt(*kind))
                .push(", ")
                .bind(Bind::Double(*num))
                .push(", ")
                .bind_text(text.clone())
                .push(", ")
                .bind_i64(*pk)
                .push(")");
        }
        sql.push(&format!(
            " ORDER BY s.kind {direction}, s.num {direction}, s.str {direction}, s.obj_pk {direction}"
        ));
        sql.push_limit(limit, 0);
        objects = load(conn, sql)?;
    }
    let remaining = limit.saturating_sub(objects.len() as u64);
    if remaining == 0 {
        return Ok(objects);
    }
    // Phase two: objects without the field, in creation order, after every object with it.
    let mut sql = select_from_objects(query, cacheable);
    push_where(&mut sql, query, backend_of(conn));
    sql.push(" AND NOT EXISTS (SELECT 1 FROM object_props s WHERE s.obj_pk = o.pk AND s.prop = ")
        .bind_text(prop)
        .push(" AND s.sorted = 1)");
    if let Some((None, pk)) = position {
        sql.push(if key.ascending { " AND o.pk > " } else { " AND o.pk < " })
            .bind_i64(pk);
    }
    sql.push(if key.ascending {
        " ORDER BY o.pk ASC"
    } else {
        " ORDER BY o.pk DESC"
    });
    sql.push_limit(remaining, 0);
    objects.extend(load(conn, sql)?);
    Ok(objects)
}

fn general_page(
    conn: &mut DbConnection,
    query: &ObjectQuery<'_>,
    cookie: Option<&ObjectCookie>,
    limit: u64,
    cacheable: bool,
) -> Result<Vec<StoredObject>, StoreError> {
    let mut sql = select_from_objects(query, cacheable);
    for (index, key) in query.sort.iter().enumerate() {
        sql.push(&format!(
            " LEFT JOIN object_props s{index} ON s{index}.obj_pk = o.pk AND s{index}.sorted = 1 AND s{index}.prop = "
        ))
        .bind_text(prop_key(&key.field));
    }
    push_where(&mut sql, query, backend_of(conn));
    if let Some(cookie) = cookie {
        push_after(&mut sql, &keyset_components(query.sort, cookie));
    }
    sql.push(" ORDER BY ");
    for (index, key) in query.sort.iter().enumerate() {
        let direction = if key.ascending { "ASC" } else { "DESC" };
        sql.push(&format!(
            "(CASE WHEN s{index}.kind IS NULL THEN 1 ELSE 0 END) ASC, s{index}.kind {direction}, \
             s{index}.num {direction}, s{index}.str {direction}, "
        ));
    }
    sql.push(if query.sort.last().is_none_or(|key| key.ascending) {
        "o.pk ASC"
    } else {
        "o.pk DESC"
    });
    sql.push_limit(limit, if cookie.is_some() { 0 } else { query.offset });
    load(conn, sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_successor_increments_the_last_character() {
        assert_eq!(prefix_successor("abc").as_deref(), Some("abd"));
        assert_eq!(prefix_successor("").as_deref(), None);
        assert_eq!(prefix_successor("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_escape("50%_a\\b"), "50\\%\\_a\\\\b");
    }

    #[test]
    fn cookies_round_trip_and_reject_garbage() {
        let cookie: ObjectCookie = Cookie {
            k: vec![Some((3, 0.0, "smith".into())), None],
            p: 42,
        };
        let text = cookie.encode().unwrap();
        assert_eq!(decode_object_cookie(&text, 2).unwrap(), cookie);
        assert!(matches!(decode_object_cookie(&text, 1), Err(StoreError::InvalidCookie)));
        assert!(matches!(decode_object_cookie("abc", 0), Err(StoreError::InvalidCookie)));
        assert!(matches!(decode_object_cookie("!!!", 0), Err(StoreError::InvalidCookie)));
    }
}
