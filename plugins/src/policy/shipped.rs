//! The shipped policy scripts' simplest checks, and the uniqueness checks (their lookups made
//! through the installed host, as the script makes them), run without the script engine while
//! the script that registered them is byte for byte the one shipped in `scripts/policies/`. A deployment
//! that edits that file (or registers the policy again from a script of its own) runs its
//! script, as always.
//!
//! Each check answers exactly what its Rhai function answers (the same requirements, with the
//! same params in the same order) or `None` when its inputs are not of the shapes it reads
//! natively (a parameter of an unexpected type, a number Rhai holds in neither `i64` nor
//! `f64`), and the script runs instead. The parity test below runs both on many values.

use std::sync::OnceLock;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::script::CompiledScript;

/// The shipped scripts, as this build knows them.
const PRESENCE: &str = include_str!("../../../scripts/policies/presence.rhai");
const STRINGS: &str = include_str!("../../../scripts/policies/strings.rhai");
const TYPES: &str = include_str!("../../../scripts/policies/types.rhai");
const FORMATS: &str = include_str!("../../../scripts/policies/formats.rhai");
const UNIQUENESS: &str = include_str!("../../../scripts/policies/uniqueness.rhai");

/// `uniqueness.rhai`'s longest checked value, in characters.
const LONGEST_CHECKED: usize = 2048;
/// The longest `_queryFilter` a query takes, in bytes.
const LONGEST_FILTER: usize = 16384;

/// A check of a shipped script that runs natively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeCheck {
    /// `presence.rhai`'s `required`.
    Required,
    /// `presence.rhai`'s `notEmpty`.
    NotEmpty,
    /// `types.rhai`'s `validType`.
    ValidType,
    /// `strings.rhai`'s `minLength`.
    MinimumLength,
    /// `strings.rhai`'s `maxLength`.
    MaximumLength,
    /// `strings.rhai`'s `cannotContainCharacters`.
    CannotContainCharacters,
    /// `formats.rhai`'s `validEmailAddress`.
    ValidEmailAddress,
    /// `uniqueness.rhai`'s `unique`.
    Unique,
    /// `uniqueness.rhai`'s `validUsername`.
    ValidUsername,
    /// `uniqueness.rhai`'s `noInternalUserConflict`.
    NoInternalUserConflict,
}

/// What a policy function is given besides the object: the checked value (`None` when the
/// property is absent), its params, and whether `REQUIRED` already failed for the property.
#[derive(Debug, Clone, Copy)]
pub struct CheckInput<'a> {
    /// The checked value; `None` when the property is absent.
    pub value: Option<&'a Value>,
    /// The policy's params.
    pub params: &'a Map<String, Value>,
    /// Whether `REQUIRED` already failed for this property.
    pub required_failed: bool,
    /// The property as reported (`userName`, `mail[0]`): what the uniqueness checks look up.
    pub property: &'a str,
}

/// A shipped script: the digest of its text and the functions of it that run natively.
struct ShippedScript {
    digest: [u8; 32],
    checks: &'static [(&'static str, NativeCheck)],
}

fn shipped_scripts() -> &'static [ShippedScript] {
    static SHIPPED: OnceLock<Vec<ShippedScript>> = OnceLock::new();
    SHIPPED.get_or_init(|| {
        let script = |text: &str, checks| ShippedScript {
            digest: Sha256::digest(text.as_bytes()).into(),
            checks,
        };
        vec![
            script(
                PRESENCE,
                &[("required", NativeCheck::Required), ("notEmpty", NativeCheck::NotEmpty)],
            ),
            script(TYPES, &[("validType", NativeCheck::ValidType)]),
            script(
                STRINGS,
                &[
                    ("minLength", NativeCheck::MinimumLength),
                    ("maxLength", NativeCheck::MaximumLength),
                    ("cannotContainCharacters", NativeCheck::CannotContainCharacters),
                ],
            ),
            script(FORMATS, &[("validEmailAddress", NativeCheck::ValidEmailAddress)]),
            script(
                UNIQUENESS,
                &[
                    ("unique", NativeCheck::Unique),
                    ("validUsername", NativeCheck::ValidUsername),
                    ("noInternalUserConflict", NativeCheck::NoInternalUserConflict),
                ],
            ),
        ]
    })
}

impl NativeCheck {
    /// The native check for function `exec` of `script`, when the script is a shipped one,
    /// unchanged, and the function one of those run natively.
    pub fn of(script: &CompiledScript, exec: &str) -> Option<Self> {
        let digest = script.digest();
        shipped_scripts()
            .iter()
            .find(|shipped| shipped.digest == digest)
            .and_then(|shipped| shipped.checks.iter().find(|(name, _)| *name == exec))
            .map(|(_, check)| *check)
    }

    /// The failed requirements, as the script reports them; `None` when the script must answer.
    pub fn run(self, input: CheckInput<'_>) -> Option<Vec<Value>> {
        match self {
            Self::Required => Some(fails_if(input.value.is_none(), || requirement("REQUIRED"))),
            Self::NotEmpty => Some(fails_if(!has_length(input.value?), || requirement("REQUIRED"))),
            Self::ValidType => valid_type(input.value?, input.params.get("types")?),
            Self::MinimumLength => {
                let min = input.params.get("minLength")?;
                let bound = min.as_i64().filter(|_| min.is_i64())?;
                let judged = text_of(input.value?).filter(|text| !text.is_empty() || input.required_failed);
                Some(fails_if(
                    judged.is_some_and(|text| chars(text) < bound),
                    || json!({"policyRequirement": "MIN_LENGTH", "params": {"minLength": min}}),
                ))
            }
            Self::MaximumLength => {
                let max = input.params.get("maxLength")?;
                let bound = max.as_i64().filter(|_| max.is_i64())?;
                Some(fails_if(
                    text_of(input.value?).is_some_and(|text| chars(text) > bound),
                    || json!({"policyRequirement": "MAX_LENGTH", "params": {"maxLength": max}}),
                ))
            }
            Self::CannotContainCharacters => cannot_contain_characters(input),
            Self::ValidEmailAddress => {
                let value = input.value?;
                let text = text_of(value).unwrap_or("");
                let judged = !text.is_empty() || input.required_failed;
                Some(fails_if(judged && !looks_like_email(text)?, || {
                    requirement("VALID_EMAIL_ADDRESS_FORMAT")
                }))
            }
            Self::Unique | Self::ValidUsername | Self::NoInternalUserConflict => uniqueness(self, input),
        }
    }
}

/// `uniqueness.rhai`'s checks, looking values up through the installed host as the script does;
/// `None` when no host is installed or a lookup fails (the script then answers, or fails).
fn uniqueness(check: NativeCheck, input: CheckInput<'_>) -> Option<Vec<Value>> {
    let (host, _) = crate::host::current()?;
    let Some(Value::String(value)) = input.value else {
        return Some(Vec::new());
    };
    if value.is_empty() {
        return Some(Vec::new());
    }
    if check == NativeCheck::NoInternalUserConflict {
        return Some(fails_if(is_internal_user(&*host, value)?, || requirement("UNIQUE")));
    }
    if too_long_to_check(value, input.property) {
        return Some(vec![
            json!({"policyRequirement": "MAX_LENGTH", "params": {"maxLength": LONGEST_CHECKED}}),
        ]);
    }
    if check == NativeCheck::ValidUsername {
        let taken = is_internal_user(&*host, value)? || taken_by_another(&*host, value, input.property)?;
        return Some(fails_if(taken, || requirement("VALID_USERNAME")));
    }
    Some(fails_if(taken_by_another(&*host, value, input.property)?, || {
        requirement("UNIQUE")
    }))
}

/// `uniqueness.rhai`'s `equalityFilter`: `property eq "value"`, the value quoted.
fn equality_filter(property: &str, value: &str) -> String {
    format!("{property} eq \"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `uniqueness.rhai`'s `tooLongToCheck`.
fn too_long_to_check(value: &str, property: &str) -> bool {
    value.chars().count() > LONGEST_CHECKED || equality_filter(property, value).len() > LONGEST_FILTER
}

/// `uniqueness.rhai`'s `isInternalUser`.
fn is_internal_user(host: &dyn crate::host::Host, name: &str) -> Option<bool> {
    if too_long_to_check(name, "userName") {
        return Some(false);
    }
    let found = host
        .query_ids("internal/user", &equality_filter("userName", name))
        .ok()?;
    Some(!found.is_empty())
}

/// `uniqueness.rhai`'s `takenByAnother`: whether an object of the validated resource's
/// collection other than that resource holds `value` in `property`.
fn taken_by_another(host: &dyn crate::host::Host, value: &str, property: &str) -> Option<bool> {
    let Some(resource) = host.resource() else {
        return Some(false);
    };
    let start = resource.find('/').map_or(0, |first| first + 1);
    let (collection, id) = match resource[start..].find('/') {
        Some(offset) => (&resource[..start + offset], &resource[start + offset + 1..]),
        None => (resource.as_str(), "*"),
    };
    let found = host.query_ids(collection, &equality_filter(property, value)).ok()?;
    Some(found.iter().any(|found_id| found_id != id))
}

fn requirement(name: &str) -> Value {
    json!({ "policyRequirement": name })
}

fn fails_if(failed: bool, requirement: impl FnOnce() -> Value) -> Vec<Value> {
    if failed { vec![requirement()] } else { Vec::new() }
}

fn text_of(value: &Value) -> Option<&str> {
    value.as_str()
}

/// A string's length as Rhai counts it: in characters.
fn chars(text: &str) -> i64 {
    i64::try_from(text.chars().count()).unwrap_or(i64::MAX)
}

/// Strings and arrays have a length; in `notEmpty`, only a non-empty one passes.
fn has_length(value: &Value) -> bool {
    match value {
        Value::String(text) => !text.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => false,
    }
}

/// `types.rhai`'s `jsonType`: the JSON type name of a value as IDM reports it.
fn valid_type(value: &Value, types: &Value) -> Option<Vec<Value>> {
    let allowed: Vec<&str> = types.as_array()?.iter().map(Value::as_str).collect::<Option<_>>()?;
    let (actual, whole) = match value {
        Value::Null => ("null", false),
        Value::Bool(_) => ("boolean", false),
        Value::String(_) => ("string", false),
        Value::Array(_) => ("array", false),
        Value::Object(_) => ("object", false),
        Value::Number(number) if number.is_i64() => ("number", true),
        Value::Number(number) if number.is_f64() => {
            let float = number.as_f64()?;
            ("number", float == float.floor())
        }
        Value::Number(_) => return None,
    };
    let accepted = allowed
        .iter()
        .any(|name| *name == actual || (*name == "integer" && actual == "number" && whole));
    Some(fails_if(
        !accepted,
        || json!({"policyRequirement": "VALID_TYPE", "params": {"invalidType": actual, "validTypes": types}}),
    ))
}

/// `strings.rhai`'s `cannotContainCharacters`, for `forbiddenChars` given as an array of
/// strings (a comma-separated string runs the script).
fn cannot_contain_characters(input: CheckInput<'_>) -> Option<Vec<Value>> {
    let forbidden: Vec<&str> = input
        .params
        .get("forbiddenChars")?
        .as_array()?
        .iter()
        .map(Value::as_str)
        .collect::<Option<_>>()?;
    let Some(text) = text_of(input.value?).filter(|text| !text.is_empty()) else {
        return Some(Vec::new());
    };
    let found = forbidden.iter().any(|piece| !piece.is_empty() && text.contains(piece));
    Some(fails_if(
        found,
        || json!({"policyRequirement": "CANNOT_CONTAIN_CHARACTERS", "params": {"forbiddenChars": forbidden.join(", ")}}),
    ))
}

/// `formats.rhai`'s test, `text::matches(value, ".+@.+\\..+", "i")`: some characters other
/// than a line break, `@`, some more, a dot, and at least one more, on one line.
fn looks_like_email(text: &str) -> Option<bool> {
    static PATTERN: OnceLock<Option<regex::Regex>> = OnceLock::new();
    let pattern = PATTERN.get_or_init(|| regex::Regex::new(r"(?i).+@.+\..+").ok());
    Some(pattern.as_ref()?.is_match(text))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rhai::Dynamic;

    use super::*;
    use crate::convert::to_dynamic;
    use crate::engine::ScriptLimits;
    use crate::policy::PolicyRegistry;

    fn shipped_registry() -> PolicyRegistry {
        let limits = ScriptLimits::new(std::env::temp_dir());
        let scripts: Vec<_> = [
            ("presence.rhai", PRESENCE),
            ("types.rhai", TYPES),
            ("strings.rhai", STRINGS),
            ("formats.rhai", FORMATS),
            ("uniqueness.rhai", UNIQUENESS),
        ]
        .iter()
        .map(|(name, text)| Arc::new(CompiledScript::compile_text(&limits, name, text).unwrap()))
        .collect();
        PolicyRegistry::load(&limits, &scripts).unwrap()
    }

    fn values() -> Vec<Option<Value>> {
        let mut values = vec![None];
        values.extend(
            [
                json!(null),
                json!(""),
                json!("a"),
                json!("ab/c"),
                json!("bjensen"),
                json!("Ünïcødé ñame"),
                json!("x@y.z"),
                json!("X@EXAMPLE.COM"),
                json!("a@b"),
                json!("@b.c"),
                json!("a@b.\nc"),
                json!("a@b.c\n"),
                json!("0123456789"),
                json!(0),
                json!(7),
                json!(-3),
                json!(2.0),
                json!(2.5),
                json!(1e300),
                json!(u64::MAX),
                json!(true),
                json!(false),
                json!([]),
                json!(["a"]),
                json!([1, 2]),
                json!({}),
                json!({"a": 1}),
            ]
            .into_iter()
            .map(Some),
        );
        values
    }

    fn params_for(check: NativeCheck) -> Vec<Value> {
        match check {
            NativeCheck::Required
            | NativeCheck::NotEmpty
            | NativeCheck::ValidEmailAddress
            | NativeCheck::Unique
            | NativeCheck::ValidUsername
            | NativeCheck::NoInternalUserConflict => vec![json!({})],
            NativeCheck::ValidType => vec![
                json!({"types": ["string"]}),
                json!({"types": ["string", "null"]}),
                json!({"types": ["integer"]}),
                json!({"types": ["number", "boolean"]}),
                json!({"types": ["object"]}),
                json!({"types": ["array", "null"]}),
                json!({"types": []}),
                json!({"types": "string"}),
                json!({"types": [1]}),
                json!({}),
            ],
            NativeCheck::MinimumLength => vec![
                json!({"minLength": 1}),
                json!({"minLength": 3}),
                json!({"minLength": 8}),
                json!({"minLength": 0}),
                json!({"minLength": 2.5}),
                json!({"minLength": "3"}),
                json!({}),
            ],
            NativeCheck::MaximumLength => vec![
                json!({"maxLength": 3}),
                json!({"maxLength": 0}),
                json!({"maxLength": 10}),
                json!({"maxLength": 2.5}),
                json!({}),
            ],
            NativeCheck::CannotContainCharacters => vec![
                json!({"forbiddenChars": ["/"]}),
                json!({"forbiddenChars": ["/", "x", ""]}),
                json!({"forbiddenChars": ["é", "ñ"]}),
                json!({"forbiddenChars": []}),
                json!({"forbiddenChars": "/, x"}),
                json!({"forbiddenChars": [1]}),
                json!({}),
            ],
        }
    }

    const CHECKS: [(&str, NativeCheck); 7] = [
        ("required", NativeCheck::Required),
        ("not-empty", NativeCheck::NotEmpty),
        ("valid-type", NativeCheck::ValidType),
        ("minimum-length", NativeCheck::MinimumLength),
        ("maximum-length", NativeCheck::MaximumLength),
        ("cannot-contain-characters", NativeCheck::CannotContainCharacters),
        ("valid-email-address-format", NativeCheck::ValidEmailAddress),
    ];

    #[test]
    fn native_checks_answer_as_the_shipped_scripts_do() {
        let registry = shipped_registry();
        let limits = ScriptLimits::new(std::env::temp_dir());
        let mut compared = 0;
        let mut native = 0;
        for (policy_id, check) in CHECKS {
            let policy = registry.get(policy_id).unwrap();
            assert_eq!(policy.native, Some(check), "{policy_id} runs natively");
            for params in params_for(check) {
                let params = params.as_object().unwrap().clone();
                for value in values() {
                    for required_failed in [false, true] {
                        if policy.validate_only_if_present && value.is_none() {
                            continue;
                        }
                        let input = CheckInput {
                            value: value.as_ref(),
                            params: &params,
                            required_failed,
                            property: "p",
                        };
                        let scripted = policy.validate(
                            &limits,
                            Dynamic::from(rhai::Map::new()),
                            value.as_ref().map_or(Dynamic::UNIT, to_dynamic),
                            to_dynamic(&Value::Object(params.clone())),
                            "p",
                            required_failed,
                            value.is_some(),
                        );
                        compared += 1;
                        if let Some(answer) = check.run(input) {
                            native += 1;
                            let scripted = scripted.unwrap_or_else(|error| {
                                panic!("{policy_id} {params:?} {value:?}: the script failed ({error}) where the native check answered {answer:?}")
                            });
                            assert_eq!(
                                serde_json::to_string(&answer).unwrap(),
                                serde_json::to_string(&scripted).unwrap(),
                                "{policy_id} params {params:?} value {value:?} requiredFailed {required_failed}"
                            );
                        }
                    }
                }
            }
        }
        assert!(native * 2 > compared, "most cases run natively: {native} of {compared}");
    }

    #[test]
    fn an_edited_script_or_another_function_runs_as_a_script() {
        let limits = ScriptLimits::new(std::env::temp_dir());
        let edited = format!("{PRESENCE}\n// edited\n");
        let script = CompiledScript::compile_text(&limits, "presence.rhai", &edited).unwrap();
        assert_eq!(NativeCheck::of(&script, "required"), None);
        let shipped = CompiledScript::compile_text(&limits, "presence.rhai", PRESENCE).unwrap();
        assert_eq!(NativeCheck::of(&shipped, "required"), Some(NativeCheck::Required));
        assert_eq!(NativeCheck::of(&shipped, "validType"), None, "defined elsewhere");
        let registry = shipped_registry();
        assert_eq!(registry.get("regexpMatches").unwrap().native, None);
        assert_eq!(registry.get("valid-name-format").unwrap().native, None);
    }

    /// A host holding a few user names, for the uniqueness checks; a lookup of `boom` fails.
    struct Directory {
        resource: Option<String>,
    }

    impl crate::host::Host for Directory {
        fn read(&self, _: &str) -> crate::host::HostResult<Option<Value>> {
            Ok(None)
        }

        fn query(&self, path: &str, filter: &str) -> crate::host::HostResult<Vec<Value>> {
            if filter.contains("boom") {
                return Err(crate::host::HostError::bad_request("the store is down"));
            }
            let held = [
                ("internal/user", "openidm-admin", "userName", "openidm-admin"),
                ("managed/user", "u1", "userName", "mine"),
                ("managed/user", "u2", "userName", "taken"),
                ("managed/user", "u2", "mail", "a\"b\\c@x.y"),
            ];
            Ok(held
                .iter()
                .filter(|(collection, _, property, value)| {
                    *collection == path && filter == equality_filter(property, value)
                })
                .map(|(_, id, property, value)| {
                    let mut found = Map::new();
                    found.insert("_id".to_owned(), json!(id));
                    found.insert((*property).to_owned(), json!(value));
                    Value::Object(found)
                })
                .collect())
        }

        fn create(&self, _: &str, _: Value) -> crate::host::HostResult<Value> {
            Err(crate::host::HostError::bad_request("not here"))
        }

        fn update(&self, _: &str, _: Value) -> crate::host::HostResult<Value> {
            Err(crate::host::HostError::bad_request("not here"))
        }

        fn patch(&self, _: &str, _: Value) -> crate::host::HostResult<Value> {
            Err(crate::host::HostError::bad_request("not here"))
        }

        fn delete(&self, _: &str) -> crate::host::HostResult<Value> {
            Err(crate::host::HostError::bad_request("not here"))
        }

        fn service(&self, _: &str, _: Value) -> crate::host::HostResult<Value> {
            Err(crate::host::HostError::bad_request("not here"))
        }

        fn resource(&self) -> Option<String> {
            self.resource.clone()
        }
    }

    /// What policy `policy_id` answers for `value` of `property` of `resource`, by the script
    /// and natively (`None` when the native check leaves it to the script).
    fn uniqueness_answers(
        policy_id: &str,
        resource: Option<&str>,
        property: &str,
        value: Option<&Value>,
    ) -> (Result<Vec<Value>, String>, Option<Vec<Value>>) {
        let registry = shipped_registry();
        let limits = ScriptLimits::new(std::env::temp_dir());
        let policy = registry.get(policy_id).unwrap();
        let params = Map::new();
        let host = std::rc::Rc::new(Directory {
            resource: resource.map(str::to_owned),
        });
        crate::host::with_host(host, crate::host::Capability::Read, "policy", || {
            let scripted = policy
                .validate(
                    &limits,
                    Dynamic::from(rhai::Map::new()),
                    value.map_or(Dynamic::UNIT, to_dynamic),
                    to_dynamic(&json!({})),
                    property,
                    false,
                    value.is_some(),
                )
                .map_err(|error| error.to_string());
            let native = policy.native.and_then(|check| {
                check.run(CheckInput {
                    value,
                    params: &params,
                    required_failed: false,
                    property,
                })
            });
            (scripted, native)
        })
    }

    #[test]
    fn native_uniqueness_checks_answer_as_the_shipped_script_does() {
        let long_property = "p".repeat(9000);
        let mut values = values();
        values.extend(
            [
                "taken".to_owned(),
                "mine".to_owned(),
                "openidm-admin".to_owned(),
                "a\"b\\c@x.y".to_owned(),
                "boom".to_owned(),
                "x".repeat(LONGEST_CHECKED),
                "x".repeat(LONGEST_CHECKED + 1),
            ]
            .map(|text| Some(json!(text))),
        );
        let resources = [
            None,
            Some("managed/user/*"),
            Some("managed/user/u1"),
            Some("managed/user/u2"),
            Some("managed/user"),
            Some("managed"),
        ];
        let mut native = 0;
        for (policy_id, check) in [
            ("unique", NativeCheck::Unique),
            ("valid-username", NativeCheck::ValidUsername),
            ("no-internal-user-conflict", NativeCheck::NoInternalUserConflict),
        ] {
            assert_eq!(shipped_registry().get(policy_id).unwrap().native, Some(check));
            for resource in resources {
                for property in ["userName", "mail", long_property.as_str()] {
                    for value in &values {
                        let (scripted, answered) = uniqueness_answers(policy_id, resource, property, value.as_ref());
                        let Some(answer) = answered else {
                            assert!(
                                scripted.is_err(),
                                "{policy_id} {value:?}: left to a script that answers"
                            );
                            continue;
                        };
                        native += 1;
                        assert_eq!(
                            serde_json::to_string(&answer).unwrap(),
                            serde_json::to_string(&scripted.unwrap()).unwrap(),
                            "{policy_id} {resource:?} {property:.20} {value:?}"
                        );
                    }
                }
            }
        }
        assert!(native > 1000, "{native} answered natively");
        let answered = |policy_id, resource, value: &str| {
            uniqueness_answers(policy_id, resource, "userName", Some(&json!(value)))
                .1
                .unwrap()
        };
        let valid_username = json!([{"policyRequirement": "VALID_USERNAME"}]);
        assert_eq!(
            Value::Array(answered("valid-username", Some("managed/user/*"), "taken")),
            valid_username
        );
        assert_eq!(
            Value::Array(answered("valid-username", Some("managed/user/u1"), "openidm-admin")),
            valid_username
        );
        assert!(
            answered("valid-username", Some("managed/user/u2"), "taken").is_empty(),
            "its own name"
        );
        assert_eq!(
            Value::Array(answered("unique", Some("managed/user/u1"), "taken")),
            json!([{"policyRequirement": "UNIQUE"}])
        );
        let outside = uniqueness_answers("unique", None, "userName", Some(&json!("taken")));
        assert_eq!(outside.1, Some(Vec::new()), "no resource: nothing to compare with");
    }

    #[test]
    fn uniqueness_checks_without_a_host_are_left_to_the_script() {
        let params = Map::new();
        let input = CheckInput {
            value: Some(&json!("taken")),
            params: &params,
            required_failed: false,
            property: "userName",
        };
        assert_eq!(NativeCheck::Unique.run(input), None);
        assert_eq!(NativeCheck::ValidUsername.run(input), None);
    }
}
