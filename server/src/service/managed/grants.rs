//! Conditional role grants on a user's own writes, and what a role's write changes for them
//! (see `service::roles`).

use std::borrow::Cow;

use ferridm_core::filter::Filter;
use ferridm_core::{Object, Result};
use ferridm_store::{RelationshipSet, StoredObject};
use serde_json::Value;

use super::ManagedObjects;
use super::relationships::{EFFECTIVE_ROLES, targets_of};
use crate::service::roles::{self, ROLE_COLLECTION, ROLES};

/// The managed type of roles.
const ROLE_TYPE: &str = "role";

impl ManagedObjects<'_> {
    /// Makes the `roles` relationship of object `id`, about to be stored with `content` and
    /// `meta`, hold exactly the conditional grants whose condition it matches: conditional
    /// grants it no longer matches are revoked, matching roles it does not hold are granted
    /// (a direct grant of a matching role stays direct). Works on the `roles` set of `sets`
    /// when the write names it, else on the edges `current` holds now (adding a set only when
    /// they change). Types whose `roles` do not lead to managed roles are left alone.
    pub(super) fn grant_conditional_roles(
        &self,
        id: &str,
        content: &Object,
        meta: &Object,
        current: Option<&StoredObject>,
        sets: &mut Vec<RelationshipSet>,
    ) -> Result<()> {
        let Some(property) = self
            .object_type
            .relationship(ROLES)
            .filter(|property| property.collections.iter().any(|c| c == ROLE_COLLECTION))
        else {
            return Ok(());
        };
        let catalog = roles::catalog(&self.ctx.state)?;
        let named = sets.iter().position(|set| set.property == ROLES);
        if named.is_none() && catalog.conditional().next().is_none() {
            return Ok(());
        }
        let mut set = match named {
            Some(index) => sets.remove(index),
            None => {
                let held = match current {
                    Some(current) => self
                        .related([(current.id.as_str(), &current.content)], &[ROLES])?
                        .remove(&current.id)
                        .and_then(|mut values| values.remove(ROLES))
                        .unwrap_or(Value::Null),
                    None => Value::Null,
                };
                RelationshipSet {
                    property: ROLES.to_owned(),
                    reverse: property.reverse.clone(),
                    reverse_single: false,
                    targets: targets_of(property, &held)?,
                }
            }
        };
        let before = set.targets.clone();
        let judged = roles::as_judged(id, content, meta);
        set.targets.retain(|target| {
            !roles::is_conditional(&target.properties)
                || (target.collection == ROLE_COLLECTION
                    && catalog
                        .condition_of(&target.id)
                        .is_some_and(|condition| ferridm_core::filter::matches(condition, &judged)))
        });
        for role in catalog.conditional() {
            let Some((_, condition)) = &role.condition else {
                continue;
            };
            let held = set
                .targets
                .iter()
                .any(|target| target.collection == ROLE_COLLECTION && target.id == role.id);
            if !held && ferridm_core::filter::matches(condition, &judged) {
                set.targets.push(roles::conditional_target(&role.id));
            }
        }
        if named.is_some() || set.targets != before {
            sets.push(set);
        }
        Ok(())
    }

    /// After a role is written (`before`/`after`: its content, `None` when it did not or no
    /// longer exists): the role catalog is read again, and a changed condition is re-evaluated
    /// for every user in the background.
    pub(super) fn role_written(&self, before: Option<&Object>, after: Option<&Object>) {
        if self.object_type.name() != ROLE_TYPE {
            return;
        }
        self.ctx.state.roles.invalidate();
        let condition = |content: Option<&Object>| content.and_then(|c| c.get("condition")).cloned();
        if condition(before) != condition(after) {
            roles::reconcile(&self.ctx.state);
        }
    }

    /// `filter` with `effectiveRoles` read as the `roles` grants it is computed from, so that
    /// `effectiveRoles/_refResourceId eq "<id>"` is an indexed relationship lookup (temporal
    /// constraints are not applied there).
    pub(super) fn effective_roles_as_grants<'f>(&self, filter: &'f Filter) -> Cow<'f, Filter> {
        let mut mentioned = false;
        filter.for_each_leaf(&mut |leaf| {
            if let Filter::Comparison { field, .. } | Filter::Present(field) = leaf {
                mentioned |= field.first() == Some(EFFECTIVE_ROLES);
            }
        });
        if !mentioned || self.object_type.relationship(ROLES).is_none() {
            return Cow::Borrowed(filter);
        }
        let mut renamed = filter.clone();
        renamed.rename_field(EFFECTIVE_ROLES, ROLES);
        Cow::Owned(renamed)
    }

    /// Refuses a role whose condition is no query filter (403, `VALID_QUERY_FILTER`).
    pub(super) fn check_role_condition(&self, content: &Object, message: &str) -> Result<()> {
        if self.object_type.name() == ROLE_TYPE {
            roles::check_condition(content, message)?;
        }
        Ok(())
    }
}
