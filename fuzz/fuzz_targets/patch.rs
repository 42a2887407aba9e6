//! CREST patch documents, parsed and applied to arbitrary JSON documents.
//!
//! Input: a first byte choosing the form of the rest. Even: JSON text (the document, a NUL byte,
//! the patch body), as a client sends it. Odd: bytes that `arbitrary` turns into a document and a
//! list of operations over a small set of names, so that fields, `from` pointers and values often
//! meet. Asserts, besides "no panic, no hang, no stack overflow":
//! * an object stays an object;
//! * a patch reported as not modifying anything left the document as it was (the revision is not
//!   bumped then), and every top-level property that changed is among `touched_properties` (which
//!   selects the policies to evaluate).

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use ferridm_core::patch::{apply_patch, parse_patch, touched_properties};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

/// Names fields and keys are made of: existing ones, array indexes, the append marker, and
/// characters pointers escape.
const NAMES: &[&str] = &["a", "b", "c", "0", "1", "2", "-", "_id", "x/y", "%", "", "*", "fail"];

#[derive(Arbitrary, Debug)]
enum Json {
    Null,
    Bool(bool),
    Integer(i64),
    Float(f64),
    Name(u8),
    Text(String),
    Array(Vec<Json>),
    Object(Vec<(u8, Json)>),
}

fn name(index: u8) -> &'static str {
    NAMES[usize::from(index) % NAMES.len()]
}

impl Json {
    fn to_value(&self, depth: usize) -> Value {
        match self {
            _ if depth == 0 => Value::Null,
            Self::Null => Value::Null,
            Self::Bool(flag) => json!(flag),
            Self::Integer(integer) => json!(integer),
            Self::Float(float) => json!(float),
            Self::Name(index) => json!(name(*index)),
            Self::Text(text) => json!(text),
            Self::Array(items) => Value::Array(items.iter().map(|item| item.to_value(depth - 1)).collect()),
            Self::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(key, value)| (name(*key).to_owned(), value.to_value(depth - 1)))
                    .collect::<Map<_, _>>(),
            ),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Operation {
    operation: u8,
    field: Vec<u8>,
    from: Option<Vec<u8>>,
    value: Option<Json>,
}

const OPERATIONS: &[&str] = &[
    "add",
    "remove",
    "replace",
    "increment",
    "copy",
    "move",
    "transform",
    "REPLACE",
    "x",
];

fn pointer(names: &[u8]) -> String {
    names
        .iter()
        .map(|&index| format!("/{}", name(index).replace('%', "%25").replace('/', "%2F")))
        .collect()
}

impl Operation {
    fn to_value(&self) -> Value {
        let mut member = Map::new();
        member.insert(
            "operation".to_owned(),
            json!(OPERATIONS[usize::from(self.operation) % OPERATIONS.len()]),
        );
        member.insert("field".to_owned(), json!(pointer(&self.field)));
        if let Some(from) = &self.from {
            member.insert("from".to_owned(), json!(pointer(from)));
        }
        if let Some(value) = &self.value {
            member.insert("value".to_owned(), value.to_value(8));
        }
        Value::Object(member)
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    document: Vec<(u8, Json)>,
    operations: Vec<Operation>,
}

/// Stands in for transform scripts: wraps the content, or fails for a script named "fail".
fn transform(script: &Value, content: Value) -> Result<Value, String> {
    if script == "fail" {
        return Err("the script failed".to_owned());
    }
    Ok(json!({"script": script, "content": content}))
}

fn check(document: Value, body: &Value) {
    let Ok(operations) = parse_patch(body) else {
        return;
    };
    let mut patched = document.clone();
    let Ok(modified) = apply_patch(&mut patched, &operations, &transform) else {
        return;
    };
    if !modified {
        assert_eq!(
            patched, document,
            "a patch that modified nothing changed the document: {body}"
        );
    }
    let (Value::Object(before), Value::Object(after)) = (&document, &patched) else {
        assert!(!document.is_object(), "an object became {patched}");
        return;
    };
    let touched = touched_properties(&operations);
    for key in before.keys().chain(after.keys()) {
        if before.get(key) != after.get(key) {
            assert!(
                touched.contains(key),
                "{key:?} changed but is not among the touched {touched:?}: {body}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&form, rest)) = data.split_first() else {
        return;
    };
    if form % 2 == 0 {
        let mut parts = rest.splitn(2, |&byte| byte == 0);
        let (Some(document), Some(body)) = (parts.next(), parts.next()) else {
            return;
        };
        if let (Ok(document), Ok(body)) = (serde_json::from_slice(document), serde_json::from_slice(body)) {
            check(document, &body);
        }
    } else if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(rest)) {
        let document = Value::Object(
            input
                .document
                .iter()
                .map(|(key, value)| (name(*key).to_owned(), value.to_value(8)))
                .collect(),
        );
        let body = Value::Array(input.operations.iter().map(Operation::to_value).collect());
        check(document, &body);
    }
});
