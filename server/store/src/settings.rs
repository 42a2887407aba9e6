//! Named values recorded in the database itself, so every node on it reads the same ones.

use diesel::prelude::*;

use crate::connection::DbConnection;
use crate::schema::store_settings;
use crate::sql::Sql;
use crate::{Store, StoreError};

impl Store {
    /// The value recorded under `name`, if any.
    pub fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.read(|conn| {
            Ok(store_settings::table
                .filter(store_settings::name.eq(name))
                .select(store_settings::value)
                .get_result::<String>(conn)
                .optional()?)
        })
    }

    /// Records `value` under `name`, replacing what was there.
    pub fn put_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        self.write(|conn| upsert_setting(conn, name, value))
    }
}

/// Records `value` under `name` in the caller's transaction, replacing what was there.
pub(crate) fn upsert_setting(conn: &mut DbConnection, name: &str, value: &str) -> Result<(), StoreError> {
    let mut upsert = Sql::cached("INSERT INTO store_settings (name, value) VALUES (");
    upsert
        .bind_text(name)
        .push(", ")
        .bind_text(value)
        .push(") ON CONFLICT (name) DO UPDATE SET value = excluded.value");
    upsert.execute(conn)?;
    Ok(())
}
