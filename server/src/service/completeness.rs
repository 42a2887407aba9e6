//! Profile completeness over the store: reading a user's score, and rescoring every user when
//! the rule changes (the rule itself is `config::profile`'s).

use ferridm_core::filter::Filter;
use ferridm_core::{Error, Result};
use ferridm_store::ObjectQuery;
use serde_json::{Value, json};

use super::context::RequestContext;
use super::managed::ManagedObjects;
use crate::generation::Generation;
use crate::resource::path::managed_type;
use crate::state::AppState;

/// How complete a profile is: `{_id, _rev, completeness}` — of the managed object `target`
/// names (`(type, id)`), or the caller's own.
pub fn read(ctx: &RequestContext, target: Option<(&str, &str)>) -> Result<Value> {
    let caller = ctx.client_caller()?;
    let context = &caller.session.context;
    let (type_name, id) = match target {
        Some(target) => target,
        None => match managed_type(&context.authorization.component) {
            Some(type_name) => (type_name, context.authorization.id.as_str()),
            None => return Err(Error::Forbidden("Access denied".into())),
        },
    };
    let stored = ManagedObjects::new(&ctx.as_internal(), type_name)?.stored(id)?;
    let score = ctx.generation.completeness.score(&Value::Object(stored.content))?;
    Ok(json!({"_id": format!("managed/{type_name}/{id}"), "_rev": stored.rev.to_string(), "completeness": score}))
}

/// Rows recomputed per batch when the completeness rule changes.
const RECOMPUTE_PAGE: u32 = 500;

/// Recomputes `_meta.profileCompleteness` for every user with `generation`'s rule (after the
/// rule changed).
pub fn recompute_all(state: &AppState, generation: &Generation) {
    let Some(user_type) = generation.managed.get("user") else {
        return;
    };
    let mut cookie: Option<String> = None;
    let mut updated = 0_u64;
    loop {
        let page = state.store.query(&ObjectQuery {
            object_type: "user",
            filter: &Filter::True,
            sort: &[],
            page_size: Some(RECOMPUTE_PAGE),
            offset: 0,
            cookie: cookie.as_deref(),
            count: false,
            with_content: true,
            limit: u64::from(RECOMPUTE_PAGE),
            index: &user_type.index,
        });
        let page = match page {
            Ok(page) => page,
            Err(error) => {
                tracing::error!(%error, "recomputing profile completeness stopped");
                return;
            }
        };
        for user in &page.objects {
            let Ok(score) = generation.completeness.score(&Value::Object(user.content.clone())) else {
                continue;
            };
            if user.meta.get("profileCompleteness").and_then(Value::as_f64) == Some(score) {
                continue;
            }
            let changed = state.store.update_meta("user", &user.id, &user_type.index, |meta| {
                meta.insert("profileCompleteness".to_owned(), Value::from(score));
            });
            if changed.is_ok() {
                updated += 1;
            }
        }
        match page.cookie {
            Some(next) => cookie = Some(next),
            None => break,
        }
    }
    tracing::info!(
        users.updated = updated,
        "profile completeness recomputed for the new rule"
    );
}
