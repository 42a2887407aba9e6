//! The conditional-write loop every replacing write shares (update, patch, delete): read the
//! current object, check `If-Match`, let the operation compute and store its change, and when an
//! unconditional write loses a race with another writer, start again from the new current
//! object. A stale `If-Match` is 412 and loses nothing. Unconditional writers of one object
//! take turns on this node (`AppState::write_turns`) and, on PostgreSQL, among the nodes
//! (`Store::object_turn`), so they rarely race at all.

use ferridm_core::{Error, Result, Revision};
use ferridm_store::{StoreError, StoredObject};

use super::ManagedObjects;
use crate::service::storage_error;

/// How many times an unconditional write retries after losing a race with another writer.
const WRITE_RETRIES: usize = 16;

/// What one attempt of a write did.
pub(super) enum Attempt {
    /// Nothing to change: the object stays as it is.
    Unchanged,
    /// The store's answer to the change.
    Stored(std::result::Result<StoredObject, StoreError>),
}

/// The outcome of a write: the object before, and after (`None` when nothing changed).
pub(super) struct Written {
    pub(super) before: StoredObject,
    pub(super) after: Option<StoredObject>,
}

impl ManagedObjects<'_> {
    /// Runs `attempt` against the current object until it lands. `verb` names the operation in
    /// IDM's 412 message; `policy_message` is the message a unique-index conflict reports.
    pub(super) fn write_loop(
        &self,
        id: &str,
        if_match: Option<&str>,
        verb: &str,
        policy_message: &str,
        mut attempt: impl FnMut(&StoredObject) -> Result<Attempt>,
    ) -> Result<Written> {
        let conditional = if_match.filter(|rev| *rev != "*");
        // Unconditional writers of one object take turns rather than race: on this node, then
        // (PostgreSQL) among the nodes.
        let turn = conditional
            .is_none()
            .then(|| self.ctx.state.write_turns.take(self.object_type.name(), id));
        // Never for a write nested in another on this thread: it cannot wait on its caller.
        let _nodes_turn = match &turn {
            Some(turn) if turn.is_held() => self
                .ctx
                .state
                .store
                .object_turn(self.object_type.name(), id)
                .map_err(storage_error)?,
            _ => None,
        };
        for _ in 0..WRITE_RETRIES {
            let current = self.load(id)?;
            if let Some(expected) = conditional
                && expected != current.rev.to_string()
            {
                return Err(revision_mismatch(verb, current.rev, expected));
            }
            let stored = match attempt(&current)? {
                Attempt::Unchanged => {
                    return Ok(Written {
                        before: current,
                        after: None,
                    });
                }
                Attempt::Stored(stored) => stored,
            };
            match stored {
                Ok(after) => {
                    return Ok(Written {
                        before: current,
                        after: Some(after),
                    });
                }
                Err(StoreError::RevisionMismatch) if conditional.is_none() => {}
                Err(StoreError::RevisionMismatch) => {
                    let now = self.load(id)?;
                    return Err(revision_mismatch(verb, now.rev, conditional.unwrap_or("*")));
                }
                Err(StoreError::NotFound) => return Err(self.not_found(id)),
                Err(StoreError::UniqueViolation { property }) => {
                    return Err(self.unique_conflict(Some(id), &property, policy_message));
                }
                Err(error) => return Err(storage_error(error)),
            }
        }
        Err(Error::Unavailable("Too many concurrent writers; try again".into()))
    }
}

/// IDM's 412 for a stale revision.
fn revision_mismatch(verb: &str, current: Revision, expected: &str) -> Error {
    Error::PreconditionFailed(format!(
        "{verb} rejected as current Object revision {current} is different than expected by caller ({expected}), the object has changed since retrieval."
    ))
}
