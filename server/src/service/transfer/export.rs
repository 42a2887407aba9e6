//! `ferridm export`: every managed object from one read-only snapshot, read in pages of keys
//! and written as it is read (memory does not grow with the data), with the conf directory and
//! scripts.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use ferridm_store::{Snapshot, SnapshotObject, Store, StoreError};
use serde_json::{Map, Value, json};

use super::{EXPORT_FORMAT, EXPORT_VERSION, OBJECTS_FILE};
use crate::config::ConfigPaths;

/// Objects read from the snapshot at a time.
const PAGE: i64 = 1000;

/// The project directories an export carries as files, relative to the project directory.
const PROJECT_DIRS: [&str; 2] = ["conf", "scripts"];

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// Objects written.
    pub objects: u64,
    /// Conf and script files written.
    pub files: u64,
}

/// Where an export goes.
pub enum ExportTarget<'a> {
    /// JSON lines on a stream (file records carry the conf and scripts).
    Stream(&'a mut dyn Write),
    /// A directory: `objects.jsonl` and copies of `conf/` and `scripts/`.
    Directory(&'a Path),
}

/// A failed export.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the database failed.
    #[error("cannot read the database: {0}")]
    Store(#[from] StoreError),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes the export of `store` and the project of `paths` to `target`; `now` is the export's
/// time (ISO-8601) for its header.
pub fn export(
    store: &Store,
    paths: &ConfigPaths,
    target: ExportTarget<'_>,
    now: &str,
) -> Result<ExportSummary, ExportError> {
    match target {
        ExportTarget::Stream(out) => {
            let files = project_files(paths)?;
            let stdout = Path::new("<output>");
            let mut written = 0;
            let objects = store.snapshot(|snapshot| {
                let counts = managed_counts(snapshot)?;
                write_line(out, &header(now, &counts), stdout)?;
                for (relative, full) in &files {
                    let bytes = std::fs::read(full).map_err(io_error(full))?;
                    write_line(out, &file_record(relative, bytes), stdout)?;
                    written += 1;
                }
                write_objects(snapshot, out, stdout, &counts)
            })?;
            out.flush().map_err(io_error(stdout))?;
            Ok(ExportSummary {
                objects,
                files: written,
            })
        }
        ExportTarget::Directory(dir) => {
            std::fs::create_dir_all(dir).map_err(io_error(dir))?;
            let files = project_files(paths)?;
            for (relative, full) in &files {
                let copy = dir.join(relative);
                if let Some(parent) = copy.parent() {
                    std::fs::create_dir_all(parent).map_err(io_error(parent))?;
                }
                std::fs::copy(full, &copy).map_err(io_error(&copy))?;
            }
            let path = dir.join(OBJECTS_FILE);
            let file = std::fs::File::create(&path).map_err(io_error(&path))?;
            let mut out = std::io::BufWriter::new(file);
            let objects = store.snapshot(|snapshot| {
                let counts = managed_counts(snapshot)?;
                write_line(&mut out, &header(now, &counts), &path)?;
                write_objects(snapshot, &mut out, &path, &counts)
            })?;
            let file = out.into_inner().map_err(|error| io_error(&path)(error.into_error()))?;
            file.sync_all().map_err(io_error(&path))?;
            Ok(ExportSummary {
                objects,
                files: files.len() as u64,
            })
        }
    }
}

/// How many managed objects of each type the snapshot holds (the audit trail, kept in its own
/// table, is not exported: its handlers' files are its archive).
fn managed_counts(snapshot: &mut Snapshot<'_>) -> Result<std::collections::BTreeMap<String, i64>, ExportError> {
    Ok(snapshot.counts()?)
}

fn header(now: &str, counts: &std::collections::BTreeMap<String, i64>) -> Value {
    json!({"kind": "header", "format": EXPORT_FORMAT, "version": EXPORT_VERSION, "exportedAt": now, "counts": counts})
}

/// A conf or script file as a record: its text, or base64 when it is not UTF-8.
fn file_record(relative: &str, bytes: Vec<u8>) -> Value {
    match String::from_utf8(bytes) {
        Ok(text) => json!({"kind": "file", "path": relative, "text": text}),
        Err(error) => {
            use base64::Engine as _;
            let encoded = base64::engine::general_purpose::STANDARD.encode(error.into_bytes());
            json!({"kind": "file", "path": relative, "base64": encoded})
        }
    }
}

/// Every file under the project's conf and scripts directories (relative path with `/`, full
/// path), in name order.
fn project_files(paths: &ConfigPaths) -> Result<Vec<(String, PathBuf)>, ExportError> {
    let mut files = Vec::new();
    for dir in PROJECT_DIRS {
        let root = if dir == "conf" {
            paths.conf_dir.clone()
        } else {
            paths.project_dir.join(dir)
        };
        if root.is_dir() {
            collect(&root, dir, &mut files)?;
        }
    }
    Ok(files)
}

fn collect(dir: &Path, relative: &str, files: &mut Vec<(String, PathBuf)>) -> Result<(), ExportError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io_error(dir))?
        .collect::<Result<_, _>>()
        .map_err(io_error(dir))?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        let name = format!("{relative}/{}", entry.file_name().to_string_lossy());
        if path.is_dir() {
            collect(&path, &name, files)?;
        } else {
            files.push((name, path));
        }
    }
    Ok(())
}

fn write_line(out: &mut dyn Write, record: &Value, path: &Path) -> Result<(), ExportError> {
    serde_json::to_writer(&mut *out, record).map_err(|error| io_error(path)(error.into()))?;
    out.write_all(b"\n").map_err(io_error(path))
}

/// The references of each object of a page, by (type, id): each property with its references.
type PageReferences = HashMap<(String, String), Vec<(String, Vec<Value>)>>;

/// The references the objects of `page` hold, by (type, id) and property, as
/// `{_ref, _refProperties}` lists: every relationship is written as an array (a single
/// reference as an array of one), which an import reads back for either kind.
fn page_references(snapshot: &mut Snapshot<'_>, page: &[SnapshotObject]) -> Result<PageReferences, ExportError> {
    let mut ids_by_type: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for item in page {
        ids_by_type.entry(&item.object_type).or_default().push(&item.object.id);
    }
    let mut references = PageReferences::new();
    for (object_type, ids) in ids_by_type {
        for edge in snapshot.edges_of(object_type, &ids)? {
            let mut properties = edge.properties;
            properties.insert("_id".to_owned(), Value::String(edge.id));
            properties.insert("_rev".to_owned(), Value::String(edge.rev.to_string()));
            let reference = json!({
                "_ref": format!("{}/{}", edge.collection, edge.target_id),
                "_refProperties": properties,
            });
            let held = references.entry((object_type.to_owned(), edge.owner_id)).or_default();
            match held.iter_mut().find(|(property, _)| *property == edge.property) {
                Some((_, list)) => list.push(reference),
                None => held.push((edge.property, vec![reference])),
            }
        }
    }
    Ok(references)
}

/// Writes the snapshot's objects page by page, then the `end` record; returns how many.
fn write_objects(
    snapshot: &mut Snapshot<'_>,
    out: &mut dyn Write,
    path: &Path,
    counts: &std::collections::BTreeMap<String, i64>,
) -> Result<u64, ExportError> {
    let mut after = 0;
    let mut written = 0u64;
    loop {
        let page = snapshot.objects_after(after, PAGE)?;
        let Some(last) = page.last() else { break };
        after = last.object.pk;
        let mut references = page_references(snapshot, &page)?;
        for item in page {
            let key = (item.object_type, item.object.id);
            let mut object = Map::new();
            object.insert("_id".to_owned(), Value::String(key.1.clone()));
            object.insert("_rev".to_owned(), Value::String(item.object.rev.to_string()));
            object.insert("_meta".to_owned(), Value::Object(item.object.meta));
            object.extend(item.object.content);
            for (property, held) in references.remove(&key).unwrap_or_default() {
                // Inline references an older write left in the content come along.
                let mut all = match object.remove(&property) {
                    Some(Value::Array(inline)) => inline,
                    Some(Value::Null) | None => Vec::new(),
                    Some(single) => vec![single],
                };
                all.extend(held);
                object.insert(property, Value::Array(all));
            }
            let object_type = key.0;
            write_line(
                out,
                &json!({"kind": "object", "type": object_type, "object": object}),
                path,
            )?;
            written += 1;
        }
    }
    write_line(out, &json!({"kind": "end", "objects": written, "counts": counts}), path)?;
    Ok(written)
}
