//! Throw-away databases for tests (feature `test-support`): an SQLite file in a temporary
//! directory, or a fresh schema in the PostgreSQL named by `FERRIDM_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped again when the value is dropped.
//! With `FERRIDM_TEST_REQUIRE_POSTGRES=1` an unreachable PostgreSQL fails the test instead of
//! skipping its PostgreSQL half.
//!
//! Also [`compile_filter`], a filter's SQL without a database, for the fuzz targets.

use diesel::Connection;
use diesel::connection::SimpleConnection;

use crate::Backend;

const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database that exists for as long as this value does.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    backend: Backend,
    schema: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// A new SQLite database file in its own temporary directory.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("cannot create a temporary directory: {error}"));
        let url = format!("sqlite://{}", dir.path().join("ferridm.db").display());
        Self {
            url,
            backend: Backend::Sqlite,
            schema: None,
            _dir: Some(dir),
        }
    }

    /// A new, empty PostgreSQL schema, or `None` when no PostgreSQL is reachable (and none is
    /// required).
    pub fn postgres() -> Option<Self> {
        let base = std::env::var("FERRIDM_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned());
        let required = std::env::var("FERRIDM_TEST_REQUIRE_POSTGRES").is_ok_and(|value| value == "1");
        let mut admin = match diesel::PgConnection::establish(&base) {
            Ok(conn) => conn,
            Err(error) if required => panic!("PostgreSQL is required but unreachable at {base}: {error}"),
            Err(_) => return None,
        };
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        admin
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .unwrap_or_else(|error| panic!("cannot create schema {schema}: {error}"));
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-csearch_path%3D{schema}");
        Some(Self {
            url,
            backend: Backend::Postgres,
            schema: Some((base, schema)),
            _dir: None,
        })
    }

    /// Every backend available here: SQLite always, PostgreSQL when reachable.
    pub fn all() -> Vec<Self> {
        let mut databases = vec![Self::sqlite()];
        databases.extend(Self::postgres());
        databases
    }

    /// The URL to open.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((base, schema)) = &self.schema
            && let Ok(mut admin) = diesel::PgConnection::establish(base)
        {
            let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
    }
}

impl crate::Store {
    /// How many times an object's metadata was written without a new revision (tests count
    /// rescoring writes with it).
    pub fn metadata_writes(&self, object_type: &str, id: &str) -> i64 {
        use diesel::prelude::*;

        use crate::schema::objects;
        self.read(|conn| {
            Ok(objects::table
                .filter(objects::otype.eq(object_type))
                .filter(objects::oid.eq(id))
                .select(objects::meta_rev)
                .get_result::<i64>(conn)?)
        })
        .unwrap_or_else(|error| panic!("cannot read the metadata writes of {object_type}/{id}: {error}"))
    }
}

impl crate::Store {
    /// The properties (JSON pointers, each once, in byte order) the index holds rows of for an
    /// object (tests see what a write or a reindex indexed with it).
    pub fn index_properties(&self, object_type: &str, id: &str) -> Vec<String> {
        use diesel::prelude::*;
        use diesel::sql_types::Text;

        let mut select = crate::sql::Sql::uncached(
            "SELECT DISTINCT p.prop FROM object_props p JOIN objects o ON o.pk = p.obj_pk WHERE o.otype = ",
        );
        select.bind_text(object_type).push(" AND o.oid = ").bind_text(id);
        let mut props = self
            .read(|conn| Ok(select.typed::<Text>().load::<String>(conn)?))
            .unwrap_or_else(|error| panic!("cannot read the index rows of {object_type}/{id}: {error}"));
        props.sort();
        props
    }
}

/// A filter compiled to SQL as queries compile it (the condition on the alias `o`).
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledFilter {
    /// The SQL text, with `?` wherever a value is bound.
    pub text: String,
    /// How many values are bound.
    pub binds: usize,
    /// The bound text values, in order.
    pub texts: Vec<String>,
}

/// Compiles `filter` over objects of `object_type` without a database, so that the fuzz
/// targets can check that every literal is bound and none reaches the SQL text.
pub fn compile_filter(filter: &ferridm_core::filter::Filter, object_type: &str) -> CompiledFilter {
    let mut sql = crate::sql::Sql::uncached("");
    crate::query::push_condition(
        &mut sql,
        filter,
        &crate::query::Scope {
            object_type,
            relationships: &[],
            backend: crate::Backend::Sqlite,
        },
    );
    let (text, binds) = sql.text_and_binds();
    let texts = binds
        .iter()
        .filter_map(|bind| match bind {
            crate::sql::Bind::Text(text) | crate::sql::Bind::NullableText(Some(text)) => Some(text.clone()),
            _ => None,
        })
        .collect();
    CompiledFilter {
        text,
        binds: binds.len(),
        texts,
    }
}

#[cfg(test)]
mod tests {
    use super::compile_filter;

    #[test]
    fn compiled_filters_bind_every_value() {
        let filter = ferridm_core::filter::parse(r#"userName eq "x'; --" and !(age gt 3)"#).unwrap();
        let compiled = compile_filter(&filter, "managed/user");
        assert_eq!(
            compiled.text,
            "o.pk IN (SELECT v FROM (SELECT obj_pk AS v FROM object_props WHERE otype = ? AND prop = ? AND kind = ? \
             AND num = 0 AND str = ?) s1 INTERSECT SELECT v FROM (SELECT pk AS v FROM objects WHERE otype = ? EXCEPT \
             SELECT v FROM (SELECT obj_pk AS v FROM object_props WHERE otype = ? AND prop = ? AND kind = ? AND num > ?) \
             s3) s2)"
        );
        assert_eq!(
            compiled.texts,
            [
                "managed/user",
                "/userName",
                "x'; --",
                "managed/user",
                "managed/user",
                "/age"
            ]
        );
        assert_eq!(compiled.binds, 9);
    }
}
