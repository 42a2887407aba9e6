//! `scripts/README.md` is the contract between the server and script authors. These tests keep it
//! true to the code: the host-API table lists exactly the functions the engine builder registers
//! (with their arities), the host-services table lists exactly
//! `ferridm::service::host_services::NAMES`, and every field of the stage context a stage script
//! receives is described as `context.<field>`.

use std::collections::BTreeSet;
use std::path::Path;

use ferridm::service::host_services::NAMES;
use ferridm_plugins::engine::host_functions;
use ferridm_plugins::stage::StageContext;

const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/README.md");

fn readme() -> String {
    std::fs::read_to_string(Path::new(README)).unwrap_or_else(|error| panic!("cannot read {README}: {error}"))
}

/// The lines of the section that starts at the heading line `heading`, up to the next heading of
/// the same or a higher level, without fenced code blocks.
fn section<'a>(text: &'a str, heading: &str) -> Vec<&'a str> {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let is_heading_up_to_level = |line: &str| {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        (1..=level).contains(&hashes) && line[hashes..].starts_with(' ')
    };
    let mut lines = text.lines().skip_while(|line| line.trim_end() != heading);
    assert!(lines.next().is_some(), "{README} has no heading {heading:?}");
    let mut kept = Vec::new();
    let mut in_fence = false;
    for line in lines {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        } else if in_fence {
            continue;
        } else if is_heading_up_to_level(line) {
            break;
        } else {
            kept.push(line);
        }
    }
    kept
}

/// Splits a table row into cells; a `|` inside a code span does not split.
fn cells(row: &str) -> Vec<String> {
    let row = row.trim().trim_start_matches('|');
    let row = row.strip_suffix('|').unwrap_or(row);
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut in_code = false;
    for c in row.chars() {
        if c == '|' && !in_code {
            cells.push(cell.trim().to_owned());
            cell.clear();
        } else {
            in_code ^= c == '`';
            cell.push(c);
        }
    }
    cells.push(cell.trim().to_owned());
    cells
}

/// The first cell of every data row of the first table in the section under `heading`.
fn first_column(text: &str, heading: &str) -> Vec<String> {
    let rows: Vec<&str> = section(text, heading)
        .into_iter()
        .skip_while(|line| !line.trim_start().starts_with('|'))
        .take_while(|line| line.trim_start().starts_with('|'))
        .collect();
    assert!(rows.len() > 2, "{README}: no table with rows under {heading:?}");
    assert!(
        cells(rows[1])
            .iter()
            .all(|cell| !cell.is_empty() && cell.chars().all(|c| matches!(c, '-' | ':'))),
        "{README}: the table under {heading:?} has no header separator"
    );
    rows[2..]
        .iter()
        .map(|row| cells(row).into_iter().next().unwrap_or_default())
        .collect()
}

/// The code spans (text between backticks) of `text`.
fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// `openidm::query(path, filter)` → `openidm::query/2`.
fn signature(call: &str) -> String {
    let (name, rest) = call
        .split_once('(')
        .unwrap_or_else(|| panic!("{README}: host-API entry `{call}` is not written as `name(arguments)`"));
    let arguments = rest
        .strip_suffix(')')
        .unwrap_or_else(|| panic!("{README}: host-API entry `{call}` does not end with `)`"));
    let arity = arguments
        .split(',')
        .filter(|argument| !argument.trim().is_empty())
        .count();
    format!("{}/{arity}", name.trim())
}

fn report(what: &str, found: &BTreeSet<String>) -> String {
    if found.is_empty() {
        String::new()
    } else {
        format!("\n  {what}: {}", found.iter().cloned().collect::<Vec<_>>().join(", "))
    }
}

#[test]
fn the_host_api_table_lists_exactly_the_registered_functions() {
    let text = readme();
    let documented: BTreeSet<String> = first_column(&text, "## The host API")
        .iter()
        .flat_map(|cell| code_spans(cell).into_iter().map(signature).collect::<Vec<_>>())
        .collect();
    let registered: BTreeSet<String> = host_functions().iter().map(ToString::to_string).collect();
    assert!(!registered.is_empty(), "the engine lists no host functions");
    let undocumented: BTreeSet<String> = registered.difference(&documented).cloned().collect();
    let missing: BTreeSet<String> = documented.difference(&registered).cloned().collect();
    assert!(
        undocumented.is_empty() && missing.is_empty(),
        "{README} \"The host API\" table is out of date (entries are name/arity):{}{}",
        report("registered by the engine but not documented", &undocumented),
        report("documented but not registered by the engine", &missing),
    );
}

#[test]
fn the_host_services_table_lists_exactly_the_services() {
    let text = readme();
    let cells = first_column(&text, "### Host services");
    let mut documented = BTreeSet::new();
    for cell in &cells {
        let spans = code_spans(cell);
        assert_eq!(
            spans.len(),
            1,
            "{README}: host-services row {cell:?} must name one service in backticks"
        );
        assert!(
            documented.insert(spans[0].to_owned()),
            "{README}: service {} is documented twice",
            spans[0]
        );
    }
    let existing: BTreeSet<String> = NAMES.iter().map(|name| (*name).to_owned()).collect();
    assert_eq!(
        existing.len(),
        NAMES.len(),
        "host_services::NAMES lists a service twice: {NAMES:?}"
    );
    let undocumented: BTreeSet<String> = existing.difference(&documented).cloned().collect();
    let missing: BTreeSet<String> = documented.difference(&existing).cloned().collect();
    assert!(
        undocumented.is_empty() && missing.is_empty(),
        "{README} \"Host services\" table is out of date:{}{}",
        report("host services not documented", &undocumented),
        report("documented but not host services", &missing),
    );
}

#[test]
fn every_stage_context_field_is_described() {
    let text = readme();
    let stages = section(&text, "## Self-service stages").join("\n");
    let spans = code_spans(&stages);
    let context = StageContext::default().to_json();
    let fields: Vec<&String> = context
        .as_object()
        .unwrap_or_else(|| panic!("the stage context is not an object: {context}"))
        .keys()
        .collect();
    assert!(!fields.is_empty(), "the stage context has no fields");
    let undescribed: BTreeSet<String> = fields
        .iter()
        .map(|field| format!("context.{field}"))
        .filter(|mention| {
            !spans
                .iter()
                .any(|span| span == mention || span.starts_with(&format!("{mention}.")))
        })
        .collect();
    assert!(
        undescribed.is_empty(),
        "{README} \"Self-service stages\" does not describe {}",
        undescribed
            .iter()
            .map(|mention| format!("`{mention}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
