//! `managed/<type>` and `managed/<type>/<id>`: maps each CREST operation to the managed-object
//! service and its result to a response.

use std::sync::Arc;

use actix_web::web;
use ferridm_core::fields::FieldSelection;
use ferridm_core::patch;
use ferridm_core::query::{Paging, parse_sort_keys};
use ferridm_core::{Error, Result};

use super::request::{CrestRequest, Operation};
use super::response::Reply;
use crate::service::managed::{ManagedObjects, QueryRequest, parse_filter, predefined_query};
use crate::state::AppState;

/// Runs blocking service work on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    web::block(work)
        .await
        .map_err(|_| Error::internal("Internal Server Error"))?
}

fn fields_of(request: &CrestRequest) -> Result<FieldSelection> {
    let selection = FieldSelection::parse(request.fields());
    if selection.max_depth() > ferridm_core::query::MAX_POINTER_DEPTH || selection.pointers().len() > 256 {
        return Err(Error::bad_request(
            "The _fields parameter selects too many or too deeply nested fields",
        ));
    }
    Ok(selection)
}

/// Builds a query request from `_queryFilter` / `_queryId` and the paging parameters.
pub(crate) fn query_request(request: &CrestRequest) -> Result<QueryRequest> {
    let params = &request.params;
    let filter_text = params.get("_queryfilter");
    let query_id = params.get("_queryid");
    let expression = params.get("_queryexpression");
    request.check_query_parameters()?;
    match (filter_text.is_some(), query_id.is_some(), expression.is_some()) {
        (false, false, true) => return Err(Error::Forbidden("Access denied".into())),
        (false, false, false) => return Err(Error::bad_request("A query needs _queryFilter or _queryId")),
        _ => {}
    }
    let (filter, ids_only) = match (filter_text, query_id) {
        (Some(text), _) => (parse_filter(text)?, false),
        (None, Some(id)) => predefined_query(id, |name| {
            params
                .additional()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value)
        })?,
        (None, None) => (ferridm_core::filter::Filter::True, false),
    };
    let paging = Paging::from_params(
        params.get("_pagesize"),
        params.get("_pagedresultsoffset"),
        params.get("_pagedresultscookie"),
        params.get("_totalpagedresultspolicy"),
    )?;
    Ok(QueryRequest {
        filter,
        ids_only,
        sort: parse_sort_keys(params.all("_sortkeys"))?,
        paging,
    })
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

fn location(request: &actix_web::HttpRequest, type_name: &str, id: &str) -> String {
    let info = request.connection_info();
    let encoded = percent_encoding::utf8_percent_encode(id, PATH_SEGMENT);
    format!(
        "{}://{}/openidm/managed/{type_name}/{encoded}",
        info.scheme(),
        info.host()
    )
}

/// Operations on the collection `managed/<type>`.
pub async fn handle_collection(
    state: Arc<AppState>,
    http: &actix_web::HttpRequest,
    request: CrestRequest,
    operation: Operation,
    type_name: String,
) -> Result<Reply> {
    let fields = fields_of(&request)?;
    let pretty = request.pretty();
    let collection = format!("managed/{type_name}");
    match operation {
        Operation::Create => {
            let content = request.object_content(&operation)?;
            let name = type_name.clone();
            let resource = blocking(move || {
                let generation = state.generation();
                ManagedObjects::new(&state, &generation, &name, true)?.create(None, content, &fields)
            })
            .await?;
            let location = location(http, &type_name, &resource.id);
            Ok(Reply::created(&resource, location).pretty(pretty))
        }
        Operation::Query => {
            let query = query_request(&request)?;
            let response = blocking(move || {
                let generation = state.generation();
                ManagedObjects::new(&state, &generation, &type_name, true)?.query(&query, &fields)
            })
            .await?;
            Ok(Reply::ok(response.to_json()).pretty(pretty))
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
            let query = query_request(&request)?;
            let resource = blocking(move || {
                let generation = state.generation();
                ManagedObjects::new(&state, &generation, &type_name, true)?.patch_by_query(&query, &operations, &fields)
            })
            .await?;
            Ok(Reply::ok(resource.to_json_trailing()).pretty(pretty))
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
pub async fn handle_instance(
    state: Arc<AppState>,
    http: &actix_web::HttpRequest,
    request: CrestRequest,
    operation: Operation,
    type_name: String,
    id: String,
) -> Result<Reply> {
    let fields = fields_of(&request)?;
    let pretty = request.pretty();
    let if_match = request.if_match.clone();
    match operation {
        Operation::Read => {
            let if_none_match = request.if_none_match.clone();
            let resource = blocking(move || {
                let generation = state.generation();
                ManagedObjects::new(&state, &generation, &type_name, true)?.read(&id, &fields, if_none_match.as_deref())
            })
            .await?;
            Ok(Reply::resource(&resource).pretty(pretty))
        }
        Operation::Create => {
            let content = request.object_content(&operation)?;
            let name = type_name.clone();
            let resource = blocking(move || {
                let generation = state.generation();
                ManagedObjects::new(&state, &generation, &name, true)?.create(Some(id), content, &fields)
            })
            .await?;
            let location = location(http, &type_name, &resource.id);
            Ok(Reply::created(&resource, location).pretty(pretty))
        }
        Operation::Upsert => {
            let content = request.object_content(&operation)?;
            let name = type_name.clone();
            let (created, resource) = blocking(move || {
                let generation = state.generation();
                ManagedObjects::new(&state, &generation, &name, true)?.upsert(&id, content, &fields)
            })
            .await?;
            if created {
                let location = location(http, &type_name, &resource.id);
                Ok(Reply::created(&resource, location).pretty(pretty))
            } else {
                Ok(Reply::resource(&resource).pretty(pretty))
            }
        }
        Operation::Update => {
            let content = request.object_content(&operation)?;
            let resource = blocking(move || {
                let generation = state.generation();
                ManagedObjects::new(&state, &generation, &type_name, true)?.update(
                    &id,
                    if_match.as_deref(),
                    content,
                    &fields,
                )
            })
            .await?;
            Ok(Reply::resource(&resource).pretty(pretty))
        }
        Operation::Patch => {
            let operations = patch::parse_patch(&request.content(&operation)?)?;
            let resource = blocking(move || {
                let generation = state.generation();
                ManagedObjects::new(&state, &generation, &type_name, true)?.patch(
                    &id,
                    if_match.as_deref(),
                    &operations,
                    &fields,
                )
            })
            .await?;
            Ok(Reply::resource(&resource).pretty(pretty))
        }
        Operation::Action(action) if action.eq_ignore_ascii_case("patch") => {
            let operations = patch::parse_patch(&request.action_content()?)?;
            let resource = blocking(move || {
                let generation = state.generation();
                ManagedObjects::new(&state, &generation, &type_name, true)?.patch(&id, None, &operations, &fields)
            })
            .await?;
            Ok(Reply::resource(&resource).pretty(pretty))
        }
        Operation::Delete => {
            let resource = blocking(move || {
                let generation = state.generation();
                ManagedObjects::new(&state, &generation, &type_name, true)?.delete(&id, if_match.as_deref(), &fields)
            })
            .await?;
            Ok(Reply::resource(&resource).pretty(pretty))
        }
        Operation::Action(action) if action == "unlock" => {
            let resource = blocking(move || {
                let generation = state.generation();
                ManagedObjects::new(&state, &generation, &type_name, true)?.unlock(&id, &fields)
            })
            .await?;
            Ok(Reply::resource(&resource).pretty(pretty))
        }
        Operation::Query => Err(Error::bad_request(format!(
            "The resource instance managed/{type_name}/{id} cannot be queried"
        ))),
        Operation::Action(action) => Err(Error::bad_request(format!("Action {action} is not supported."))),
    }
}

/// The body of an unsupported sub-object request.
pub fn sub_object() -> Error {
    Error::Forbidden("Sub-objects are not supported".into())
}
