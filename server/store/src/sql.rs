//! A small builder for SQL text with bound values, rendered through diesel so placeholders and
//! binding follow whichever backend the connection runs on. Values are always bound, never
//! spliced into the text; the text itself only ever comes from this crate's code.

use std::marker::PhantomData;

use diesel::QueryResult;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Double, Nullable, SmallInt, Text};

use crate::connection::{DbConnection, MultiBackend};

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bind {
    Text(String),
    NullableText(Option<String>),
    BigInt(i64),
    SmallInt(i16),
    Double(f64),
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Sql(String),
    Bind(Bind),
}

/// SQL text interleaved with bound values.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Sql {
    parts: Vec<Part>,
    cacheable: bool,
}

impl Sql {
    /// Starts a statement whose text has a small, fixed set of shapes, so the prepared
    /// statement may be cached per connection.
    pub(crate) fn cached(text: &str) -> Self {
        Self {
            parts: vec![Part::Sql(text.to_owned())],
            cacheable: true,
        }
    }

    /// Starts a statement whose text varies with the request (never cached, so hostile input
    /// cannot grow the statement cache).
    pub(crate) fn uncached(text: &str) -> Self {
        Self {
            parts: vec![Part::Sql(text.to_owned())],
            cacheable: false,
        }
    }

    /// Marks whether the prepared statement may be cached.
    pub(crate) fn set_cacheable(&mut self, cacheable: bool) {
        self.cacheable = cacheable;
    }

    /// Appends SQL text.
    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        match self.parts.last_mut() {
            Some(Part::Sql(last)) => last.push_str(text),
            _ => self.parts.push(Part::Sql(text.to_owned())),
        }
        self
    }

    /// Appends another statement's text and bound values; the whole may be cached only when
    /// both parts may.
    pub(crate) fn append(&mut self, other: Sql) -> &mut Self {
        self.cacheable &= other.cacheable;
        for part in other.parts {
            match part {
                Part::Sql(text) => {
                    self.push(&text);
                }
                Part::Bind(value) => {
                    self.bind(value);
                }
            }
        }
        self
    }

    /// Appends a placeholder bound to `value`.
    pub(crate) fn bind(&mut self, value: Bind) -> &mut Self {
        self.parts.push(Part::Bind(value));
        self
    }

    /// Appends a text placeholder.
    pub(crate) fn bind_text(&mut self, value: impl Into<String>) -> &mut Self {
        self.bind(Bind::Text(value.into()))
    }

    /// Appends a 64-bit integer placeholder.
    pub(crate) fn bind_i64(&mut self, value: i64) -> &mut Self {
        self.bind(Bind::BigInt(value))
    }

    /// Appends `LIMIT limit` and, when `offset` is positive, `OFFSET offset`, both bound. Each
    /// is written as an expression (`? + 0`): SQLite plans a bare bound `LIMIT ?` around the
    /// value it was prepared with and so prepares a cached statement again every time it is
    /// bound, which an expression avoids.
    pub(crate) fn push_limit(&mut self, limit: u64, offset: u64) -> &mut Self {
        self.push(" LIMIT ")
            .bind_i64(i64::try_from(limit).unwrap_or(i64::MAX))
            .push(" + 0");
        if offset > 0 {
            self.push(" OFFSET ")
                .bind_i64(i64::try_from(offset).unwrap_or(i64::MAX))
                .push(" + 0");
        }
        self
    }

    /// The text with `?` for each placeholder, and the bound values in order (for the fuzz
    /// targets, which check that no value ever reaches the text).
    #[cfg(feature = "test-support")]
    pub(crate) fn text_and_binds(&self) -> (String, Vec<Bind>) {
        let mut text = String::new();
        let mut binds = Vec::new();
        for part in &self.parts {
            match part {
                Part::Sql(sql) => text.push_str(sql),
                Part::Bind(bind) => {
                    text.push('?');
                    binds.push(bind.clone());
                }
            }
        }
        (text, binds)
    }

    /// This statement as a query whose rows have the SQL type `ST`.
    pub(crate) fn typed<ST>(self) -> TypedSql<ST> {
        TypedSql {
            sql: self,
            row: PhantomData,
        }
    }
}

impl QueryFragment<MultiBackend> for Sql {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, MultiBackend>) -> QueryResult<()> {
        if !self.cacheable {
            out.unsafe_to_cache_prepared();
        }
        for part in &self.parts {
            match part {
                Part::Sql(text) => out.push_sql(text),
                Part::Bind(Bind::Text(value)) => out.push_bind_param::<Text, String>(value)?,
                Part::Bind(Bind::NullableText(value)) => {
                    out.push_bind_param::<Nullable<Text>, Option<String>>(value)?
                }
                Part::Bind(Bind::BigInt(value)) => out.push_bind_param::<BigInt, i64>(value)?,
                Part::Bind(Bind::SmallInt(value)) => out.push_bind_param::<SmallInt, i16>(value)?,
                Part::Bind(Bind::Double(value)) => out.push_bind_param::<Double, f64>(value)?,
            }
        }
        Ok(())
    }
}

impl QueryId for Sql {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::RunQueryDsl<DbConnection> for Sql {}

/// A statement run by reference, so that work which may run again can run it again.
impl diesel::RunQueryDsl<DbConnection> for &Sql {}

/// A statement whose rows have the SQL type `ST`, loadable with `RunQueryDsl::load`.
#[derive(Debug, Clone)]
pub(crate) struct TypedSql<ST> {
    sql: Sql,
    row: PhantomData<ST>,
}

impl<ST> QueryFragment<MultiBackend> for TypedSql<ST> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, MultiBackend>) -> QueryResult<()> {
        self.sql.walk_ast(out)
    }
}

impl<ST> QueryId for TypedSql<ST> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<ST: 'static> Query for TypedSql<ST> {
    type SqlType = ST;
}

impl<ST> diesel::RunQueryDsl<DbConnection> for TypedSql<ST> {}
