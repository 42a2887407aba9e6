//! `managed/<type>` and `managed/<type>/<id>`: each CREST operation mapped to one
//! managed-object service call and its result to a reply.

use ferridm_core::fields::FieldSelection;
use ferridm_core::patch;
use ferridm_core::{Error, Result};
use serde_json::Value;

use crate::resource::{Operation, Reply, Request};
use crate::service::context::RequestContext;
use crate::service::managed::{ManagedObjects, Resource, check_requested_id, query, sub_object};

fn fields_of(request: &Request) -> Result<FieldSelection> {
    let selection = FieldSelection::parse(request.fields());
    if selection.max_depth() > ferridm_core::query::MAX_POINTER_DEPTH || selection.pointers().len() > 256 {
        return Err(Error::bad_request(
            "The _fields parameter selects too many or too deeply nested fields",
        ));
    }
    Ok(selection)
}

/// Bytes a path segment must escape (RFC 3986: everything but unreserved and sub-delimiters).
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

fn resource(resource: Resource) -> Reply {
    let rev = resource.rev.to_string();
    Reply::resource(resource.into_json(), rev)
}

fn created(type_name: &str, resource: Resource) -> Reply {
    let location = format!(
        "managed/{type_name}/{}",
        percent_encoding::utf8_percent_encode(&resource.id, PATH_SEGMENT)
    );
    let rev = resource.rev.to_string();
    Reply::created(resource.into_json(), rev, location)
}

/// Operations on the collection `managed/<type>`.
pub fn collection(ctx: &RequestContext, request: &Request, operation: &Operation, type_name: &str) -> Result<Reply> {
    let fields = fields_of(request)?;
    let collection = format!("managed/{type_name}");
    match operation {
        Operation::Create => {
            let content = request.object_content(operation)?;
            let created_resource = ManagedObjects::new(ctx, type_name)?.create(None, content, &fields)?;
            Ok(created(type_name, created_resource))
        }
        Operation::Query => {
            let query = query::from_params(&request.params)?;
            // Client queries take turns, so that a flood of expensive ones leaves the pool and
            // the cores to everything else (scripts' queries run inside requests that already
            // have theirs). A query that reads at most one object by one index probe costs
            // what a read by id does, and goes without a turn as reads do.
            let wait = ctx.generation.settings.queries.queue_timeout_millis;
            let pins_one_object = ctx
                .generation
                .managed
                .get(type_name)
                .is_some_and(|object_type| query::pins_one_object(&query.filter, object_type));
            let _turn = (ctx.is_client() && !pins_one_object)
                .then(|| {
                    ctx.state
                        .queries
                        .turn(wait, "Too many queries at once; try again later")
                })
                .transpose()?;
            let response = ManagedObjects::new(ctx, type_name)?.query(&query, &fields)?;
            Ok(Reply::ok(response.to_json()))
        }
        Operation::Action(action) if action.eq_ignore_ascii_case("patch") => {
            let operations = patch::parse_patch(&request.action_content()?).map_err(|error| {
                if error.message.contains("not a JSON array") {
                    Error::bad_request(
                        "The request could not be processed because the provided content is not a JSON array",
                    )
                } else {
                    Error::from(error)
                }
            })?;
            if !request.params.has("_queryfilter") && !request.params.has("_queryid") {
                return Err(Error::bad_request("Patch by query needs _queryFilter or _queryId"));
            }
            request.check_query_parameters()?;
            let query = query::from_params(&request.params)?;
            let patched = ManagedObjects::new(ctx, type_name)?.patch_by_query(&query, &operations, &fields)?;
            Ok(Reply::ok(patched.to_json_trailing()))
        }
        Operation::Action(action) => Err(Error::bad_request(format!(
            "Action {action} is not supported on the resource collection {collection}"
        ))),
        Operation::Read => Err(Error::bad_request(format!(
            "The resource collection {collection} cannot be read"
        ))),
        Operation::Update | Operation::Upsert => Err(Error::bad_request(format!(
            "The resource collection {collection} cannot be updated"
        ))),
        Operation::Patch => Err(Error::bad_request(format!(
            "The resource collection {collection} cannot be patched"
        ))),
        Operation::Delete => Err(Error::bad_request(format!(
            "The resource collection {collection} cannot be deleted"
        ))),
    }
}

/// Operations on an instance `managed/<type>/<id>`.
pub fn instance(
    ctx: &RequestContext,
    request: &Request,
    operation: &Operation,
    type_name: &str,
    id: &str,
) -> Result<Reply> {
    check_requested_id(id)?;
    let fields = fields_of(request)?;
    let if_match = request.if_match.as_deref();
    match operation {
        Operation::Read => {
            let read = ManagedObjects::new(ctx, type_name)?.read(id, &fields, request.if_none_match.as_deref())?;
            Ok(resource(read))
        }
        Operation::Create => {
            let content = request.object_content(operation)?;
            let made = ManagedObjects::new(ctx, type_name)?.create(Some(id.to_owned()), content, &fields)?;
            Ok(created(type_name, made))
        }
        Operation::Upsert => {
            let content = request.object_content(operation)?;
            match ManagedObjects::new(ctx, type_name)?.upsert(id, content, &fields)? {
                (true, made) => Ok(created(type_name, made)),
                (false, updated) => Ok(resource(updated)),
            }
        }
        Operation::Update => {
            let content = request.object_content(operation)?;
            let updated = ManagedObjects::new(ctx, type_name)?.update(id, if_match, content, &fields)?;
            Ok(resource(updated))
        }
        Operation::Patch => {
            let operations = patch::parse_patch(&request.content(operation)?)?;
            let patched = ManagedObjects::new(ctx, type_name)?.patch(id, if_match, &operations, &fields)?;
            Ok(resource(patched))
        }
        Operation::Action(action) if action.eq_ignore_ascii_case("patch") => {
            let operations = patch::parse_patch(&request.action_content()?)?;
            let patched = ManagedObjects::new(ctx, type_name)?.patch(id, None, &operations, &fields)?;
            Ok(resource(patched))
        }
        Operation::Delete => {
            let deleted = ManagedObjects::new(ctx, type_name)?.delete(id, if_match, &fields)?;
            Ok(resource(deleted))
        }
        Operation::Action(action) if action == "unlock" => {
            let unlocked = ManagedObjects::new(ctx, type_name)?.unlock(id, &fields)?;
            Ok(resource(unlocked))
        }
        Operation::Query => Err(Error::bad_request(format!(
            "The resource instance managed/{type_name}/{id} cannot be queried"
        ))),
        Operation::Action(action) => Err(Error::bad_request(format!("Action {action} is not supported."))),
    }
}

/// Operations on a relationship of an instance, `managed/<type>/<id>/<relationship>`: query its
/// references, or create one.
pub fn relationship_collection(
    ctx: &RequestContext,
    request: &Request,
    operation: &Operation,
    (type_name, id, name): (&str, &str, &str),
) -> Result<Reply> {
    check_requested_id(id)?;
    let objects = ManagedObjects::new(ctx, type_name)?;
    if objects.managed_type().relationship(name).is_none() {
        return Err(sub_object());
    }
    match operation {
        Operation::Query => {
            let query = query::from_params(&request.params)?;
            Ok(Reply::ok(objects.query_relationship(id, name, &query)?.to_json()))
        }
        Operation::Create => {
            let reference = request.object_content(operation)?;
            let made = objects.create_relationship(id, name, reference)?;
            let rev = made.get("_rev").and_then(Value::as_str).unwrap_or_default().to_owned();
            let location = format!(
                "managed/{type_name}/{}/{name}/{}",
                percent_encoding::utf8_percent_encode(id, PATH_SEGMENT),
                made.get("_id").and_then(Value::as_str).unwrap_or_default()
            );
            Ok(Reply::created(Value::Object(made), rev, location))
        }
        _ => Err(Error::bad_request(format!(
            "The relationship managed/{type_name}/{id}/{name} supports only query and create"
        ))),
    }
}

/// Operations on one reference of a relationship, `managed/<type>/<id>/<relationship>/<edge>`:
/// read it or delete it.
pub fn relationship_instance(
    ctx: &RequestContext,
    operation: &Operation,
    (type_name, id, name, edge): (&str, &str, &str, &str),
) -> Result<Reply> {
    check_requested_id(id)?;
    let objects = ManagedObjects::new(ctx, type_name)?;
    if objects.managed_type().relationship(name).is_none() {
        return Err(sub_object());
    }
    let item = match operation {
        Operation::Read => objects.read_relationship(id, name, edge)?,
        Operation::Delete => objects.delete_relationship(id, name, edge)?,
        _ => {
            objects.read_relationship(id, name, edge)?;
            return Err(Error::bad_request(format!(
                "The reference managed/{type_name}/{id}/{name}/{edge} supports only read and delete"
            )));
        }
    };
    let rev = item.get("_rev").and_then(Value::as_str).unwrap_or_default().to_owned();
    Ok(Reply::resource(Value::Object(item), rev))
}
