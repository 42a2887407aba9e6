//! `ferridm import`: reads a ferridm export (its directory or its JSON lines) or IDM's objects
//! (query responses `{"result": [...]}`, one or several pages; a JSON array; JSON lines), and
//! validates every object exactly as a create through REST would. Only when every object passes
//! are they written, in batches of one transaction each; each batch also records how far the
//! import got (a checkpoint in the database), so an interrupted import continues with
//! `--resume` and nothing is written twice.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferridm_core::{Error, Object, Revision};
use ferridm_store::{RelationshipSet, RestoreConflict, RestoredObject, StoreError, unique_keys};
use serde_json::Value;

use super::{EXPORT_FORMAT, OBJECTS_FILE};
use crate::secrets::password::StoredPassword;
use crate::secrets::password::idm_encryption::{IDM_ENCRYPTION, IdmKeys};
use crate::service::context::RequestContext;
use crate::service::managed::ManagedObjects;

/// Prefix of the setting that records how far an import of a file got.
const CHECKPOINT_PREFIX: &str = "import-progress:";

/// What to import and how.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// A ferridm export (directory or JSON-lines file) or an IDM file.
    pub path: PathBuf,
    /// The managed type of the objects of an IDM file.
    pub object_type: String,
    /// Only validate and report.
    pub dry_run: bool,
    /// Continue after the last committed batch of an earlier, interrupted import of `path`.
    pub resume: bool,
    /// Objects per transaction.
    pub batch_size: usize,
    /// Keys that open IDM's encrypted values (`x-simple-encryption`); without them such values
    /// are refused.
    pub idm_keys: IdmKeys,
}

/// How an import ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportOutcome {
    /// Every object passed and was written (none with a dry run).
    Done {
        /// Objects checked.
        checked: u64,
        /// Objects written now.
        written: u64,
        /// Objects an earlier, interrupted import had written (skipped with `--resume`).
        resumed: u64,
    },
    /// Some objects failed validation (each was reported); nothing was written.
    Refused {
        /// Objects checked.
        checked: u64,
        /// Objects that failed.
        failed: u64,
    },
}

/// An import that could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input cannot be read.
    #[error("{path}: {message}")]
    Input {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// An earlier import of the same file stopped part way.
    #[error(
        "an earlier import of {path} stopped after {committed} objects: rerun with --resume to continue it (it skips the objects already written)"
    )]
    Interrupted {
        /// The file.
        path: String,
        /// Objects it wrote.
        committed: u64,
    },
    /// The database refused a batch (for example, a live server created a conflicting object
    /// since validation); the batches before it stay written and `--resume` continues.
    #[error(
        "writing the batch after object {committed} failed: {message}; {committed} objects are written, fix the cause and rerun with --resume"
    )]
    Write {
        /// Objects written before the failure.
        committed: u64,
        /// The cause.
        message: String,
    },
    /// Writing the report failed.
    #[error("cannot write the report: {0}")]
    Report(#[from] std::io::Error),
}

/// One object of the input.
struct Record {
    /// Its position among the input's objects (1-based).
    ordinal: u64,
    object_type: String,
    object: Object,
    /// True for an object of a ferridm export.
    exported: bool,
}

/// Which kind of input a file turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Not known yet (nothing read).
    Unknown,
    /// A ferridm export: objects keep revisions and metadata.
    Ferridm,
    /// IDM's objects: new revisions and metadata, schema defaults, plain secrets hashed.
    Idm,
}

/// An object ready to be written.
struct Prepared {
    object_type: String,
    id: String,
    rev: Revision,
    content: Object,
    meta: Object,
    relationships: Vec<RelationshipSet>,
}

/// Imports `options.path` into the store of `ctx`, writing the report of failed objects (one
/// line each) to `report` and progress to the terminal.
pub fn import(
    ctx: &RequestContext,
    options: &ImportOptions,
    report: &mut dyn Write,
) -> Result<ImportOutcome, ImportError> {
    let file = input_file(&options.path);
    let store = &ctx.state.store;
    let checkpoint_name = checkpoint_name(&file);
    let committed = store
        .setting(&checkpoint_name)
        .map_err(|error| input_error(&file, &error))?
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or(0);
    if committed > 0 && !options.resume {
        return Err(ImportError::Interrupted {
            path: file.display().to_string(),
            committed,
        });
    }
    let resumed = if options.resume { committed } else { 0 };

    // Pass 1: validate everything, writing nothing.
    let mut checked = 0u64;
    let mut failed = 0u64;
    let mut seen = HashSet::new();
    let mut progress = Progress::new("validated", None);
    read_records(&file, &options.object_type, |record| {
        if record.ordinal <= resumed {
            return Ok(());
        }
        checked += 1;
        progress.update(checked, false);
        let problem = match prepare(ctx, record, &options.idm_keys) {
            Ok(prepared) => duplicate_in_input(&mut seen, ctx, &prepared).err().map(|reason| {
                (
                    record_name(&prepared.object_type, &prepared.id, &prepared.content),
                    reason,
                )
            }),
            Err(failure) => Some(failure),
        };
        if let Some((name, reason)) = problem {
            failed += 1;
            writeln!(report, "{name} (object {}): {reason}", record.ordinal)?;
        }
        Ok(())
    })?;
    progress.finish(checked);
    drop(seen);
    if failed > 0 {
        return Ok(ImportOutcome::Refused { checked, failed });
    }
    if options.dry_run {
        return Ok(ImportOutcome::Done {
            checked,
            written: 0,
            resumed,
        });
    }

    // Pass 2: write in batches, each with its checkpoint.
    let mut batch: Vec<Prepared> = Vec::with_capacity(options.batch_size);
    let mut written = 0u64;
    let mut last_ordinal = resumed;
    let mut progress = Progress::new("committed", Some(checked));
    let flush = |batch: &mut Vec<Prepared>, last_ordinal: u64, written: &mut u64, progress: &mut Progress| {
        if batch.is_empty() {
            return Ok(());
        }
        let types: Vec<_> = batch
            .iter()
            .map(|prepared| ManagedObjects::new(ctx, &prepared.object_type))
            .collect::<Result<_, _>>()
            .map_err(|error| ImportError::Write {
                committed: last_ordinal - batch.len() as u64,
                message: error.to_string(),
            })?;
        let objects: Vec<RestoredObject<'_>> = batch
            .iter()
            .zip(&types)
            .map(|(prepared, managed)| RestoredObject {
                object_type: &prepared.object_type,
                id: &prepared.id,
                rev: prepared.rev,
                content: &prepared.content,
                meta: &prepared.meta,
                index: &managed.managed_type().index,
                relationships: &prepared.relationships,
            })
            .collect();
        let value = last_ordinal.to_string();
        store
            .restore_batch(&objects, Some((&checkpoint_name, &value)))
            .map_err(|error| ImportError::Write {
                committed: last_ordinal - batch.len() as u64,
                message: write_failure(&error),
            })?;
        *written += batch.len() as u64;
        batch.clear();
        progress.update(*written, true);
        Ok::<(), ImportError>(())
    };
    read_records(&file, &options.object_type, |record| {
        if record.ordinal <= resumed {
            return Ok(());
        }
        let ordinal = record.ordinal;
        let prepared = prepare(ctx, record, &options.idm_keys).map_err(|(name, reason)| ImportError::Write {
            committed: last_ordinal,
            message: format!("{name} no longer passes: {reason}"),
        })?;
        batch.push(prepared);
        last_ordinal = ordinal;
        if batch.len() >= options.batch_size {
            flush(&mut batch, last_ordinal, &mut written, &mut progress)?;
        }
        Ok(())
    })?;
    flush(&mut batch, last_ordinal, &mut written, &mut progress)?;
    progress.finish(written);
    store
        .remove_setting(&checkpoint_name)
        .map_err(|error| input_error(&file, &error))?;
    Ok(ImportOutcome::Done {
        checked,
        written,
        resumed,
    })
}

/// The file holding the records: `objects.jsonl` in an export directory, else `path` itself.
fn input_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(OBJECTS_FILE)
    } else {
        path.to_path_buf()
    }
}

/// The setting recording how far an import of `file` got (by its absolute path).
fn checkpoint_name(file: &Path) -> String {
    let absolute = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    format!("{CHECKPOINT_PREFIX}{}", absolute.display())
}

fn input_error(file: &Path, error: &dyn std::fmt::Display) -> ImportError {
    ImportError::Input {
        path: file.display().to_string(),
        message: error.to_string(),
    }
}

fn write_failure(error: &StoreError) -> String {
    match error {
        StoreError::AlreadyExists => "an object with one of its ids was stored meanwhile".to_owned(),
        StoreError::UniqueViolation { property } => {
            format!("a value of the unique property \"{property}\" was stored meanwhile")
        }
        other => other.to_string(),
    }
}

/// Reads every object of `file` in order, calling `each` with it. A ferridm export must end with its `end` record and hold as many objects as it says.
fn read_records(
    file: &Path,
    default_type: &str,
    mut each: impl FnMut(&Record) -> Result<(), ImportError>,
) -> Result<(), ImportError> {
    let opened = std::fs::File::open(file).map_err(|error| input_error(file, &error))?;
    let values = serde_json::Deserializer::from_reader(BufReader::with_capacity(1 << 16, opened)).into_iter::<Value>();
    let mut source = Source::Unknown;
    let mut ordinal = 0u64;
    let mut expected = None;
    let mut emit = |object_type: &str, object: Value, ordinal: &mut u64, exported: bool| -> Result<(), ImportError> {
        *ordinal += 1;
        let Value::Object(object) = object else {
            return Err(input_error(file, &format!("object {ordinal} is not a JSON object")));
        };
        each(&Record {
            ordinal: *ordinal,
            object_type: object_type.to_owned(),
            object,
            exported,
        })
    };
    for value in values {
        let value = value.map_err(|error| input_error(file, &format!("not JSON: {error}")))?;
        if expected.is_some() {
            return Err(input_error(file, &"records follow the export's end record"));
        }
        match (source, value) {
            (Source::Unknown, Value::Object(header))
                if header.get("kind") == Some(&Value::from("header"))
                    && header.get("format") == Some(&Value::from(EXPORT_FORMAT)) =>
            {
                source = Source::Ferridm;
            }
            (Source::Ferridm, Value::Object(mut record)) => match record.get("kind").and_then(Value::as_str) {
                Some("file") => {}
                Some("object") => {
                    let object_type = match record.get("type") {
                        Some(Value::String(name)) => name.clone(),
                        _ => return Err(input_error(file, &format!("object {} has no type", ordinal + 1))),
                    };
                    let object = record.remove("object").unwrap_or(Value::Null);
                    emit(&object_type, object, &mut ordinal, true)?;
                }
                Some("end") => expected = Some(record.get("objects").and_then(Value::as_u64).unwrap_or(0)),
                _ => return Err(input_error(file, &"a record of the export has no known kind")),
            },
            (Source::Ferridm, _) => return Err(input_error(file, &"a record of the export is not a JSON object")),
            (_, Value::Object(mut envelope)) if envelope.get("result").is_some_and(Value::is_array) => {
                source = Source::Idm;
                if let Some(Value::Array(objects)) = envelope.remove("result") {
                    for object in objects {
                        emit(default_type, object, &mut ordinal, false)?;
                    }
                }
            }
            (_, Value::Array(objects)) => {
                source = Source::Idm;
                for object in objects {
                    emit(default_type, object, &mut ordinal, false)?;
                }
            }
            (_, object) => {
                source = Source::Idm;
                emit(default_type, object, &mut ordinal, false)?;
            }
        }
    }
    if source == Source::Ferridm {
        match expected {
            None => return Err(input_error(file, &"the export is incomplete: it has no end record")),
            Some(count) if count != ordinal => {
                return Err(input_error(
                    file,
                    &format!("the export is incomplete: its end record counts {count} objects, it holds {ordinal}"),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// How a failed object is named in the report: its resource path and user name.
fn record_name(object_type: &str, id: &str, object: &Object) -> String {
    match object.get("userName").and_then(Value::as_str) {
        Some(user_name) => format!("managed/{object_type}/{id} (userName \"{user_name}\")"),
        None => format!("managed/{object_type}/{id}"),
    }
}

/// Validates one object as a create would and returns it as it is to be written, or its name
/// in the report and why it fails. `exported` objects (from a ferridm export) keep revision,
/// metadata and content as stored; IDM objects get what a create gives them, with their
/// encrypted values opened by `idm_keys`.
fn prepare(ctx: &RequestContext, record: &Record, idm_keys: &IdmKeys) -> Result<Prepared, (String, String)> {
    let exported = record.exported;
    let mut object = record.object.clone();
    let id = match object.get("_id") {
        Some(Value::String(id)) => id.clone(),
        _ => {
            return Err((
                record_name(&record.object_type, "?", &object),
                "the object has no \"_id\"".to_owned(),
            ));
        }
    };
    let name = record_name(&record.object_type, &id, &object);
    let fail = |reason: String| (name.clone(), reason);
    let managed = ManagedObjects::new(ctx, &record.object_type).map_err(|error| fail(error.to_string()))?;
    for (property, value) in &mut object {
        if !idm_keys.is_empty()
            && let Some(crypto) = value.get("$crypto")
            && crypto.get("type").and_then(Value::as_str) == Some(IDM_ENCRYPTION)
        {
            let encrypted = crypto.get("value").unwrap_or(&Value::Null);
            *value = idm_keys
                .decrypt(encrypted)
                .map_err(|reason| fail(format!("property \"{property}\" cannot be decrypted: {reason}")))?;
        }
        if let Some(StoredPassword::Unusable(reason)) = StoredPassword::from_crypto(value) {
            return Err(fail(format!(
                "property \"{property}\" cannot be imported: {reason} (export it from IDM in clear or as a salted hash, or give IDM's key with --idm-key)"
            )));
        }
    }
    let rev = match (exported, object.get("_rev")) {
        (false, _) => Revision::initial(rand::random()),
        (true, Some(Value::String(text))) => {
            Revision::parse(text).ok_or_else(|| fail(format!("\"_rev\" {text:?} is not a ferridm revision")))?
        }
        (true, _) => return Err(fail("the exported object has no \"_rev\"".to_owned())),
    };
    let exported_meta = match object.remove("_meta") {
        Some(Value::Object(meta)) if exported => Some(meta),
        _ => None,
    };
    let relationships = managed
        .take_imported_relationships(&mut object)
        .map_err(|error| fail(describe(&error)))?;
    let content = managed
        .validate_import(&id, object, !exported)
        .map_err(|error| fail(describe(&error)))?;
    let meta = exported_meta.unwrap_or_else(|| managed.import_meta(&content));
    Ok(Prepared {
        object_type: record.object_type.clone(),
        id,
        rev,
        content,
        meta,
        relationships,
    })
}

/// A validation error as a report line: each failed property with its policy requirements.
fn describe(error: &Error) -> String {
    let Error::PolicyFailed { detail, .. } = error else {
        return error.to_string();
    };
    // Requirements grouped by property, in the order the policies reported them.
    let mut by_property: Vec<(&str, Vec<&str>)> = Vec::new();
    for failure in detail
        .get("failedPolicyRequirements")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let property = failure.get("property").and_then(Value::as_str).unwrap_or("?");
        let requirements = failure
            .get("policyRequirements")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|requirement| requirement.get("policyRequirement").and_then(Value::as_str));
        match by_property.iter_mut().find(|(name, _)| *name == property) {
            Some((_, listed)) => listed.extend(requirements),
            None => by_property.push((property, requirements.collect())),
        }
    }
    let failures: Vec<String> = by_property
        .iter()
        .map(|(property, requirements)| format!("property \"{property}\" fails {}", requirements.join(", ")))
        .collect();
    if failures.is_empty() {
        error.to_string()
    } else {
        failures.join("; ")
    }
}

/// A 64-bit key of a value, so the ids and unique values of a large input are remembered in
/// little memory.
fn key_of(parts: &[&str]) -> u64 {
    let mut hasher = DefaultHasher::new();
    parts.hash(&mut hasher);
    hasher.finish()
}

/// Refuses an object whose id or unique value is stored already, or came earlier in the input.
fn duplicate_in_input(seen: &mut HashSet<u64>, ctx: &RequestContext, prepared: &Prepared) -> Result<(), String> {
    let managed = ManagedObjects::new(ctx, &prepared.object_type).map_err(|error| error.to_string())?;
    let index = &managed.managed_type().index;
    let conflict = ctx
        .state
        .store
        .restore_conflict(&prepared.object_type, &prepared.id, &prepared.content, index)
        .map_err(|error| error.to_string())?;
    match conflict {
        Some(RestoreConflict::IdExists) => {
            return Err(
                "an object with this id is stored already (import into a database without it, or delete it first)"
                    .to_owned(),
            );
        }
        Some(RestoreConflict::UniqueValue { property }) => {
            return Err(format!(
                "property \"{property}\" fails UNIQUE: a stored object has the same value"
            ));
        }
        None => {}
    }
    if !seen.insert(key_of(&["id", &prepared.object_type, &prepared.id])) {
        return Err("the id appears earlier in the input".to_owned());
    }
    for (property, value) in unique_keys(&prepared.content, index) {
        if !seen.insert(key_of(&["unique", &prepared.object_type, &property, &value])) {
            return Err(format!(
                "property \"{property}\" fails UNIQUE: an object earlier in the input has the same value"
            ));
        }
    }
    Ok(())
}

/// Progress on stderr: a bar with rate and ETA redrawn in place on a terminal, a plain line at
/// most every few seconds (and for the first step) otherwise.
struct Progress {
    label: &'static str,
    total: Option<u64>,
    terminal: bool,
    started: Instant,
    shown: Option<Instant>,
    /// The count last shown.
    shown_done: Option<u64>,
}

/// How often a terminal's bar is redrawn, and a plain progress line written.
const REDRAW: Duration = Duration::from_millis(200);
const LINE_EVERY: Duration = Duration::from_secs(2);

impl Progress {
    fn new(label: &'static str, total: Option<u64>) -> Self {
        Self {
            label,
            total,
            terminal: std::io::stderr().is_terminal(),
            started: Instant::now(),
            shown: None,
            shown_done: None,
        }
    }

    /// Reports `done` objects; `step` marks a finished step (a committed batch), always shown
    /// the first time.
    fn update(&mut self, done: u64, step: bool) {
        let every = if self.terminal { REDRAW } else { LINE_EVERY };
        let due = match self.shown {
            None => step || self.terminal,
            Some(shown) => shown.elapsed() >= every,
        };
        if due {
            self.show(done, false);
        }
    }

    /// Shows the final count (on a terminal, ends the bar's line).
    fn finish(&mut self, done: u64) {
        if self.shown_done != Some(done) || self.terminal {
            self.show(done, true);
        }
    }

    fn show(&mut self, done: u64, last: bool) {
        self.shown = Some(Instant::now());
        self.shown_done = Some(done);
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        #[expect(clippy::cast_precision_loss, reason = "object counts stay far below 2^53")]
        let rate = done as f64 / elapsed;
        let mut line = match self.total {
            Some(total) if total > 0 => {
                #[expect(clippy::cast_precision_loss, reason = "object counts stay far below 2^53")]
                let (share, left) = (done as f64 / total as f64, total.saturating_sub(done) as f64);
                let eta = if rate > 0.0 { left / rate } else { 0.0 };
                let bar = if self.terminal {
                    #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "0..=30")]
                    let filled = (share * 30.0).round().clamp(0.0, 30.0) as usize;
                    format!("[{}{}] ", "#".repeat(filled), "-".repeat(30 - filled))
                } else {
                    String::new()
                };
                format!(
                    "import: {bar}{} {done}/{total} objects ({:.0}%), {rate:.0} objects/s, ETA {eta:.0}s",
                    self.label,
                    share * 100.0
                )
            }
            _ => format!("import: {} {done} objects, {rate:.0} objects/s", self.label),
        };
        let mut stderr = std::io::stderr().lock();
        if self.terminal {
            line = format!("\r{line}\x1b[K");
            if last {
                line.push('\n');
            }
            let _ = stderr.write_all(line.as_bytes());
        } else {
            let _ = writeln!(stderr, "{line}");
        }
        let _ = stderr.flush();
    }
}
