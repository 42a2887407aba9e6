//! Authorization: the first rule of `access.json` that matches the request in every respect
//! (pattern, roles, method, action, `customAuthz`) grants it; otherwise 403. The named checks a
//! rule's condition uses are answered here from the request and, where needed, the stored
//! object (which properties a write changes, re-authentication for protected ones).

use std::cell::RefCell;
use std::rc::Rc;

use ferridm_core::patch;
use ferridm_core::{Error, Object, Result};
use ferridm_plugins::access::AccessChecks;
use ferridm_plugins::error::ScriptErrorKind;
use serde_json::Value;

use super::context::RequestContext;
use super::{login, router};
use crate::auth::SecurityContext;
use crate::resource::{Method, Operation, Params, Request};

/// The message of a refused request.
pub const ACCESS_DENIED: &str = "Access denied";

/// Answers the named checks for one request.
struct RequestChecks {
    ctx: RequestContext,
    context: SecurityContext,
    request: Request,
    operation: Operation,
    path: String,
    reauth_password: Option<String>,
    changed: RefCell<Option<Vec<String>>>,
}

impl RequestChecks {
    /// The top-level properties the request changes (create: every body key; update: keys whose
    /// value differs from the stored object; patch: the fields its operations touch).
    fn changed_properties(&self) -> std::result::Result<Vec<String>, String> {
        if let Some(known) = &*self.changed.borrow() {
            return Ok(known.clone());
        }
        let ignored = |key: &str| matches!(key, "_id" | "_rev" | "_meta");
        let changed = match &self.operation {
            Operation::Create => match self.request.content(&self.operation) {
                Ok(Value::Object(body)) => body.keys().filter(|k| !ignored(k)).cloned().collect(),
                _ => Vec::new(),
            },
            Operation::Update | Operation::Upsert => {
                let body = match self.request.content(&self.operation) {
                    Ok(Value::Object(body)) => body,
                    _ => Object::new(),
                };
                let stored = self.stored_object()?;
                let object_type = self.managed_type();
                let mut keys: Vec<String> = Vec::new();
                for (key, value) in &body {
                    if !ignored(key) && stored.get(key) != Some(value) {
                        keys.push(key.clone());
                    }
                }
                for key in stored.keys() {
                    let kept = object_type
                        .as_ref()
                        .is_some_and(|t| t.is_private(key) || t.is_virtual(key));
                    if !ignored(key) && !kept && !body.contains_key(key) && !keys.contains(key) {
                        keys.push(key.clone());
                    }
                }
                keys
            }
            Operation::Patch | Operation::Action(_) => {
                let body = if self.operation == Operation::Patch {
                    self.request.content(&self.operation)
                } else {
                    self.request.action_content()
                };
                body.ok()
                    .and_then(|body| patch::parse_patch(&body).ok())
                    .map(|operations| patch::touched_properties(&operations))
                    .unwrap_or_default()
            }
            _ => Vec::new(),
        };
        *self.changed.borrow_mut() = Some(changed.clone());
        Ok(changed)
    }

    fn managed_type(&self) -> Option<&crate::config::ManagedType> {
        let managed = self.request.path.managed()?;
        self.ctx.generation.managed.get(managed.type_name)
    }

    /// The object the request addresses as stored (empty when there is none), read through the
    /// router as an internal caller.
    fn stored_object(&self) -> std::result::Result<Object, String> {
        if self
            .request
            .path
            .managed()
            .and_then(|managed| managed.instance())
            .is_none()
        {
            return Ok(Object::new());
        }
        let read = Request::internal(
            Method::Get,
            self.request.path.clone(),
            Params::from_pairs([("_fields", "*,*_ref")]),
            None,
        );
        let mut internal = self.ctx.as_internal();
        let mut stored = match router::dispatch(&mut internal, &read, &Operation::Read) {
            Ok(reply) => match reply.body {
                Some(Value::Object(object)) => object,
                _ => Object::new(),
            },
            Err(Error::NotFound(_)) => Object::new(),
            Err(_) => return Err("the object could not be read".to_owned()),
        };
        // Compare with the stored content alone: identifiers and computed properties are not
        // part of what a write changes.
        stored.remove("_id");
        stored.remove("_rev");
        stored.remove("_meta");
        if let Some(object_type) = self.managed_type() {
            stored.retain(|key, _| !object_type.is_virtual(key));
        }
        Ok(stored)
    }

    /// True when the request addresses the caller's own object, or one of its relationships
    /// (`managed/user/<own id>/roles`, and one reference of it).
    fn own_data(&self) -> bool {
        let own = self.context.own_path();
        if self.path == own {
            return true;
        }
        let Some(below) = self.path.strip_prefix(&own).and_then(|rest| rest.strip_prefix('/')) else {
            return false;
        };
        let mut segments = below.split('/');
        let relationship = segments.next().unwrap_or_default();
        segments.count() <= 1
            && crate::resource::path::managed_type(&self.context.authorization.component)
                .and_then(|name| self.ctx.generation.managed.get(name))
                .is_some_and(|own_type| own_type.relationship(relationship).is_some())
    }

    fn only_editable(&self, type_name: &str, exceptions: &[String]) -> std::result::Result<bool, String> {
        let Some(object_type) = self.ctx.generation.managed.get(type_name) else {
            return Ok(false);
        };
        let changed = self.changed_properties()?;
        Ok(changed.iter().all(|name| {
            exceptions.contains(name)
                || object_type
                    .schema
                    .property(name)
                    .is_some_and(|property| property.user_editable)
        }))
    }

    fn reauth_if_protected(&self) -> std::result::Result<bool, String> {
        let protected = self
            .context
            .authorization
            .protected_attribute_list
            .clone()
            .unwrap_or_default();
        if protected.is_empty() {
            return Ok(true);
        }
        let changed = self.changed_properties()?;
        if !changed.iter().any(|name| protected.contains(name)) {
            return Ok(true);
        }
        let Some(password) = self.reauth_password.as_deref().filter(|p| !p.is_empty()) else {
            return Err("Reauthentication failed, missing or empty headers".to_owned());
        };
        match login::reverify(&self.ctx, &self.context, password) {
            Ok(true) => Ok(true),
            _ => Err(format!(
                "Reauthentication failed for {}",
                self.context.authentication_id
            )),
        }
    }
}

impl AccessChecks for RequestChecks {
    fn check(&self, name: &str, arguments: Vec<Value>) -> std::result::Result<bool, String> {
        let text = |index: usize| {
            arguments
                .get(index)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let list = |index: usize| -> Vec<String> {
            arguments
                .get(index)
                .and_then(Value::as_array)
                .map(|items| items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default()
        };
        match name {
            "ownDataOnly" => Ok(self.own_data()),
            "onlyEditableManagedObjectProperties" => self.only_editable(&text(0), &list(1)),
            "reauthIfProtectedAttributeChange" => self.reauth_if_protected(),
            "checkIfUIIsEnabled" => Ok(self.ctx.generation.ui.enabled(&text(0))),
            "checkIfProgressiveProfileIsEnabled" => Ok(self.ctx.generation.progressive_profile_enabled()),
            "isSelfServiceRequest" => Ok(false),
            "disallowQueryExpression" => Ok(!self.request.params.has("_queryexpression")),
            "disallowCommandAction" => Ok(self.operation.action() != Some("command")),
            "isQueryOneOf" => {
                let allowed = arguments
                    .first()
                    .and_then(|map| map.get(&self.path))
                    .and_then(Value::as_array)
                    .map(|ids| {
                        ids.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                Ok(self
                    .request
                    .params
                    .get("_queryid")
                    .is_some_and(|query_id| allowed.iter().any(|id| id == query_id)))
            }
            "restrictPatchToFields" => {
                let allowed = list(0);
                Ok(self.changed_properties()?.iter().all(|field| allowed.contains(field)))
            }
            other => Err(format!("unknown access check {other}")),
        }
    }
}

/// Decides whether the client caller of `ctx` may perform `operation` on the request's
/// resource (internal callers are not subject to access rules).
pub fn authorize(ctx: &RequestContext, request: &Request, operation: &Operation) -> Result<()> {
    let Ok(caller) = ctx.client_caller() else {
        return Ok(());
    };
    let context = &caller.session.context;
    let generation = &ctx.generation;
    let path = request.path.to_string();
    let method = operation.rule_name();
    let mut checks: Option<Rc<RequestChecks>> = None;
    for rule in &generation.access.rules {
        if !rule.covers(&path)
            || !rule.roles.contains_any(context.authorization.roles.iter())
            || !rule.methods.contains(method)
        {
            continue;
        }
        if let Some(action) = operation.action()
            && !rule.actions.contains(action)
        {
            continue;
        }
        let Some(condition) = &rule.condition else {
            return Ok(());
        };
        let answering = checks.get_or_insert_with(|| {
            Rc::new(RequestChecks {
                ctx: ctx.clone(),
                context: context.clone(),
                request: request.clone(),
                operation: operation.clone(),
                path: path.clone(),
                reauth_password: caller.reauth_password.clone(),
                changed: RefCell::new(None),
            })
        });
        match condition.evaluate(&generation.script_limits, Rc::clone(answering) as Rc<dyn AccessChecks>) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(error) => {
                if let ScriptErrorKind::Thrown(_) = error.kind
                    && error.message.starts_with("Reauthentication failed")
                {
                    return Err(Error::Forbidden(error.message));
                }
                tracing::error!(rule = %rule.pattern, "access rule condition failed: {error}");
            }
        }
    }
    Err(Error::Forbidden(ACCESS_DENIED.to_owned()))
}
