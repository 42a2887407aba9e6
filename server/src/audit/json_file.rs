//! The JSON file handler: one JSON object a line in `<logDirectory>/<topic>.audit.json`, rotated
//! by size and by age (`fileRotation`) into `<prefix><topic>.audit.json<suffix>`, with the oldest
//! rotated files removed beyond `fileRetention`'s count and disk space.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use crate::config::audit::{JsonFileSettings, Retention};

use super::Event;

/// The open file of each handler and topic.
#[derive(Debug, Default)]
pub(super) struct JsonFiles {
    open: BTreeMap<(String, String), OpenFile>,
}

#[derive(Debug)]
struct OpenFile {
    path: PathBuf,
    writer: BufWriter<File>,
    bytes: u64,
    opened_at_millis: i64,
}

impl OpenFile {
    fn open(path: PathBuf, now_millis: i64) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let bytes = file.metadata()?.len();
        Ok(Self {
            path,
            writer: BufWriter::with_capacity(64 * 1024, file),
            bytes,
            opened_at_millis: now_millis,
        })
    }
}

impl JsonFiles {
    /// Appends `events` to their topics' files under `dir`, rotating first where due.
    pub(super) fn write(
        &mut self,
        handler: &str,
        settings: &JsonFileSettings,
        dir: &Path,
        events: &[&Event<'_>],
        now_millis: i64,
    ) -> std::io::Result<()> {
        let mut topics: Vec<&'static str> = Vec::new();
        for event in events {
            if !topics.contains(&event.topic) {
                topics.push(event.topic);
            }
        }
        for topic in topics {
            let key = (handler.to_owned(), topic.to_owned());
            let path = dir.join(format!("{topic}.audit.json"));
            if self.open.get(&key).is_some_and(|open| open.path != path) {
                self.open.remove(&key);
            }
            let mut open = match self.open.remove(&key) {
                Some(open) => open,
                None => OpenFile::open(path.clone(), now_millis)?,
            };
            for event in events.iter().filter(|event| event.topic == topic) {
                let line_length = event.text.len() as u64 + 1;
                let rotation = &settings.rotation;
                let too_big =
                    rotation.max_file_size > 0 && open.bytes > 0 && open.bytes + line_length > rotation.max_file_size;
                let too_old = rotation.interval.is_some_and(|interval| {
                    now_millis - open.opened_at_millis >= i64::try_from(interval.as_millis()).unwrap_or(i64::MAX)
                });
                if rotation.enabled && (too_big || too_old) {
                    rotate(open, settings, topic, now_millis)?;
                    open = OpenFile::open(path.clone(), now_millis)?;
                }
                open.writer.write_all(event.text.as_bytes())?;
                open.writer.write_all(b"\n")?;
                open.bytes += line_length;
            }
            open.writer.flush()?;
            self.open.insert(key, open);
        }
        Ok(())
    }
}

/// Closes `open`, renames it to its rotated name and applies the retention policy.
fn rotate(open: OpenFile, settings: &JsonFileSettings, topic: &str, now_millis: i64) -> std::io::Result<()> {
    let OpenFile { path, mut writer, .. } = open;
    writer.flush()?;
    drop(writer);
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let stamp = chrono::DateTime::from_timestamp_millis(now_millis)
        .unwrap_or_default()
        .format(&settings.rotation.suffix)
        .to_string();
    let base = format!("{}{topic}.audit.json{stamp}", settings.rotation.prefix);
    // Rotations within one stamp are numbered on from the highest number still on disk, so a
    // name is not reused after retention removed it.
    let taken = std::fs::read_dir(&dir)?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| sequence(&entry.file_name().to_string_lossy(), &base))
        .max();
    let target = match taken {
        None => dir.join(&base),
        Some(highest) => dir.join(format!("{base}.{}", highest + 1)),
    };
    std::fs::rename(&path, &target)?;
    retain(
        &dir,
        &format!("{}{topic}.audit.json", settings.rotation.prefix),
        &path,
        &settings.retention,
    )
}

/// Compares names with runs of digits compared as numbers.
fn natural_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(name: &str) -> Vec<(u128, &str)> {
        let mut out = Vec::new();
        let mut rest = name;
        while !rest.is_empty() {
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            let (chunk, tail) = if digits > 0 {
                rest.split_at(digits)
            } else {
                rest.split_at(rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len()))
            };
            out.push((
                if digits > 0 {
                    chunk.parse().unwrap_or(u128::MAX)
                } else {
                    0
                },
                chunk,
            ));
            rest = tail;
        }
        out
    }
    let (a, b) = (chunks(a), chunks(b));
    for (x, y) in a.iter().zip(&b) {
        let order = x.0.cmp(&y.0).then_with(|| x.1.cmp(y.1));
        if order.is_ne() {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// The number of a rotated file of `base`: 0 for `base` itself, `n` for `base.n`.
fn sequence(name: &str, base: &str) -> Option<u64> {
    match name.strip_prefix(base)? {
        "" => Some(0),
        rest => rest.strip_prefix('.')?.parse().ok(),
    }
}

/// Removes the oldest rotated files of a topic beyond the count and disk space allowed.
fn retain(dir: &Path, rotated_prefix: &str, live: &Path, retention: &Retention) -> std::io::Result<()> {
    if retention.max_files == 0 && retention.max_bytes == 0 {
        return Ok(());
    }
    let mut rotated: Vec<(std::time::SystemTime, String, PathBuf, u64)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path == live || !name.starts_with(rotated_prefix) || name.len() == rotated_prefix.len() {
            continue;
        }
        let metadata = entry.metadata()?;
        rotated.push((metadata.modified()?, name, path, metadata.len()));
    }
    // Newest first (what is kept is a prefix of this list). File times are coarse: within one,
    // the names decide, their numbers compared as numbers (`x.10` after `x.9` after `x`).
    rotated.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| natural_order(&b.1, &a.1)));
    let mut kept_bytes = 0u64;
    for (index, (_, _, path, bytes)) in rotated.iter().enumerate() {
        let over_count = retention.max_files > 0 && index >= retention.max_files;
        let over_space = retention.max_bytes > 0 && kept_bytes + bytes > retention.max_bytes;
        if over_count || over_space {
            std::fs::remove_file(path)?;
        } else {
            kept_bytes += bytes;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::natural_order;
    use std::cmp::Ordering;

    #[test]
    fn rotated_names_order_by_their_numbers() {
        assert_eq!(natural_order("a.json-12.00.59", "a.json-12.00.59.1"), Ordering::Less);
        assert_eq!(natural_order("a.json-12.00.59.9", "a.json-12.00.59.10"), Ordering::Less);
        assert_eq!(natural_order("a.json-12.01.00", "a.json-12.00.59.3"), Ordering::Greater);
    }
}
