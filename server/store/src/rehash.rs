//! Re-encoding one stored secret in place: a password hash replaced by a stronger hash of the same
//! password is not a change of the object, so its revision stays where it is.

use diesel::prelude::*;
use serde_json::Value;

use crate::flatten::IndexSpec;
use crate::objects::{find, reindex};
use crate::schema::objects;
use crate::{Store, StoreError};

impl Store {
    /// Replaces the value of `property` with `replacement` if it still holds `expected`, in
    /// one transaction, without moving the object's revision; the property index follows.
    /// Returns false (and changes nothing) when the object is gone, holds something else there
    /// (a concurrent write won), or `property` is one of the type's unique properties.
    pub fn replace_secret(
        &self,
        object_type: &str,
        id: &str,
        property: &str,
        expected: &Value,
        replacement: &Value,
        index: &IndexSpec,
    ) -> Result<bool, StoreError> {
        if index.unique.iter().any(|unique| unique == property) {
            return Ok(false);
        }
        self.write(|conn| {
            // Touch the row first so that, on PostgreSQL, concurrent writers of this object
            // queue behind this transaction and the check below sees the latest content.
            let touched = diesel::update(
                objects::table
                    .filter(objects::otype.eq(object_type))
                    .filter(objects::oid.eq(id)),
            )
            .set(objects::rev.eq(objects::rev))
            .execute(conn)?;
            if touched == 0 {
                return Ok(false);
            }
            let Some(mut current) = find(conn, object_type, id)? else {
                return Ok(false);
            };
            if current.content.get(property) != Some(expected) {
                return Ok(false);
            }
            current.content.insert(property.to_owned(), replacement.clone());
            diesel::update(objects::table.filter(objects::pk.eq(current.pk)))
                .set(objects::content.eq(serde_json::to_string(&current.content)?))
                .execute(conn)?;
            reindex(conn, object_type, &current, index)?;
            Ok(true)
        })
    }
}
