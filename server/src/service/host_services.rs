//! Host services: what stage scripts cannot do themselves, reached with
//! `openidm::service(name, arguments)` — hashing security answers, sending mail, calling a
//! captcha verifier, sealing auto-login credentials, reading schemas, running policies,
//! progressive-profile bookkeeping, checking `userQuery` filters and counting rate limits.

use ferridm_core::filter::{self, Filter};
use ferridm_core::{Error, JsonPointer, Object};
use ferridm_plugins::{HostError, HostResult};
use rand::Rng as _;
use serde_json::{Value, json};

use super::context::RequestContext;
use super::host::SelfServiceScope;
use super::login::CREDENTIAL_PURPOSE;
use super::social::ClaimProof;
use super::storage_error;
use crate::resource::error::to_host;
use crate::resource::path::ResourcePath;
use crate::sealed;
use crate::secrets::password::idm_hash;

/// How long an auto-login credential token lives, in seconds.
const CREDENTIAL_LIFETIME: u64 = 300;

fn argument<'a>(arguments: &'a Value, name: &str) -> HostResult<&'a Value> {
    arguments
        .get(name)
        .ok_or_else(|| HostError::bad_request(format!("the service needs \"{name}\"")))
}

fn text<'a>(arguments: &'a Value, name: &str) -> HostResult<&'a str> {
    argument(arguments, name)?
        .as_str()
        .ok_or_else(|| HostError::bad_request(format!("\"{name}\" must be a string")))
}

/// A security answer as IDM stores it: lower-cased, salted SHA-256, in a `$crypto` envelope.
pub fn hash_answer(answer: &str) -> Value {
    idm_hash::salted_sha256(&answer.to_lowercase())
}

/// True when `answer` matches a stored answer: one made by [`hash_answer`], or by IDM with any
/// of its salted-hash algorithms.
pub fn answer_matches(answer: &str, stored: &Value) -> bool {
    idm_hash::matches(&answer.to_lowercase(), stored)
}

fn verify_captcha(arguments: &Value) -> HostResult<Value> {
    let url = text(arguments, "url")?;
    let secret = arguments.get("secret").and_then(Value::as_str).unwrap_or_default();
    let response = text(arguments, "response")?;
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut reply = agent
        .post(url)
        .query("secret", secret)
        .query("response", response)
        .send_empty()
        .map_err(|error| {
            tracing::error!(%error, "captcha verifier unreachable");
            HostError {
                code: 503,
                message: "The captcha verifier is unreachable".to_owned(),
                detail: None,
            }
        })?;
    reply
        .body_mut()
        .read_json::<Value>()
        .map_err(|_| HostError::bad_request("The captcha verifier answered with something that is not JSON"))
}

/// Changes the metadata of `managed/<type>/<id>` (not a user change: no revision, no triggers).
fn update_meta(ctx: &RequestContext, function: &str, path: &str, change: impl Fn(&mut Object)) -> HostResult<()> {
    let parsed = ResourcePath::parse(path);
    let Some((type_name, id)) = parsed
        .managed()
        .and_then(|managed| managed.instance().map(|id| (managed.type_name, id)))
    else {
        return Err(HostError::bad_request(format!(
            "{function} needs managed/<type>/<id>, not {path}"
        )));
    };
    let object_type = ctx
        .generation
        .managed
        .get(type_name)
        .ok_or_else(|| HostError::bad_request(format!("unknown type {type_name}")))?;
    ctx.state
        .store
        .update_meta(type_name, id, &object_type.index, change)
        .map(|_| ())
        .map_err(|error| to_host(storage_error(error)))
}

fn principal_path(scope: &SelfServiceScope) -> HostResult<String> {
    scope
        .principal
        .as_ref()
        .map(|id| format!("managed/user/{id}"))
        .ok_or_else(|| HostError {
            code: 403,
            message: "Access denied".to_owned(),
            detail: None,
        })
}

/// True when `text` parses and every assertion in it is about one of `fields` (IDM's
/// `userQuery`: `true`, `false` and extended operators are not allowed).
fn filter_uses_only(text: &str, fields: &[&str]) -> bool {
    fn allowed(filter: &Filter, fields: &[&str]) -> bool {
        let valid = |field: &JsonPointer| fields.iter().any(|name| JsonPointer::parse(name) == *field);
        match filter {
            Filter::Comparison { field, .. } | Filter::Present(field) => valid(field),
            Filter::And(operands) | Filter::Or(operands) => operands.iter().all(|operand| allowed(operand, fields)),
            Filter::Not(inner) => allowed(inner, fields),
            Filter::True | Filter::False | Filter::Extended { .. } => false,
        }
    }
    filter::parse(text).is_ok_and(|parsed| allowed(&parsed, fields))
}

/// Counts one start of the scope's process against a rate limit: `scope` is `clientAddress`
/// (the caller's address) or `account` (with `key`, the account's id). True while within the
/// limit (and always when the process sets none).
fn rate_limit(ctx: &RequestContext, scope: &SelfServiceScope, arguments: &Value) -> HostResult<Value> {
    let limits = &scope.process.rate_limits;
    let kind = text(arguments, "scope")?;
    let (rule, subject) = match kind {
        "clientAddress" => (limits.per_client_address, scope.client_address.as_str()),
        "account" => (limits.per_account, text(arguments, "key")?),
        other => {
            return Err(HostError::bad_request(format!(
                "unknown rate-limit scope {other} (clientAddress or account)"
            )));
        }
    };
    let Some(rule) = rule else {
        return Ok(Value::Bool(true));
    };
    let bucket = format!("selfservice/{}:{kind}:{subject}", scope.process.name);
    ctx.state
        .store
        .hit_rate_limit(&bucket, ctx.now_millis(), rule)
        .map(Value::Bool)
        .map_err(|error| to_host(storage_error(error)))
}

/// The managed type named by a service's `path` argument (`managed/<type>`, `managed/user` by
/// default).
fn managed_type_of(arguments: &Value) -> HostResult<&str> {
    let path = arguments.get("path").and_then(Value::as_str).unwrap_or("managed/user");
    path.strip_prefix("managed/")
        .filter(|name| !name.is_empty() && !name.contains('/'))
        .ok_or_else(|| HostError::bad_request(format!("{path} is not a managed object type")))
}

/// The name of every host service, as scripts pass it to `openidm::service`.
pub const NAMES: [&str; 18] = [
    "hashAnswer",
    "answerMatches",
    "sendMail",
    "verifyCaptcha",
    "credentialJwt",
    "randomCode",
    "schema",
    "validateObject",
    "setMeta",
    "formsCompleted",
    "completeForm",
    "profileCompleteness",
    "validQueryFilter",
    "rateLimit",
    "identityProviders",
    "socialIdentity",
    "socialClaimCandidate",
    "socialClaim",
];

/// Runs a named service.
pub fn call(
    ctx: &RequestContext,
    scope: Option<&SelfServiceScope>,
    name: &str,
    arguments: &Value,
) -> HostResult<Value> {
    match name {
        "hashAnswer" => Ok(hash_answer(text(arguments, "answer")?)),
        "answerMatches" => Ok(Value::Bool(answer_matches(
            text(arguments, "answer")?,
            argument(arguments, "stored")?,
        ))),
        "sendMail" => super::mail::send(ctx, arguments).map_err(to_host),
        "verifyCaptcha" => verify_captcha(arguments),
        "credentialJwt" => {
            let credentials =
                json!({"username": text(arguments, "username")?, "password": text(arguments, "password")?});
            sealed::seal(
                &ctx.state.secrets.token_key,
                CREDENTIAL_PURPOSE,
                &credentials,
                ctx.now_seconds() + CREDENTIAL_LIFETIME,
            )
            .map(Value::String)
            .ok_or_else(|| to_host(Error::internal("Internal Server Error")))
        }
        "randomCode" => {
            let length = arguments
                .get("length")
                .and_then(Value::as_u64)
                .unwrap_or(8)
                .clamp(4, 64);
            let mut random = rand::rng();
            Ok(Value::String(
                (0..length)
                    .map(|_| char::from(b'0' + random.random_range(0..10)))
                    .collect(),
            ))
        }
        "schema" => {
            let path = arguments.get("path").and_then(Value::as_str).unwrap_or("managed/user");
            let type_name = path.trim_start_matches("managed/");
            ctx.generation
                .managed
                .get(type_name)
                .map(|object_type| Value::Object(object_type.schema.schema.raw.clone()))
                .ok_or_else(|| HostError::bad_request(format!("unknown type {path}")))
        }
        "validateObject" => {
            let path = text(arguments, "path")?;
            let object = argument(arguments, "object")?
                .as_object()
                .cloned()
                .ok_or_else(|| HostError::bad_request("\"object\" must be an object"))?;
            super::validation::validate(ctx, path, &object, super::validation::Scope::Object)
                .map(|result| result.to_json())
                .map_err(to_host)
        }
        "setMeta" => {
            let values = argument(arguments, "values")?
                .as_object()
                .cloned()
                .ok_or_else(|| HostError::bad_request("\"values\" must be an object"))?;
            update_meta(ctx, "setMeta", text(arguments, "path")?, |meta| {
                for (key, value) in &values {
                    meta.insert(key.clone(), value.clone());
                }
            })
            .map(|()| Value::Bool(true))
        }
        "formsCompleted" => Ok(scope
            .map(|scope| Value::from(scope.forms.borrow().clone()))
            .unwrap_or_else(|| json!([]))),
        "completeForm" => {
            let scope = scope.ok_or_else(|| HostError::bad_request("completeForm is only available in a process"))?;
            let identifier = text(arguments, "identifier")?.to_owned();
            if !scope.forms.borrow().contains(&identifier) {
                scope.forms.borrow_mut().push(identifier.clone());
            }
            let path = principal_path(scope)?;
            let completed = json!({"identifier": identifier, "dateCompleted": ctx.now_iso()});
            update_meta(ctx, "completeForm", &path, |meta| {
                let mut done = meta
                    .get("stagesCompleted")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                done.push(completed.clone());
                meta.insert("stagesCompleted".to_owned(), Value::Array(done));
            })?;
            Ok(Value::Bool(true))
        }
        "profileCompleteness" => {
            let user = argument(arguments, "user")?;
            ctx.generation
                .completeness
                .score(user)
                .map(Value::from)
                .map_err(to_host)
        }
        "validQueryFilter" => {
            let fields: Vec<&str> = argument(arguments, "fields")?
                .as_array()
                .map(|fields| fields.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            Ok(Value::Bool(filter_uses_only(text(arguments, "filter")?, &fields)))
        }
        "rateLimit" => {
            let scope = scope.ok_or_else(|| HostError::bad_request("rateLimit is only available in a process"))?;
            rate_limit(ctx, scope, arguments)
        }
        "identityProviders" => Ok(Value::Array(super::social::enabled_providers(ctx))),
        "socialIdentity" => {
            scope.ok_or_else(|| HostError::bad_request("socialIdentity is only available in a process"))?;
            super::social::unlinked_identity(ctx, text(arguments, "token")?).map_err(to_host)
        }
        "socialClaimCandidate" => {
            scope.ok_or_else(|| HostError::bad_request("socialClaimCandidate is only available in a process"))?;
            let type_name = managed_type_of(arguments)?;
            super::social::claim_candidate(ctx, text(arguments, "token")?, type_name).map_err(to_host)
        }
        "socialClaim" => {
            scope.ok_or_else(|| HostError::bad_request("socialClaim is only available in a process"))?;
            let type_name = managed_type_of(arguments)?;
            let proof = match (
                arguments.get("password").and_then(Value::as_str),
                arguments.get("linkedToken").and_then(Value::as_str),
            ) {
                (Some(password), _) => ClaimProof::Password(password),
                (None, Some(linked)) => ClaimProof::LinkedIdentity(linked),
                (None, None) => return Err(HostError::bad_request("password or linkedToken is required")),
            };
            super::social::claim(ctx, text(arguments, "token")?, type_name, proof)
                .map(|()| Value::Bool(true))
                .map_err(to_host)
        }
        other => Err(HostError::bad_request(format!("no host service named {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_lower_cased_salted_hashes() {
        let stored = hash_answer("Red");
        assert_eq!(stored.pointer("/$crypto/type"), Some(&json!("salted-hash")));
        assert_eq!(stored.pointer("/$crypto/value/algorithm"), Some(&json!("SHA-256")));
        assert!(answer_matches("red", &stored));
        assert!(answer_matches("RED", &stored));
        assert!(!answer_matches("blue", &stored));
        assert_ne!(hash_answer("red"), hash_answer("red"), "fresh salt each time");
    }

    #[test]
    fn query_filters_may_only_name_the_valid_fields() {
        let fields = ["userName", "mail"];
        assert!(filter_uses_only(r#"userName eq "bjensen""#, &fields));
        assert!(filter_uses_only(r#"mail eq "a@b.c" or /userName sw "b""#, &fields));
        assert!(filter_uses_only(r#"!(mail pr)"#, &fields));
        assert!(!filter_uses_only(r#"password eq "x""#, &fields));
        assert!(!filter_uses_only(r#"userName eq "x" and sn eq "y""#, &fields));
        assert!(!filter_uses_only("true", &fields));
        assert!(!filter_uses_only(r#"userName foo "x""#, &fields));
        assert!(!filter_uses_only("userName eq", &fields));
    }
}
