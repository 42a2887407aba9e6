//! JSON patch as IDM applies it to managed objects (IDM §4).
//!
//! A patch body is a JSON array of `{"operation", "field", "value", "from"}` objects.
//! [`parse_patch`] validates each element the way CREST does and [`apply_patch`] applies the
//! operations, in order, the way IDM's patch engine does:
//!
//! * `add` / `replace` set the value at `field`, creating missing intermediate objects (or an
//!   array when the next segment is `-`); a final `-` appends to an array, and is a literal key
//!   on an object. Existing values are overwritten.
//! * `remove` deletes the field, or with a `value` removes every equal element of an array (or
//!   the field itself when it equals the value).
//! * `increment` adds a number to a number, or to every element of an array of numbers, keeping
//!   each number's kind (an integer stays an integer).
//! * `copy` / `move` read `from` and set the value at `field` (`move` removes `from` first).
//! * `transform` hands the current value to a script through a [`Transformer`].
//!
//! Before each operation, a pointer ending in a single decimal digit whose parent is an array
//! is refused ("Position-based operation is not allowed"): IDM does not support positional
//! array patches. Multi-digit indexes are not caught by that rule (nor are they in IDM).
//!
//! Every segment that meets an array — in `field` and `from`, in every operation, at any depth —
//! follows one rule: it is an index in canonical decimal form (`0`, or a non-zero digit followed
//! by digits, fitting in `usize`), or `-` (the position after the last element) where the
//! operation writes there (`add`, `replace`, and the destination of `copy` and `move`). Any
//! other spelling (`01`, `+1`, `-1`, `1.0`, ` 1`, `1e0`, `x`, `-` where nothing can be read) is
//! refused with `"<array>: List index is not valid: <segment>"`; a canonical index past the end
//! keeps IDM's `"<array>: List index out of range: <n>"`. IDM reads every segment with Java's
//! `Integer.parseInt`, so `01` and `+1` address element 1 there (slipping past the
//! position-based rule), and a name is index -1 (`"List index out of range: -1"` for `add`,
//! silently nothing for `remove`, facts 127 and 146); those are the deviations this rule makes.
//!
//! Deliberate differences from IDM, all of which return a 400 [`PatchError`]:
//!
//! * a segment that is not a valid array index where it meets an array is refused (above);
//! * structural failures of the JSON model (`"/key: Expecting a Map or List"`, …) are 500s in
//!   IDM; they are 400s here with the same text;
//! * `copy` / `move` onto an existing object key overwrite it (IDM throws "Map key … already
//!   exists", a 500), and create missing parents like `add`;
//! * an intermediate member holding `null` is replaced by a new container (IDM throws);
//! * "modified" is reported only when the document actually changed: setting a value equal to
//!   the current one, incrementing by zero, removing a value that is absent from an array are
//!   not modifications (IDM counts some of them), so the revision is not bumped;
//! * integer increments that leave the 64-bit range are refused instead of wrapping around.

use std::fmt;

use serde_json::{Number, Value};

use crate::{JsonPointer, Object};

/// Prefix of every per-element parse failure.
const INVALID_PATCH: &str = "The request could not be processed because the provided content is not a valid JSON patch";

/// The message for a body that is not an array.
const NOT_AN_ARRAY: &str = "The request could not be processed because the provided content is \
                            not a JSON array of patch operations";

/// One of IDM's patch operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchOp {
    /// Set a value, creating missing parents; `-` appends to an array.
    Add,
    /// Delete a field, or remove values equal to the operation's value.
    Remove,
    /// Set a value (same as `add`).
    Replace,
    /// Add a number to a number or to every element of an array of numbers.
    Increment,
    /// Copy the value at `from` to `field`.
    Copy,
    /// Move the value at `from` to `field`.
    Move,
    /// Replace the value with the result of a script.
    Transform,
}

impl PatchOp {
    /// Every operation, in IDM's documentation order.
    pub const ALL: [Self; 7] = [
        Self::Add,
        Self::Remove,
        Self::Replace,
        Self::Increment,
        Self::Copy,
        Self::Move,
        Self::Transform,
    ];

    /// The canonical (lower-case) wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Remove => "remove",
            Self::Replace => "replace",
            Self::Increment => "increment",
            Self::Copy => "copy",
            Self::Move => "move",
            Self::Transform => "transform",
        }
    }

    /// The operation with this wire name, compared case-insensitively (`"ADD"` is `add`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.as_str().eq_ignore_ascii_case(name))
    }

    /// True for the operations that require a non-null `value` member.
    fn needs_value(self) -> bool {
        matches!(self, Self::Add | Self::Replace | Self::Increment | Self::Transform)
    }
}

impl fmt::Display for PatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parsed patch operation.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOperation {
    /// What to do.
    pub op: PatchOp,
    /// The field the operation targets (the destination for `copy` and `move`).
    pub field: JsonPointer,
    /// The operation's value; `None` when absent or `null`.
    pub value: Option<Value>,
    /// The source field of `copy` and `move`; `None` for every other operation.
    pub from: Option<JsonPointer>,
}

/// A refused patch; `message` is the exact client-facing text (it becomes a 400 body).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct PatchError {
    /// The client-facing message.
    pub message: String,
}

impl PatchError {
    /// A patch error with the given message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// A parse failure of one element, with its reason.
    fn invalid(reason: impl fmt::Display) -> Self {
        Self::new(format!("{INVALID_PATCH}: {reason}"))
    }

    /// A failure of the JSON model at `location`, worded like IDM's `JsonValueException`.
    fn structural(location: &JsonPointer, what: impl fmt::Display) -> Self {
        Self::new(format!("{location}: {what}"))
    }

    /// IDM reports a missing intermediate value against the whole object, so always at `/`.
    fn expecting_value() -> Self {
        Self::structural(&JsonPointer::default(), "Expecting a value")
    }

    fn root_field() -> Self {
        Self::new("The field '/' cannot be patched")
    }
}

impl From<PatchError> for crate::Error {
    fn from(error: PatchError) -> Self {
        Self::BadRequest(error.message)
    }
}

/// Runs a `transform` operation's script.
pub trait Transformer {
    /// Receives the operation's `script` member (a script config object or a source string)
    /// and the current field value as `content` (`Value::Null` when absent); returns the new
    /// value (`Null` removes the field) or an error text, reported as
    /// `"Failed to eval script <text>"`.
    fn transform(&self, script: &Value, content: Value) -> Result<Value, String>;
}

impl<F> Transformer for F
where
    F: Fn(&Value, Value) -> Result<Value, String>,
{
    fn transform(&self, script: &Value, content: Value) -> Result<Value, String> {
        self(script, content)
    }
}

/// Parses a patch body: a JSON array of operation objects.
///
/// Errors carry CREST's messages: a body that is not an array, an element that is not an
/// object, or an element that is not a valid operation (the reason is appended).
pub fn parse_patch(body: &Value) -> Result<Vec<PatchOperation>, PatchError> {
    let Value::Array(elements) = body else {
        return Err(PatchError::new(NOT_AN_ARRAY));
    };
    elements.iter().map(parse_operation).collect()
}

/// Parses one element of a patch body.
fn parse_operation(element: &Value) -> Result<PatchOperation, PatchError> {
    let Value::Object(member) = element else {
        return Err(PatchError::new(INVALID_PATCH));
    };
    let name = string_member(member, "operation")
        .ok_or_else(|| PatchError::invalid("Patch operation is missing the 'operation' member"))?;
    let field = string_member(member, "field")
        .ok_or_else(|| PatchError::invalid("Patch operation is missing the 'field' member"))?;
    let op =
        PatchOp::from_name(name).ok_or_else(|| PatchError::invalid(format!("Invalid patch operation type {name}")))?;
    let value = member.get("value").filter(|value| !value.is_null());
    let from = member.get("from").filter(|from| !from.is_null());

    match op {
        PatchOp::Copy | PatchOp::Move => {
            let from = match from {
                None => return Err(missing_from(op)),
                Some(Value::String(text)) => JsonPointer::parse(text),
                Some(_) => {
                    return Err(PatchError::invalid("Patch operation has a non-string 'from' member"));
                }
            };
            if from.is_root() {
                return Err(missing_from(op));
            }
            if value.is_some() {
                return Err(PatchError::invalid(format!("'{op}' does not accept value field")));
            }
            Ok(PatchOperation {
                op,
                field: JsonPointer::parse(field),
                value: None,
                from: Some(from),
            })
        }
        _ => {
            if op.needs_value() && value.is_none() {
                return Err(missing_value(op));
            }
            if from.is_some() {
                return Err(PatchError::invalid(format!("'{op}' does not accept from field")));
            }
            if op == PatchOp::Increment && !value.is_some_and(Value::is_number) {
                return Err(PatchError::invalid(
                    "Non-numeric value provided for increment operation",
                ));
            }
            Ok(PatchOperation {
                op,
                field: JsonPointer::parse(field),
                value: value.cloned(),
                from: None,
            })
        }
    }
}

/// The member `name` of `object` when it is a string.
fn string_member<'a>(object: &'a Object, name: &str) -> Option<&'a str> {
    object.get(name).and_then(Value::as_str)
}

fn missing_value(op: PatchOp) -> PatchError {
    PatchError::invalid(format!("No value field provided for '{op}' operation"))
}

fn missing_from(op: PatchOp) -> PatchError {
    PatchError::invalid(format!("No from field provided for '{op}' operation"))
}

/// Applies the operations in order to `target` (a JSON object: a managed object's content).
///
/// Returns whether anything was modified (drives revision bumps and policy evaluation). On
/// error `target` may be partially modified: callers apply to a working copy.
pub fn apply_patch(
    target: &mut Value,
    operations: &[PatchOperation],
    transformer: &dyn Transformer,
) -> Result<bool, PatchError> {
    let mut modified = false;
    for operation in operations {
        modified |= apply_operation(target, operation, transformer)?;
    }
    Ok(modified)
}

/// The top-level property names touched by the operations: the first segment of each `field`,
/// and of `from` for `move` (which removes it). Each name appears once, in order of appearance.
pub fn touched_properties(operations: &[PatchOperation]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for operation in operations {
        let source = match operation.op {
            PatchOp::Move => operation.from.as_ref(),
            _ => None,
        };
        for pointer in std::iter::once(&operation.field).chain(source) {
            if let Some(first) = pointer.first()
                && !names.iter().any(|name| name == first)
            {
                names.push(first.to_owned());
            }
        }
    }
    names
}

/// Applies one operation; returns whether the document changed.
fn apply_operation(
    target: &mut Value,
    operation: &PatchOperation,
    transformer: &dyn Transformer,
) -> Result<bool, PatchError> {
    let op = operation.op;
    let field = &operation.field;
    let value = || {
        operation
            .value
            .as_ref()
            .filter(|value| !value.is_null())
            .ok_or_else(|| missing_value(op))
    };

    // IDM checks the source of `copy` and `move`, the target of every other operation.
    let from = match op {
        PatchOp::Copy | PatchOp::Move => Some(operation.from.as_ref().ok_or_else(|| missing_from(op))?),
        _ => None,
    };
    reject_position_based(target, from.unwrap_or(field))?;
    if field.is_root() || from.is_some_and(JsonPointer::is_root) {
        return Err(PatchError::root_field());
    }

    match (op, from) {
        (PatchOp::Add | PatchOp::Replace, _) => set(target, field, value()?.clone()),
        (PatchOp::Remove, _) => remove(target, field, operation.value.as_ref()),
        (PatchOp::Increment, _) => increment(target, field, value()?),
        (PatchOp::Transform, _) => transform(target, field, value()?, transformer),
        (PatchOp::Copy | PatchOp::Move, Some(from)) => copy_or_move(target, op == PatchOp::Move, from, field),
        (PatchOp::Copy | PatchOp::Move, None) => Err(missing_from(op)),
    }
}

/// The `copy` and `move` operations: an absent or `null` source is a no-op; otherwise the
/// value is set at `field` like `add` (overwriting an existing member, a documented deviation).
/// `move` removes the source first, so a value can move into its own child or over its parent.
fn copy_or_move(
    target: &mut Value,
    is_move: bool,
    from: &JsonPointer,
    field: &JsonPointer,
) -> Result<bool, PatchError> {
    let Some(value) = present(target, from)?.cloned() else {
        return Ok(false);
    };
    if !is_move {
        return set(target, field, value);
    }
    if from == field {
        return Ok(false);
    }
    remove_at(target, from)?;
    set(target, field, value)?;
    Ok(true)
}

/// Refuses a pointer ending in a single decimal digit whose parent is an array.
fn reject_position_based(target: &Value, pointer: &JsonPointer) -> Result<(), PatchError> {
    let single_digit = pointer
        .leaf()
        .is_some_and(|leaf| matches!(leaf.as_bytes(), [byte] if byte.is_ascii_digit()));
    if single_digit && lookup(target, pointer.parent().segments())?.is_some_and(Value::is_array) {
        return Err(PatchError::new(format!(
            "Position-based operation is not allowed: {pointer}"
        )));
    }
    Ok(())
}

/// The value at `pointer` unless it is absent or `null`.
fn present<'a>(target: &'a Value, pointer: &JsonPointer) -> Result<Option<&'a Value>, PatchError> {
    Ok(lookup(target, pointer.segments())?.filter(|value| !value.is_null()))
}

/// True for a segment made only of ASCII digits (IDM's "index token").
fn is_index_token(segment: &str) -> bool {
    !segment.is_empty() && segment.bytes().all(|byte| byte.is_ascii_digit())
}

/// Where a pointer segment lands in an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArrayIndex {
    /// The element at this position (which may be past the end).
    At(usize),
    /// `-`: the position after the last element.
    End,
}

/// The one rule for a segment met on an array: an index is written in canonical decimal form
/// (`0`, or a non-zero digit followed by digits) and fits in `usize`; `-` is the position after
/// the last element. Every other spelling (`01`, `+1`, `-1`, `1.0`, ` 1`, `1e0`, `x`, …) is
/// `None`: it addresses no element.
fn array_index(segment: &str) -> Option<ArrayIndex> {
    match segment.as_bytes() {
        b"-" => Some(ArrayIndex::End),
        b"0" => Some(ArrayIndex::At(0)),
        [b'1'..=b'9', rest @ ..] if rest.iter().all(u8::is_ascii_digit) => segment.parse().ok().map(ArrayIndex::At),
        _ => None,
    }
}

/// The refusal of a segment that is not a valid index of the array at `location`.
fn invalid_index(location: &[String], segment: &str) -> PatchError {
    PatchError::structural(
        &JsonPointer::from_segments(location),
        format!("List index is not valid: {segment}"),
    )
}

/// The index `segments[depth]` addresses in the array at `segments[..depth]`, where the
/// operation allows `-` (the position after the last element) only when `end_allowed`.
fn index_in_array(segments: &[String], depth: usize, end_allowed: bool) -> Result<ArrayIndex, PatchError> {
    let segment = &segments[depth];
    match array_index(segment) {
        Some(ArrayIndex::End) if !end_allowed => Err(invalid_index(&segments[..depth], segment)),
        Some(index) => Ok(index),
        None => Err(invalid_index(&segments[..depth], segment)),
    }
}

/// The position `segments[depth]` addresses in an array when reading: an existing element, so
/// `-` (which holds nothing) is refused like any other invalid index.
fn read_position(segments: &[String], depth: usize) -> Result<usize, PatchError> {
    match index_in_array(segments, depth, false)? {
        ArrayIndex::At(index) => Ok(index),
        ArrayIndex::End => Err(invalid_index(&segments[..depth], &segments[depth])),
    }
}

/// The value at `segments`, if present. Arrays are indexed by [`array_index`]'s rule; a segment
/// that is not a valid index of an array it meets is refused rather than read as absent.
fn lookup<'a>(target: &'a Value, segments: &[String]) -> Result<Option<&'a Value>, PatchError> {
    let mut node = target;
    for (depth, segment) in segments.iter().enumerate() {
        let next = match node {
            Value::Object(map) => map.get(segment.as_str()),
            Value::Array(items) => items.get(read_position(segments, depth)?),
            _ => None,
        };
        match next {
            Some(next) => node = next,
            None => return Ok(None),
        }
    }
    Ok(Some(node))
}

/// [`lookup`], mutably.
fn lookup_mut<'a>(target: &'a mut Value, segments: &[String]) -> Result<Option<&'a mut Value>, PatchError> {
    let mut node = target;
    for (depth, segment) in segments.iter().enumerate() {
        let next = match node {
            Value::Object(map) => map.get_mut(segment.as_str()),
            Value::Array(items) => items.get_mut(read_position(segments, depth)?),
            _ => None,
        };
        match next {
            Some(next) => node = next,
            None => return Ok(None),
        }
    }
    Ok(Some(node))
}

/// The container created for a missing intermediate `segment` followed by `next`.
fn new_container(segment: &str, next: &str) -> Result<Value, PatchError> {
    if is_index_token(segment) || is_index_token(next) {
        // IDM cannot create an array element from a numeric segment.
        Err(PatchError::expecting_value())
    } else if next == "-" {
        Ok(Value::Array(Vec::new()))
    } else {
        Ok(Value::Object(Object::new()))
    }
}

/// Sets `value` at `pointer`, creating missing intermediate containers; returns whether the
/// document changed (false when the same value was already there). A final `-` on an array
/// appends, as does the index one past the last element.
fn set(target: &mut Value, pointer: &JsonPointer, value: Value) -> Result<bool, PatchError> {
    let segments = pointer.segments();
    let Some((leaf, parents)) = segments.split_last() else {
        return Err(PatchError::root_field());
    };
    let location = |depth: usize| JsonPointer::from_segments(&segments[..depth]);

    let mut node = target;
    for (depth, (segment, next)) in parents.iter().zip(&segments[1..]).enumerate() {
        node = match node {
            Value::Object(map) => {
                let container = match map.get(segment.as_str()) {
                    Some(existing) if !existing.is_null() => None,
                    _ => Some(new_container(segment, next)?),
                };
                let slot = map.entry(segment.as_str()).or_insert(Value::Null);
                if let Some(container) = container {
                    *slot = container;
                }
                slot
            }
            Value::Array(items) => {
                let index = read_position(segments, depth)?;
                match items.get_mut(index).filter(|item| !item.is_null()) {
                    Some(item) => item,
                    None => {
                        new_container(segment, next)?;
                        return Err(PatchError::structural(
                            &location(depth),
                            format!("List index out of range: {index}"),
                        ));
                    }
                }
            }
            _ => {
                new_container(segment, next)?;
                return Err(PatchError::structural(&location(depth), "Expecting a Map or List"));
            }
        };
    }

    match node {
        Value::Object(map) => {
            if map.get(leaf.as_str()) == Some(&value) {
                return Ok(false);
            }
            map.insert(leaf.clone(), value);
            Ok(true)
        }
        Value::Array(items) => {
            let index = match index_in_array(segments, parents.len(), true)? {
                ArrayIndex::End => items.len(),
                ArrayIndex::At(index) => index,
            };
            if index == items.len() {
                items.push(value);
                return Ok(true);
            }
            match items.get_mut(index) {
                Some(item) if *item == value => Ok(false),
                Some(item) => {
                    *item = value;
                    Ok(true)
                }
                None => Err(PatchError::structural(
                    &pointer.parent(),
                    format!("List index out of range: {index}"),
                )),
            }
        }
        _ => Err(PatchError::structural(&pointer.parent(), "Expecting a Map or List")),
    }
}

/// Deletes whatever is at `pointer` (object members keep their order); returns whether
/// something was deleted.
fn remove_at(target: &mut Value, pointer: &JsonPointer) -> Result<bool, PatchError> {
    let segments = pointer.segments();
    let Some((leaf, parents)) = segments.split_last() else {
        return Ok(false);
    };
    match lookup_mut(target, parents)? {
        Some(Value::Object(map)) => Ok(map.shift_remove(leaf.as_str()).is_some()),
        Some(Value::Array(items)) => {
            let index = read_position(segments, parents.len())?;
            if index < items.len() {
                items.remove(index);
                Ok(true)
            } else {
                Ok(false)
            }
        }
        _ => Ok(false),
    }
}

/// The `remove` operation: without a value deletes the field; with one removes every equal
/// element of an array, or the field itself when it equals the value.
fn remove(target: &mut Value, field: &JsonPointer, value: Option<&Value>) -> Result<bool, PatchError> {
    let Some(value) = value.filter(|value| !value.is_null()) else {
        return Ok(present(target, field)?.is_some() && remove_at(target, field)?);
    };
    match lookup_mut(target, field.segments())? {
        Some(Value::Array(items)) => {
            let before = items.len();
            items.retain(|item| item != value);
            Ok(items.len() != before)
        }
        Some(current) if current == value => remove_at(target, field),
        _ => Ok(false),
    }
}

/// The `increment` operation.
fn increment(target: &mut Value, field: &JsonPointer, amount: &Value) -> Result<bool, PatchError> {
    let Value::Number(amount) = amount else {
        return Err(PatchError::invalid(
            "Non-numeric value provided for increment operation",
        ));
    };
    let Some(current) = lookup_mut(target, field.segments())? else {
        return Err(PatchError::new(format!("The field '{field}' does not exist")));
    };
    let updated = match &*current {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| incremented(item, amount, field))
                .collect::<Result<_, _>>()?,
        ),
        other => incremented(other, amount, field)?,
    };
    if *current == updated {
        return Ok(false);
    }
    *current = updated;
    Ok(true)
}

/// `current + amount`, keeping the kind of `current`: an integer adds the amount truncated
/// toward zero, a float adds it as a float.
fn incremented(current: &Value, amount: &Number, field: &JsonPointer) -> Result<Value, PatchError> {
    let not_a_number = || PatchError::new(format!("The field '{field}' is not a number"));
    let out_of_range = || PatchError::new(format!("Incrementing the field '{field}' overflows"));
    let Value::Number(number) = current else {
        return Err(not_a_number());
    };
    if number.is_f64() {
        let sum = number.as_f64().ok_or_else(not_a_number)? + amount.as_f64().unwrap_or(0.0);
        return Number::from_f64(sum).map(Value::Number).ok_or_else(out_of_range);
    }
    let base = integer(number).ok_or_else(not_a_number)?;
    // A float amount is truncated toward zero (saturating), as Java's `longValue()` does.
    let step = integer(amount).unwrap_or_else(|| amount.as_f64().map_or(0, |f| i128::from(f as i64)));
    let sum = base + step;
    i64::try_from(sum)
        .map(Value::from)
        .or_else(|_| u64::try_from(sum).map(Value::from))
        .map_err(|_| out_of_range())
}

/// An integer number widened to `i128`; `None` for floats.
fn integer(number: &Number) -> Option<i128> {
    number
        .as_i64()
        .map(i128::from)
        .or_else(|| number.as_u64().map(i128::from))
}

/// The `transform` operation. The script sees the current value, so the field must be a
/// readable position (`-` on an array is refused, as for `remove`).
fn transform(
    target: &mut Value,
    field: &JsonPointer,
    value: &Value,
    transformer: &dyn Transformer,
) -> Result<bool, PatchError> {
    let script = value
        .get("script")
        .filter(|script| !script.is_null())
        .ok_or_else(|| PatchError::new("Expecting a script member"))?;
    let content = lookup(target, field.segments())?.cloned().unwrap_or(Value::Null);
    let result = transformer
        .transform(script, content)
        .map_err(|error| PatchError::new(format!("Failed to eval script {error}")))?;
    if result.is_null() {
        remove_at(target, field)
    } else {
        set(target, field, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Fact 172's script: appends "xformed" to a string `content`.
    struct AppendXformed;

    impl Transformer for AppendXformed {
        fn transform(&self, _script: &Value, content: Value) -> Result<Value, String> {
            match content {
                Value::String(text) => Ok(Value::String(format!("{text}xformed"))),
                other => Err(format!("cannot append to {other}")),
            }
        }
    }

    /// Fact 174's script: fails to evaluate, like the bare word `hello`.
    struct FailingScript;

    impl Transformer for FailingScript {
        fn transform(&self, script: &Value, _content: Value) -> Result<Value, String> {
            Err(format!(
                "ReferenceError: {} is not defined",
                script.as_str().unwrap_or("?")
            ))
        }
    }

    fn parse(body: Value) -> Vec<PatchOperation> {
        match parse_patch(&body) {
            Ok(operations) => operations,
            Err(error) => panic!("{body} should parse, got {error}"),
        }
    }

    fn parse_one(element: Value) -> PatchOperation {
        match parse(json!([element])).as_slice() {
            [operation] => operation.clone(),
            other => panic!("expected one operation, got {other:?}"),
        }
    }

    fn parse_error(body: Value) -> String {
        match parse_patch(&body) {
            Ok(operations) => panic!("{body} should be refused, parsed {operations:?}"),
            Err(error) => error.message,
        }
    }

    fn invalid(reason: &str) -> String {
        format!("{INVALID_PATCH}: {reason}")
    }

    /// Applies `patch` to `target`; returns the patched value and whether it was modified.
    fn patched(mut target: Value, patch: Value) -> (Value, bool) {
        let operations = parse(patch);
        match apply_patch(&mut target, &operations, &AppendXformed) {
            Ok(modified) => (target, modified),
            Err(error) => panic!("patch should apply, got {error}"),
        }
    }

    fn patch_error_with(mut target: Value, patch: Value, transformer: &dyn Transformer) -> String {
        let operations = parse(patch);
        match apply_patch(&mut target, &operations, transformer) {
            Ok(modified) => panic!("patch should fail, got {target} (modified: {modified})"),
            Err(error) => error.message,
        }
    }

    fn patch_error(target: Value, patch: Value) -> String {
        patch_error_with(target, patch, &AppendXformed)
    }

    fn fruits() -> Value {
        json!(["apple", "kiwi", "pear", "strawberry"])
    }

    // ---- C. parsing -------------------------------------------------------------------

    #[test]
    fn fact_109_value_operations_without_a_value_are_rejected() {
        for op in ["add", "increment", "replace", "transform"] {
            let expected = invalid(&format!("No value field provided for '{op}' operation"));
            assert_eq!(parse_error(json!([{"operation": op, "field": "/a"}])), expected);
            assert_eq!(
                parse_error(json!([{"operation": op, "field": "/a", "value": null}])),
                expected
            );
        }
    }

    #[test]
    fn fact_110_operations_other_than_copy_and_move_refuse_a_from_member() {
        for op in ["add", "increment", "replace", "transform", "remove"] {
            let body = json!([{"operation": op, "field": "/a", "value": 1, "from": "/b"}]);
            let expected = invalid(&format!("'{op}' does not accept from field"));
            assert_eq!(parse_error(body), expected);
        }
    }

    #[test]
    fn fact_110_a_null_from_member_counts_as_absent() {
        let operation = parse_one(json!({"operation": "add", "field": "/a", "value": 1, "from": null}));
        assert_eq!(operation.from, None);
    }

    #[test]
    fn fact_111_copy_and_move_without_from_are_rejected() {
        for op in ["copy", "move"] {
            let expected = invalid(&format!("No from field provided for '{op}' operation"));
            assert_eq!(parse_error(json!([{"operation": op, "field": "/a"}])), expected);
            assert_eq!(
                parse_error(json!([{"operation": op, "field": "/a", "from": null}])),
                expected
            );
            assert_eq!(
                parse_error(json!([{"operation": op, "field": "/a", "from": ""}])),
                expected
            );
            assert_eq!(
                parse_error(json!([{"operation": op, "field": "/a", "from": "/"}])),
                expected
            );
        }
    }

    #[test]
    fn fact_112_copy_and_move_with_a_value_are_rejected() {
        for op in ["copy", "move"] {
            let body = json!([{"operation": op, "field": "/a", "from": "/b", "value": "x"}]);
            let expected = invalid(&format!("'{op}' does not accept value field"));
            assert_eq!(parse_error(body), expected);
        }
    }

    #[test]
    fn fact_112_copy_with_a_null_value_is_accepted() {
        let operation = parse_one(json!({"operation": "copy", "field": "/a", "from": "/b", "value": null}));
        assert_eq!(operation.value, None);
    }

    #[test]
    fn fact_113_a_copy_operation_parses_its_members() {
        let operation = parse_one(json!({"operation": "copy", "field": "/users/0", "from": "/users/1"}));
        assert_eq!(
            operation,
            PatchOperation {
                op: PatchOp::Copy,
                field: JsonPointer::parse("/users/0"),
                value: None,
                from: Some(JsonPointer::parse("/users/1")),
            }
        );
    }

    #[test]
    fn fact_114_missing_operation_is_rejected() {
        let expected = invalid("Patch operation is missing the 'operation' member");
        assert_eq!(parse_error(json!([{"field": "/a", "value": 1}])), expected);
        assert_eq!(
            parse_error(json!([{"operation": 7, "field": "/a", "value": 1}])),
            expected
        );
        assert_eq!(
            parse_error(json!([{"operation": null, "field": "/a", "value": 1}])),
            expected
        );
    }

    #[test]
    fn fact_114_missing_field_is_rejected() {
        let expected = invalid("Patch operation is missing the 'field' member");
        assert_eq!(parse_error(json!([{"operation": "add", "value": 1}])), expected);
        assert_eq!(
            parse_error(json!([{"operation": "add", "field": ["a"], "value": 1}])),
            expected
        );
    }

    #[test]
    fn fact_115_increment_with_a_non_numeric_value_is_rejected() {
        let body = json!([{"operation": "increment", "field": "/age", "value": "fourty-two"}]);
        assert_eq!(
            parse_error(body),
            invalid("Non-numeric value provided for increment operation")
        );
    }

    #[test]
    fn fact_116_an_unknown_operation_is_rejected() {
        let body = json!([{"operation": "Unknown", "field": "/a", "value": 1}]);
        assert_eq!(parse_error(body), invalid("Invalid patch operation type Unknown"));
    }

    #[test]
    fn fact_117_operation_names_are_case_insensitive() {
        let operation = parse_one(json!({"operation": "ADD", "field": "/a", "value": 1}));
        assert_eq!(operation.op, PatchOp::Add);
        assert_eq!(
            parse_one(json!({"operation": "Remove", "field": "/a"})).op,
            PatchOp::Remove
        );
    }

    #[test]
    fn fact_117_messages_name_the_canonical_lower_case_operation() {
        assert_eq!(
            parse_error(json!([{"operation": "ADD", "field": "/a"}])),
            invalid("No value field provided for 'add' operation")
        );
    }

    #[test]
    fn fact_118_a_body_that_is_not_an_array_is_rejected() {
        let expected =
            "The request could not be processed because the provided content is not a JSON array of patch operations";
        assert_eq!(
            parse_error(json!({"operation": "add", "field": "/a", "value": 1})),
            expected
        );
        assert_eq!(parse_error(json!("add")), expected);
        assert_eq!(parse_error(Value::Null), expected);
    }

    #[test]
    fn fact_119_an_element_that_is_not_an_object_is_rejected() {
        let expected = "The request could not be processed because the provided content is not a valid JSON patch";
        assert_eq!(parse_error(json!(["add"])), expected);
        assert_eq!(
            parse_error(json!([{"operation": "add", "field": "/a", "value": 1}, 5])),
            expected
        );
    }

    #[test]
    fn an_empty_patch_parses_to_no_operations() {
        assert!(parse(json!([])).is_empty());
    }

    #[test]
    fn remove_keeps_an_optional_value_and_fields_are_parsed_as_pointers() {
        let operation = parse_one(json!({"operation": "remove", "field": "roles/", "value": "x"}));
        assert_eq!(operation.op, PatchOp::Remove);
        assert_eq!(operation.field, JsonPointer::parse("/roles"));
        assert_eq!(operation.value, Some(json!("x")));
    }

    #[test]
    fn a_non_string_from_is_rejected() {
        let body = json!([{"operation": "move", "field": "/a", "from": 3}]);
        assert_eq!(
            parse_error(body),
            invalid("Patch operation has a non-string 'from' member")
        );
    }

    // ---- D.1 add ----------------------------------------------------------------------

    #[test]
    fn fact_120_add_sets_a_new_field() {
        let patch = json!([{"operation": "add", "field": "/key", "value": "pineapple"}]);
        assert_eq!(patched(json!({}), patch), (json!({"key": "pineapple"}), true));
    }

    #[test]
    fn fact_121_add_with_a_numeric_key_on_an_object_sets_a_normal_key() {
        let patch = json!([{"operation": "add", "field": "/21", "value": "pineapple"}]);
        assert_eq!(patched(json!({}), patch), (json!({"21": "pineapple"}), true));
    }

    #[test]
    fn fact_122_add_cannot_create_a_list_from_a_numeric_segment() {
        let patch = json!([{"operation": "add", "field": "/key/5", "value": "pineapple"}]);
        assert_eq!(patch_error(json!({}), patch), "/: Expecting a value");
    }

    #[test]
    fn fact_123_add_creates_intermediate_objects() {
        let patch = json!([{"operation": "add", "field": "/key/child", "value": "pineapple"}]);
        assert_eq!(
            patched(json!({}), patch),
            (json!({"key": {"child": "pineapple"}}), true)
        );
    }

    #[test]
    fn fact_124_add_overwrites_an_existing_value() {
        let patch = json!([{"operation": "add", "field": "/key", "value": "pineapple"}]);
        assert_eq!(
            patched(json!({"key": "value"}), patch),
            (json!({"key": "pineapple"}), true)
        );
    }

    #[test]
    fn fact_125_add_with_an_index_below_a_scalar_fails() {
        let patch = json!([{"operation": "add", "field": "/key/3", "value": "pineapple"}]);
        assert_eq!(
            patch_error(json!({"key": "value"}), patch),
            "/key: Expecting a Map or List"
        );
    }

    #[test]
    fn fact_126_add_with_a_child_below_a_scalar_fails() {
        let patch = json!([{"operation": "add", "field": "/key/child", "value": "pineapple"}]);
        assert_eq!(
            patch_error(json!({"key": "value"}), patch),
            "/key: Expecting a Map or List"
        );
    }

    #[test]
    fn fact_127_add_with_a_named_child_of_an_array_fails() {
        // [DEV] wording: IDM reads the name as index -1 ("/key: List index out of range: -1");
        // the one index rule names the segment instead.
        let patch = json!([{"operation": "add", "field": "/key/child", "value": "pineapple"}]);
        assert_eq!(
            patch_error(json!({"key": fruits()}), patch),
            "/key: List index is not valid: child"
        );
    }

    #[test]
    fn fact_128_add_a_member_keeps_the_other_members() {
        let target = json!({"key": {"a": "apple", "b": "banana"}});
        let patch = json!([{"operation": "add", "field": "/key/p", "value": "pineapple"}]);
        assert_eq!(
            patched(target, patch),
            (json!({"key": {"a": "apple", "b": "banana", "p": "pineapple"}}), true)
        );
    }

    #[test]
    fn fact_129_add_replaces_an_array_with_a_scalar() {
        let patch = json!([{"operation": "add", "field": "/key", "value": "pineapple"}]);
        assert_eq!(
            patched(json!({"key": fruits()}), patch),
            (json!({"key": "pineapple"}), true)
        );
    }

    #[test]
    fn fact_130_add_replaces_an_object_with_a_scalar() {
        let target = json!({"key": {"a": "apple", "b": "banana"}});
        let patch = json!([{"operation": "add", "field": "/key", "value": "pineapple"}]);
        assert_eq!(patched(target, patch), (json!({"key": "pineapple"}), true));
    }

    #[test]
    fn fact_131_add_dash_below_a_scalar_fails() {
        let patch = json!([{"operation": "add", "field": "/key/-", "value": "pineapple"}]);
        assert_eq!(
            patch_error(json!({"key": "value"}), patch),
            "/key: Expecting a Map or List"
        );
    }

    #[test]
    fn fact_132_add_dash_appends_to_an_array() {
        let patch = json!([{"operation": "add", "field": "/key/-", "value": "pineapple"}]);
        assert_eq!(
            patched(json!({"key": fruits()}), patch),
            (
                json!({"key": ["apple", "kiwi", "pear", "strawberry", "pineapple"]}),
                true
            )
        );
    }

    #[test]
    fn fact_133_add_dash_on_an_object_adds_a_key_named_dash() {
        let patch = json!([{"operation": "add", "field": "/key/-", "value": "pineapple"}]);
        assert_eq!(
            patched(json!({"key": {"a": "1", "b": "2"}}), patch),
            (json!({"key": {"a": "1", "b": "2", "-": "pineapple"}}), true)
        );
    }

    #[test]
    fn fact_134_add_at_an_array_position_is_not_allowed() {
        let patch = json!([{"operation": "add", "field": "/key/2", "value": "pineapple"}]);
        assert_eq!(
            patch_error(json!({"key": fruits()}), patch),
            "Position-based operation is not allowed: /key/2"
        );
    }

    #[test]
    fn fact_135_add_with_a_digit_key_on_an_object_is_fine() {
        let target = json!({"key": {"3": "apple", "5": "banana"}});
        let patch = json!([{"operation": "add", "field": "/key/3", "value": "pineapple"}]);
        assert_eq!(
            patched(target, patch),
            (json!({"key": {"3": "pineapple", "5": "banana"}}), true)
        );
    }

    #[test]
    fn fact_136_add_dash_creates_a_missing_array() {
        let patch = json!([{"operation": "add", "field": "/list/-", "value": "x"}]);
        assert_eq!(patched(json!({}), patch), (json!({"list": ["x"]}), true));
    }

    #[test]
    fn add_creates_several_levels_of_objects() {
        let patch = json!([{"operation": "add", "field": "/a/b/c", "value": 1}]);
        assert_eq!(
            patched(json!({"z": 0}), patch),
            (json!({"z": 0, "a": {"b": {"c": 1}}}), true)
        );
    }

    #[test]
    fn add_walks_into_array_elements_by_index() {
        let target = json!({"list": [{"a": 1}, {"a": 2}]});
        let patch = json!([{"operation": "add", "field": "/list/1/b", "value": 3}]);
        assert_eq!(
            patched(target, patch),
            (json!({"list": [{"a": 1}, {"a": 2, "b": 3}]}), true)
        );
    }

    #[test]
    fn add_below_a_missing_numeric_segment_reports_at_the_root() {
        let patch = json!([{"operation": "add", "field": "/a/5/b", "value": 1}]);
        assert_eq!(patch_error(json!({"a": {}}), patch), "/: Expecting a value");
        let patch = json!([{"operation": "add", "field": "/a/b/7", "value": 1}]);
        assert_eq!(patch_error(json!({"a": {}}), patch), "/: Expecting a value");
    }

    #[test]
    fn add_below_a_deeper_scalar_names_the_scalar() {
        let patch = json!([{"operation": "add", "field": "/a/b/c/d", "value": 1}]);
        assert_eq!(
            patch_error(json!({"a": {"b": true}}), patch),
            "/a/b: Expecting a Map or List"
        );
    }

    #[test]
    fn add_replaces_a_null_intermediate_with_an_object() {
        let patch = json!([{"operation": "add", "field": "/a/b", "value": 1}]);
        assert_eq!(patched(json!({"a": null}), patch), (json!({"a": {"b": 1}}), true));
    }

    #[test]
    fn multi_digit_indexes_escape_the_position_rule_and_use_list_semantics() {
        let patch = json!([{"operation": "add", "field": "/key/12", "value": "pineapple"}]);
        assert_eq!(
            patch_error(json!({"key": fruits()}), patch),
            "/key: List index out of range: 12"
        );
        let list: Vec<Value> = (0..12).map(Value::from).collect();
        let patch = json!([{"operation": "add", "field": "/key/12", "value": 99}]);
        let (result, modified) = patched(json!({"key": list}), patch);
        assert!(modified);
        assert_eq!(result["key"].as_array().map(Vec::len), Some(13));
        assert_eq!(result["key"][12], json!(99));
        let patch = json!([{"operation": "replace", "field": "/key/10", "value": 99}]);
        let (result, _) = patched(result, patch);
        assert_eq!(result["key"][10], json!(99));
    }

    #[test]
    fn add_of_an_equal_value_is_not_a_modification() {
        let patch = json!([{"operation": "add", "field": "/key", "value": {"a": [1, 2]}}]);
        let target = json!({"key": {"a": [1, 2]}});
        assert_eq!(patched(target.clone(), patch), (target, false));
    }

    #[test]
    fn add_keeps_the_order_of_existing_members() {
        let patch = json!([{"operation": "add", "field": "/b", "value": 20}]);
        let (result, _) = patched(json!({"a": 1, "b": 2, "c": 3}), patch);
        let keys: Vec<&String> = result.as_object().map(|map| map.keys().collect()).unwrap_or_default();
        assert_eq!(keys, ["a", "b", "c"]);
    }

    // ---- D.2 remove -------------------------------------------------------------------

    #[test]
    fn fact_137_remove_deletes_a_field() {
        let patch = json!([{"operation": "remove", "field": "/key"}]);
        assert_eq!(patched(json!({"key": "value"}), patch), (json!({}), true));
    }

    #[test]
    fn fact_138_remove_with_the_current_value_deletes_the_field() {
        let patch = json!([{"operation": "remove", "field": "/key", "value": "value"}]);
        assert_eq!(patched(json!({"key": "value"}), patch), (json!({}), true));
    }

    #[test]
    fn fact_139_remove_with_a_value_removes_it_from_an_array() {
        let patch = json!([{"operation": "remove", "field": "/key", "value": "b"}]);
        assert_eq!(
            patched(json!({"key": ["a", "b", "c"]}), patch),
            (json!({"key": ["a", "c"]}), true)
        );
    }

    fn favorites() -> Value {
        json!({"favorites": [
            {"type": "candy", "flavor": "lemon"},
            {"type": "candy", "flavor": "cherry"}
        ]})
    }

    #[test]
    fn fact_140_remove_from_an_array_uses_deep_equality() {
        let patch = json!([{
            "operation": "remove",
            "field": "/favorites",
            "value": {"flavor": "cherry", "type": "candy"}
        }]);
        assert_eq!(
            patched(favorites(), patch),
            (json!({"favorites": [{"type": "candy", "flavor": "lemon"}]}), true)
        );
    }

    #[test]
    fn fact_141_remove_at_an_array_position_is_not_allowed() {
        let patch = json!([{"operation": "remove", "field": "/favorites/1"}]);
        assert_eq!(
            patch_error(favorites(), patch),
            "Position-based operation is not allowed: /favorites/1"
        );
    }

    #[test]
    fn fact_142_removing_an_absent_field_is_not_a_modification() {
        let patch = json!([{"operation": "remove", "field": "/key"}]);
        assert_eq!(patched(json!({}), patch), (json!({}), false));
    }

    #[test]
    fn fact_143_remove_with_a_different_value_is_not_a_modification() {
        let patch = json!([{"operation": "remove", "field": "/key", "value": "anothervalue"}]);
        assert_eq!(
            patched(json!({"key": "value"}), patch),
            (json!({"key": "value"}), false)
        );
    }

    #[test]
    fn fact_144_remove_with_an_object_value_from_a_scalar_is_not_a_modification() {
        let patch = json!([{"operation": "remove", "field": "/key", "value": {"innerKey": "innerValue"}}]);
        assert_eq!(
            patched(json!({"key": "value"}), patch),
            (json!({"key": "value"}), false)
        );
    }

    fn flavours() -> Value {
        json!({"favorites": ["vanilla", "chocolate", "strawberry"]})
    }

    #[test]
    fn fact_145_remove_at_a_string_array_position_is_not_allowed() {
        let patch = json!([{"operation": "remove", "field": "/favorites/1"}]);
        assert_eq!(
            patch_error(flavours(), patch),
            "Position-based operation is not allowed: /favorites/1"
        );
    }

    #[test]
    fn fact_146_remove_by_a_name_inside_an_array_is_refused() {
        // [DEV]: IDM removes nothing (the name reads as index -1); a name is not an index of
        // an array in any operation here, so the patch is refused like `add` refuses it.
        let patch = json!([{"operation": "remove", "field": "/favorites/chocolate"}]);
        assert_eq!(
            patch_error(flavours(), patch),
            "/favorites: List index is not valid: chocolate"
        );
    }

    #[test]
    fn fact_147_remove_at_a_position_of_an_array_of_digit_strings_is_not_allowed() {
        let patch = json!([{"operation": "remove", "field": "/favorites/1"}]);
        assert_eq!(
            patch_error(json!({"favorites": ["1", "2", "3"]}), patch),
            "Position-based operation is not allowed: /favorites/1"
        );
    }

    #[test]
    fn fact_148_remove_a_digit_key_of_an_object() {
        let patch = json!([{"operation": "remove", "field": "/favorites/3"}]);
        assert_eq!(
            patched(json!({"favorites": {"3": "a", "5": "b"}}), patch),
            (json!({"favorites": {"5": "b"}}), true)
        );
    }

    #[test]
    fn fact_149_remove_a_digit_below_an_array_of_objects_is_not_allowed() {
        let patch = json!([{"operation": "remove", "field": "/favorites/3"}]);
        assert_eq!(
            patch_error(json!({"favorites": [{"3": "a", "5": "b"}]}), patch),
            "Position-based operation is not allowed: /favorites/3"
        );
    }

    #[test]
    fn fact_150_remove_with_a_different_object_value_is_not_a_modification() {
        let target = json!({"key": {"subattribute": "value"}});
        let patch = json!([{"operation": "remove", "field": "/key", "value": {"somekey": "somevalue"}}]);
        assert_eq!(patched(target.clone(), patch), (target, false));
    }

    #[test]
    fn fact_151_remove_with_a_value_removes_every_occurrence() {
        let patch = json!([{"operation": "remove", "field": "/key", "value": "a"}]);
        assert_eq!(
            patched(json!({"key": ["a", "b", "a"]}), patch),
            (json!({"key": ["b"]}), true)
        );
    }

    #[test]
    fn remove_with_a_value_absent_from_the_array_is_not_a_modification() {
        let patch = json!([{"operation": "remove", "field": "/key", "value": "z"}]);
        assert_eq!(
            patched(json!({"key": ["a", "b"]}), patch),
            (json!({"key": ["a", "b"]}), false)
        );
    }

    #[test]
    fn remove_of_a_null_field_is_not_a_modification() {
        let patch = json!([{"operation": "remove", "field": "/key"}]);
        assert_eq!(patched(json!({"key": null}), patch), (json!({"key": null}), false));
    }

    #[test]
    fn remove_of_a_nested_member_keeps_member_order() {
        let patch = json!([{"operation": "remove", "field": "/o/a"}]);
        let (result, modified) = patched(json!({"o": {"a": 1, "b": 2, "c": 3}}), patch);
        assert!(modified);
        let keys: Vec<&String> = result["o"]
            .as_object()
            .map(|map| map.keys().collect())
            .unwrap_or_default();
        assert_eq!(keys, ["b", "c"]);
    }

    #[test]
    fn remove_below_a_scalar_does_nothing() {
        let patch = json!([{"operation": "remove", "field": "/key/child"}]);
        assert_eq!(
            patched(json!({"key": "value"}), patch),
            (json!({"key": "value"}), false)
        );
    }

    // ---- D.3 replace ------------------------------------------------------------------

    #[test]
    fn fact_152_replace_sets_a_new_value() {
        let patch = json!([{"operation": "replace", "field": "/key", "value": "pineapple"}]);
        assert_eq!(
            patched(json!({"key": "value"}), patch),
            (json!({"key": "pineapple"}), true)
        );
    }

    #[test]
    fn fact_153_replace_below_a_scalar_fails() {
        let patch = json!([{"operation": "replace", "field": "/key/2", "value": "pineapple"}]);
        assert_eq!(
            patch_error(json!({"key": "value"}), patch),
            "/key: Expecting a Map or List"
        );
    }

    #[test]
    fn fact_154_replace_an_array_with_another_array() {
        let patch = json!([{"operation": "replace", "field": "/key", "value": ["a", "b", "c"]}]);
        assert_eq!(
            patched(json!({"key": ["value1", "value2", "value3"]}), patch),
            (json!({"key": ["a", "b", "c"]}), true)
        );
    }

    #[test]
    fn fact_155_replace_at_an_array_position_is_not_allowed() {
        let patch = json!([{"operation": "replace", "field": "/fruits/1", "value": "x"}]);
        assert_eq!(
            patch_error(json!({"fruits": fruits()}), patch),
            "Position-based operation is not allowed: /fruits/1"
        );
    }

    #[test]
    fn fact_156_replace_creates_a_missing_field() {
        let patch = json!([{"operation": "replace", "field": "/new", "value": 1}]);
        assert_eq!(patched(json!({}), patch), (json!({"new": 1}), true));
    }

    #[test]
    fn replace_with_an_identical_value_is_not_a_modification() {
        let patch = json!([{"operation": "replace", "field": "/key", "value": "value"}]);
        assert_eq!(
            patched(json!({"key": "value"}), patch),
            (json!({"key": "value"}), false)
        );
    }

    #[test]
    fn replace_dash_appends_to_an_array() {
        let patch = json!([{"operation": "replace", "field": "/key/-", "value": "d"}]);
        assert_eq!(
            patched(json!({"key": ["a"]}), patch),
            (json!({"key": ["a", "d"]}), true)
        );
    }

    // ---- D.4 increment ----------------------------------------------------------------

    #[test]
    fn fact_157_increment_keeps_an_integer_an_integer() {
        let patch = json!([{"operation": "increment", "field": "/key", "value": 1}]);
        let (result, modified) = patched(json!({"key": 1}), patch);
        assert!(modified);
        assert_eq!(result, json!({"key": 2}));
        assert!(result["key"].is_i64());
    }

    #[test]
    fn fact_158_increment_keeps_a_float_a_float() {
        let patch = json!([{"operation": "increment", "field": "/key", "value": 1.0}]);
        let (result, modified) = patched(json!({"key": 1.0}), patch);
        assert!(modified);
        assert_eq!(result, json!({"key": 2.0}));
        assert!(result["key"].is_f64());
    }

    #[test]
    fn fact_159_increment_of_an_absent_field_fails() {
        let patch = json!([{"operation": "increment", "field": "/key", "value": 1}]);
        assert_eq!(patch_error(json!({}), patch), "The field '/key' does not exist");
    }

    #[test]
    fn fact_160_increment_of_a_string_fails() {
        let patch = json!([{"operation": "increment", "field": "/key", "value": 1}]);
        assert_eq!(
            patch_error(json!({"key": "value"}), patch),
            "The field '/key' is not a number"
        );
    }

    #[test]
    fn fact_161_increment_of_an_array_increments_every_element() {
        let patch = json!([{"operation": "increment", "field": "/key", "value": 1}]);
        assert_eq!(
            patched(json!({"key": [1, 2, 3]}), patch),
            (json!({"key": [2, 3, 4]}), true)
        );
    }

    #[test]
    fn fact_162_increment_of_a_mixed_array_keeps_each_kind() {
        let patch = json!([{"operation": "increment", "field": "/key", "value": 1}]);
        let (result, _) = patched(json!({"key": [1, 2.0, 3]}), patch);
        assert_eq!(result, json!({"key": [2, 3.0, 4]}));
        assert!(result["key"][0].is_i64());
        assert!(result["key"][1].is_f64());
        assert!(result["key"][2].is_i64());
    }

    #[test]
    fn fact_163_increment_at_an_array_position_is_not_allowed() {
        let patch = json!([{"operation": "increment", "field": "/key/2", "value": 2}]);
        assert_eq!(
            patch_error(json!({"key": [1, 2, 3]}), patch),
            "Position-based operation is not allowed: /key/2"
        );
    }

    #[test]
    fn fact_164_increment_of_an_array_with_a_non_number_fails() {
        let patch = json!([{"operation": "increment", "field": "/key", "value": 1}]);
        assert_eq!(
            patch_error(json!({"key": [1, "value", 3]}), patch),
            "The field '/key' is not a number"
        );
    }

    #[test]
    fn increment_truncates_a_float_amount_for_an_integer_field() {
        let patch = json!([{"operation": "increment", "field": "/key", "value": 1.7}]);
        assert_eq!(patched(json!({"key": 1}), patch), (json!({"key": 2}), true));
        let patch = json!([{"operation": "increment", "field": "/key", "value": -1.5}]);
        assert_eq!(patched(json!({"key": 5}), patch), (json!({"key": 4}), true));
    }

    #[test]
    fn increment_adds_an_integer_amount_to_a_float_as_a_float() {
        let patch = json!([{"operation": "increment", "field": "/key", "value": 2}]);
        assert_eq!(patched(json!({"key": 0.5}), patch), (json!({"key": 2.5}), true));
    }

    #[test]
    fn increment_can_go_negative() {
        let patch = json!([{"operation": "increment", "field": "/key", "value": -10}]);
        assert_eq!(patched(json!({"key": 3}), patch), (json!({"key": -7}), true));
    }

    #[test]
    fn increment_by_zero_is_not_a_modification() {
        let patch = json!([{"operation": "increment", "field": "/key", "value": 0}]);
        assert_eq!(patched(json!({"key": 3}), patch), (json!({"key": 3}), false));
    }

    #[test]
    fn increment_of_a_null_field_fails_as_not_a_number() {
        let patch = json!([{"operation": "increment", "field": "/key", "value": 1}]);
        assert_eq!(
            patch_error(json!({"key": null}), patch),
            "The field '/key' is not a number"
        );
    }

    #[test]
    fn increment_of_a_nested_field() {
        let patch = json!([{"operation": "increment", "field": "/stats/logins", "value": 1}]);
        assert_eq!(
            patched(json!({"stats": {"logins": 41}}), patch),
            (json!({"stats": {"logins": 42}}), true)
        );
    }

    #[test]
    fn increment_out_of_the_integer_range_fails() {
        let patch = json!([{"operation": "increment", "field": "/key", "value": 1}]);
        assert_eq!(
            patch_error(json!({"key": u64::MAX}), patch),
            "Incrementing the field '/key' overflows"
        );
        let patch = json!([{"operation": "increment", "field": "/key", "value": 1}]);
        assert_eq!(
            patched(json!({"key": i64::MAX}), patch),
            (json!({"key": 9_223_372_036_854_775_808_u64}), true)
        );
    }

    // ---- D.5 move / copy --------------------------------------------------------------

    #[test]
    fn fact_165_move_a_field() {
        let patch = json!([{"operation": "move", "from": "/key", "field": "/new"}]);
        assert_eq!(patched(json!({"key": "value"}), patch), (json!({"new": "value"}), true));
    }

    #[test]
    fn fact_166_move_from_an_absent_member_is_not_a_modification() {
        let target = json!({"key": {"a": "apple", "b": "banana"}});
        let patch = json!([{"operation": "move", "from": "/key/1", "field": "/new"}]);
        assert_eq!(patched(target.clone(), patch), (target, false));
    }

    #[test]
    fn fact_167_move_from_an_array_position_is_not_allowed() {
        let patch = json!([{"operation": "move", "from": "/key/1", "field": "/new"}]);
        assert_eq!(
            patch_error(json!({"key": ["apple", "banana"]}), patch),
            "Position-based operation is not allowed: /key/1"
        );
    }

    #[test]
    fn fact_168_move_from_an_absent_field_is_not_a_modification() {
        let patch = json!([{"operation": "move", "from": "/key", "field": "/new"}]);
        assert_eq!(patched(json!({"ki": "value"}), patch), (json!({"ki": "value"}), false));
    }

    #[test]
    fn fact_169_copy_a_field() {
        let patch = json!([{"operation": "copy", "from": "/key", "field": "/new"}]);
        assert_eq!(
            patched(json!({"key": "value"}), patch),
            (json!({"key": "value", "new": "value"}), true)
        );
    }

    #[test]
    fn fact_170_copy_from_below_a_scalar_is_not_a_modification() {
        let patch = json!([{"operation": "copy", "from": "/key/0", "field": "/new"}]);
        assert_eq!(
            patched(json!({"key": "value"}), patch),
            (json!({"key": "value"}), false)
        );
    }

    #[test]
    fn fact_171_copy_from_an_absent_field_is_not_a_modification() {
        let patch = json!([{"operation": "copy", "from": "/key", "field": "/new"}]);
        assert_eq!(patched(json!({"ki": "value"}), patch), (json!({"ki": "value"}), false));
    }

    #[test]
    fn copy_onto_an_existing_key_overwrites_it() {
        // Documented deviation: IDM fails ("Map key new already exists", a 500).
        let patch = json!([{"operation": "copy", "from": "/key", "field": "/new"}]);
        assert_eq!(
            patched(json!({"key": "value", "new": "old"}), patch),
            (json!({"key": "value", "new": "value"}), true)
        );
    }

    #[test]
    fn copy_onto_itself_is_not_a_modification() {
        let patch = json!([{"operation": "copy", "from": "/key", "field": "/key"}]);
        assert_eq!(
            patched(json!({"key": "value"}), patch),
            (json!({"key": "value"}), false)
        );
    }

    #[test]
    fn copy_from_a_null_field_is_not_a_modification() {
        let patch = json!([{"operation": "copy", "from": "/key", "field": "/new"}]);
        assert_eq!(patched(json!({"key": null}), patch), (json!({"key": null}), false));
    }

    #[test]
    fn copy_onto_an_array_position_is_checked_only_on_from() {
        // The rule looks at `from` for copy/move; a single-digit destination replaces the element.
        let patch = json!([{"operation": "copy", "from": "/key", "field": "/list/0"}]);
        assert_eq!(
            patched(json!({"key": "v", "list": ["a", "b"]}), patch),
            (json!({"key": "v", "list": ["v", "b"]}), true)
        );
    }

    #[test]
    fn copy_a_field_into_its_own_child() {
        let patch = json!([{"operation": "copy", "from": "/o", "field": "/o/self"}]);
        assert_eq!(
            patched(json!({"o": {"a": 1}}), patch),
            (json!({"o": {"a": 1, "self": {"a": 1}}}), true)
        );
    }

    #[test]
    fn move_a_field_into_its_own_child() {
        let patch = json!([{"operation": "move", "from": "/o", "field": "/o/inner"}]);
        assert_eq!(
            patched(json!({"o": {"a": 1}}), patch),
            (json!({"o": {"inner": {"a": 1}}}), true)
        );
    }

    #[test]
    fn move_a_child_over_its_parent() {
        let patch = json!([{"operation": "move", "from": "/o/b", "field": "/o"}]);
        assert_eq!(
            patched(json!({"o": {"a": 1, "b": {"b": 2}}}), patch),
            (json!({"o": {"b": 2}}), true)
        );
    }

    #[test]
    fn move_onto_itself_is_not_a_modification() {
        let patch = json!([{"operation": "move", "from": "/key", "field": "/key/"}]);
        assert_eq!(
            patched(json!({"key": "value"}), patch),
            (json!({"key": "value"}), false)
        );
    }

    #[test]
    fn move_onto_an_existing_key_overwrites_it() {
        let patch = json!([{"operation": "move", "from": "/key", "field": "/new"}]);
        assert_eq!(
            patched(json!({"key": "value", "new": "old"}), patch),
            (json!({"new": "value"}), true)
        );
    }

    #[test]
    fn move_creates_missing_parents_of_the_destination() {
        let patch = json!([{"operation": "move", "from": "/key", "field": "/a/b"}]);
        assert_eq!(patched(json!({"key": 1}), patch), (json!({"a": {"b": 1}}), true));
    }

    // ---- D.6 transform ----------------------------------------------------------------

    #[test]
    fn fact_172_transform_replaces_the_field_with_the_script_result() {
        let patch = json!([{
            "operation": "transform",
            "field": "/key",
            "value": {"script": {"type": "text/javascript", "source": "content + 'xformed';"}}
        }]);
        assert_eq!(
            patched(json!({"key": "value"}), patch),
            (json!({"key": "valuexformed"}), true)
        );
    }

    #[test]
    fn fact_173_transform_without_a_script_member_fails() {
        for value in [json!({"script": null}), json!({}), json!("content + 'x'")] {
            let patch = json!([{"operation": "transform", "field": "/key", "value": value}]);
            assert_eq!(patch_error(json!({"key": "value"}), patch), "Expecting a script member");
        }
    }

    #[test]
    fn fact_174_a_failing_script_is_reported() {
        let patch = json!([{"operation": "transform", "field": "/key", "value": {"script": "hello"}}]);
        assert_eq!(
            patch_error_with(json!({"key": "value"}), patch, &FailingScript),
            "Failed to eval script ReferenceError: hello is not defined"
        );
    }

    #[test]
    fn transform_passes_the_script_member_and_null_content_for_an_absent_field() {
        let seen = |script: &Value, content: Value| -> Result<Value, String> {
            Ok(json!({"script": script.clone(), "content": content}))
        };
        let mut target = json!({});
        let operations = parse(json!([{"operation": "transform", "field": "/new", "value": {"script": "s"}}]));
        assert_eq!(apply_patch(&mut target, &operations, &seen), Ok(true));
        assert_eq!(target, json!({"new": {"script": "s", "content": null}}));
    }

    #[test]
    fn transform_to_null_removes_the_field() {
        let to_null = |_: &Value, _: Value| -> Result<Value, String> { Ok(Value::Null) };
        let mut target = json!({"key": "value", "other": 1});
        let operations = parse(json!([{"operation": "transform", "field": "/key", "value": {"script": "x"}}]));
        assert_eq!(apply_patch(&mut target, &operations, &to_null), Ok(true));
        assert_eq!(target, json!({"other": 1}));
        // Nothing to remove: not a modification.
        assert_eq!(apply_patch(&mut target, &operations, &to_null), Ok(false));
    }

    #[test]
    fn transform_at_an_array_position_is_not_allowed() {
        let patch = json!([{"operation": "transform", "field": "/key/0", "value": {"script": "x"}}]);
        assert_eq!(
            patch_error(json!({"key": ["a"]}), patch),
            "Position-based operation is not allowed: /key/0"
        );
    }

    // ---- D.7 whole-request facts ------------------------------------------------------

    fn alice() -> Value {
        json!({"name": "alice", "age": 20, "role": "sales"})
    }

    #[test]
    fn fact_175_remove_with_an_unknown_value_leaves_the_object_unmodified() {
        // [DEV]: CREST's memory backend bumps the revision; ours reports "not modified".
        let patch = json!([{"operation": "remove", "field": "role", "value": "unknown role"}]);
        assert_eq!(patched(alice(), patch), (alice(), false));
    }

    #[test]
    fn fact_176_remove_with_the_current_value_removes_the_field() {
        let patch = json!([{"operation": "remove", "field": "role", "value": "sales"}]);
        assert_eq!(patched(alice(), patch), (json!({"name": "alice", "age": 20}), true));
    }

    #[test]
    fn fact_177_operations_apply_in_order() {
        let patch = json!([
            {"operation": "replace", "field": "/name", "value": "bob"},
            {"operation": "increment", "field": "/age", "value": 10},
            {"operation": "remove", "field": "/role"},
            {"operation": "add", "field": "/role", "value": "it"}
        ]);
        assert_eq!(
            patched(alice(), patch),
            (json!({"name": "bob", "age": 30, "role": "it"}), true)
        );
    }

    // ---- general ----------------------------------------------------------------------

    #[test]
    fn modified_is_true_when_any_operation_changed_something() {
        let patch = json!([
            {"operation": "remove", "field": "/absent"},
            {"operation": "add", "field": "/x", "value": 1},
            {"operation": "copy", "from": "/absent", "field": "/y"}
        ]);
        assert_eq!(patched(json!({}), patch), (json!({"x": 1}), true));
    }

    #[test]
    fn the_position_rule_sees_the_working_copy() {
        let patch = json!([
            {"operation": "add", "field": "/list", "value": ["a", "b"]},
            {"operation": "remove", "field": "/list/1"}
        ]);
        assert_eq!(
            patch_error(json!({"list": {"1": "x"}}), patch),
            "Position-based operation is not allowed: /list/1"
        );
    }

    #[test]
    fn the_root_cannot_be_patched() {
        for patch in [
            json!([{"operation": "add", "field": "/", "value": {"a": 1}}]),
            json!([{"operation": "replace", "field": "", "value": {"a": 1}}]),
            json!([{"operation": "remove", "field": "/"}]),
            json!([{"operation": "increment", "field": "/", "value": 1}]),
            json!([{"operation": "copy", "from": "/a", "field": "/"}]),
            json!([{"operation": "move", "from": "/a", "field": "/"}]),
            json!([{"operation": "transform", "field": "/", "value": {"script": "x"}}]),
        ] {
            assert_eq!(patch_error(json!({"a": "v"}), patch), "The field '/' cannot be patched");
        }
    }

    #[test]
    fn hand_built_operations_are_checked_too() {
        let mut target = json!({});
        let missing_value = [PatchOperation {
            op: PatchOp::Add,
            field: JsonPointer::parse("/a"),
            value: None,
            from: None,
        }];
        assert_eq!(
            apply_patch(&mut target, &missing_value, &AppendXformed),
            Err(PatchError::new(invalid("No value field provided for 'add' operation")))
        );
        let missing_from = [PatchOperation {
            op: PatchOp::Move,
            field: JsonPointer::parse("/a"),
            value: None,
            from: None,
        }];
        assert_eq!(
            apply_patch(&mut target, &missing_from, &AppendXformed),
            Err(PatchError::new(invalid("No from field provided for 'move' operation")))
        );
    }

    #[test]
    fn pointer_segments_are_percent_decoded_and_printed_escaped() {
        let patch = json!([{"operation": "add", "field": "/a%2Fb", "value": 1}]);
        assert_eq!(patched(json!({}), patch), (json!({"a/b": 1}), true));
        let patch = json!([{"operation": "increment", "field": "/a%2Fb", "value": 1}]);
        assert_eq!(patch_error(json!({}), patch), "The field '/a%2Fb' does not exist");
    }

    #[test]
    fn touched_properties_lists_first_segments_once() {
        let operations = parse(json!([
            {"operation": "replace", "field": "/name/given", "value": "x"},
            {"operation": "add", "field": "/roles/-", "value": {"_ref": "managed/role/x"}},
            {"operation": "move", "from": "/old", "field": "/name"},
            {"operation": "copy", "from": "/source", "field": "/copy"},
            {"operation": "remove", "field": "/"}
        ]));
        assert_eq!(touched_properties(&operations), ["name", "roles", "old", "copy"]);
    }

    #[test]
    fn patch_op_names_round_trip() {
        for op in PatchOp::ALL {
            assert_eq!(PatchOp::from_name(op.as_str()), Some(op));
            assert_eq!(PatchOp::from_name(&op.as_str().to_uppercase()), Some(op));
            assert_eq!(op.to_string(), op.as_str());
        }
        assert_eq!(PatchOp::from_name("test"), None);
    }

    #[test]
    fn patch_errors_become_bad_requests() {
        let error = PatchError::new("The field '/key' does not exist");
        assert_eq!(error.to_string(), "The field '/key' does not exist");
        assert_eq!(
            crate::Error::from(error),
            crate::Error::bad_request("The field '/key' does not exist")
        );
    }

    // ---- one rule for array indexes ----------------------------------------------------

    /// Every spelling of an index that is not canonical decimal (or `-`).
    const NOT_INDEXES: [&str; 12] = ["01", "00", "+1", "+0", "-1", "1.0", " 1", "1 ", "x", "1e0", "0x1", "٣"];

    #[test]
    fn array_indexes_are_canonical_decimal_or_dash() {
        assert_eq!(array_index("0"), Some(ArrayIndex::At(0)));
        assert_eq!(array_index("7"), Some(ArrayIndex::At(7)));
        assert_eq!(array_index("10"), Some(ArrayIndex::At(10)));
        assert_eq!(array_index("-"), Some(ArrayIndex::End));
        assert_eq!(array_index(&usize::MAX.to_string()), Some(ArrayIndex::At(usize::MAX)));
        for segment in NOT_INDEXES {
            assert_eq!(array_index(segment), None, "{segment:?}");
        }
        // Canonical, but too large for an index.
        assert_eq!(array_index("99999999999999999999999"), None);
        assert_eq!(array_index("１"), None, "only ASCII digits");
    }

    #[test]
    fn non_canonical_indexes_are_refused_by_every_operation() {
        let target = json!({"tags": ["a"], "copy": "v"});
        for segment in NOT_INDEXES {
            let field = format!("/tags/{segment}");
            let expected = format!("/tags: List index is not valid: {segment}");
            for operation in [
                json!({"operation": "add", "field": field, "value": "z"}),
                json!({"operation": "replace", "field": field, "value": "z"}),
                json!({"operation": "remove", "field": field}),
                json!({"operation": "remove", "field": field, "value": "a"}),
                json!({"operation": "increment", "field": field, "value": 1}),
                json!({"operation": "transform", "field": field, "value": {"script": "x"}}),
                json!({"operation": "copy", "from": field, "field": "/other"}),
                json!({"operation": "move", "from": field, "field": "/other"}),
                json!({"operation": "copy", "from": "/copy", "field": field}),
                json!({"operation": "move", "from": "/copy", "field": field}),
            ] {
                assert_eq!(patch_error(target.clone(), json!([operation])), expected, "{operation}");
            }
        }
    }

    #[test]
    fn leading_zeros_and_signs_no_longer_reach_an_element() {
        // `01` used to replace element 1 and `+1` to append; `00` removed element 0.
        let target = json!({"tags": ["a", "b"]});
        for (op, field) in [("add", "/tags/01"), ("add", "/tags/+1"), ("replace", "/tags/02")] {
            let patch = json!([{"operation": op, "field": field, "value": "z"}]);
            let segment = &field["/tags/".len()..];
            assert_eq!(
                patch_error(target.clone(), patch),
                format!("/tags: List index is not valid: {segment}")
            );
        }
        let patch = json!([{"operation": "remove", "field": "/tags/00"}]);
        assert_eq!(patch_error(target, patch), "/tags: List index is not valid: 00");
    }

    #[test]
    fn the_rule_applies_at_every_depth() {
        let target = json!({"list": [{"a": 1}, {"a": 2}]});
        for (patch, expected) in [
            (
                json!([{"operation": "add", "field": "/list/01/b", "value": 3}]),
                "/list: List index is not valid: 01",
            ),
            (
                json!([{"operation": "add", "field": "/list/-/b", "value": 3}]),
                "/list: List index is not valid: -",
            ),
            (
                json!([{"operation": "remove", "field": "/list/+1/a"}]),
                "/list: List index is not valid: +1",
            ),
            (
                json!([{"operation": "increment", "field": "/list/x/a", "value": 1}]),
                "/list: List index is not valid: x",
            ),
            (
                json!([{"operation": "copy", "from": "/list/1.0/a", "field": "/b"}]),
                "/list: List index is not valid: 1.0",
            ),
        ] {
            assert_eq!(patch_error(target.clone(), patch), expected);
        }
        // Canonical indexes still walk into elements.
        let list: Vec<Value> = (0..11).map(|a| json!({"a": a})).collect();
        let patch = json!([
            {"operation": "increment", "field": "/list/10/a", "value": 1},
            {"operation": "remove", "field": "/list/10/b"},
            {"operation": "copy", "from": "/list/10/a", "field": "/list/0/a"}
        ]);
        let (result, modified) = patched(json!({"list": list}), patch);
        assert!(modified);
        assert_eq!(result["list"][10], json!({"a": 11}));
        assert_eq!(result["list"][0], json!({"a": 11}));
    }

    #[test]
    fn dash_is_the_end_only_where_the_operation_writes() {
        let target = json!({"tags": ["a"], "v": "z"});
        for operation in [
            json!({"operation": "add", "field": "/tags/-", "value": "z"}),
            json!({"operation": "replace", "field": "/tags/-", "value": "z"}),
            json!({"operation": "copy", "from": "/v", "field": "/tags/-"}),
        ] {
            let (result, modified) = patched(target.clone(), json!([operation]));
            assert!(modified, "{operation}");
            assert_eq!(result["tags"], json!(["a", "z"]), "{operation}");
        }
        let (result, _) = patched(
            target.clone(),
            json!([{"operation": "move", "from": "/v", "field": "/tags/-"}]),
        );
        assert_eq!(result, json!({"tags": ["a", "z"]}));
        // Nothing can be read after the last element.
        for operation in [
            json!({"operation": "remove", "field": "/tags/-"}),
            json!({"operation": "remove", "field": "/tags/-", "value": "a"}),
            json!({"operation": "increment", "field": "/tags/-", "value": 1}),
            json!({"operation": "transform", "field": "/tags/-", "value": {"script": "x"}}),
            json!({"operation": "copy", "from": "/tags/-", "field": "/w"}),
            json!({"operation": "move", "from": "/tags/-", "field": "/w"}),
        ] {
            assert_eq!(
                patch_error(target.clone(), json!([operation])),
                "/tags: List index is not valid: -",
                "{operation}"
            );
        }
    }

    #[test]
    fn canonical_indexes_keep_their_out_of_range_wording() {
        let patch = json!([{"operation": "add", "field": "/tags/10", "value": "z"}]);
        assert_eq!(
            patch_error(json!({"tags": ["a"]}), patch),
            "/tags: List index out of range: 10"
        );
        let huge = usize::MAX.to_string();
        let patch = json!([{"operation": "add", "field": format!("/tags/{huge}"), "value": "z"}]);
        assert_eq!(
            patch_error(json!({"tags": ["a"]}), patch),
            format!("/tags: List index out of range: {huge}")
        );
        let patch = json!([{"operation": "add", "field": "/tags/99999999999999999999999", "value": "z"}]);
        assert_eq!(
            patch_error(json!({"tags": ["a"]}), patch),
            "/tags: List index is not valid: 99999999999999999999999"
        );
        // Reading past the end finds nothing, as for an absent member.
        let patch = json!([{"operation": "remove", "field": "/tags/10"}]);
        assert_eq!(patched(json!({"tags": ["a"]}), patch), (json!({"tags": ["a"]}), false));
        let patch = json!([{"operation": "increment", "field": "/tags/10", "value": 1}]);
        assert_eq!(
            patch_error(json!({"tags": ["a"]}), patch),
            "The field '/tags/10' does not exist"
        );
    }

    #[test]
    fn the_same_spellings_are_ordinary_keys_of_objects() {
        for segment in NOT_INDEXES {
            let patch = json!([{"operation": "add", "field": format!("/o/{segment}"), "value": 1}]);
            let (result, modified) = patched(json!({"o": {}}), patch);
            assert!(modified, "{segment:?}");
            assert_eq!(result["o"][segment], json!(1), "{segment:?}");
        }
    }

    #[test]
    fn the_position_rule_still_comes_first_for_single_digits() {
        let patch = json!([{"operation": "add", "field": "/tags/1", "value": "z"}]);
        assert_eq!(
            patch_error(json!({"tags": ["a"]}), patch),
            "Position-based operation is not allowed: /tags/1"
        );
    }
}
