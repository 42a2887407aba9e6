//! Moving data in and out of ferridm: [`export`] writes every managed object (ids, revisions,
//! metadata, relationships and secrets as stored) from one snapshot, plus the conf directory
//! and scripts; [`import`] reads such an export, or the objects an IDM query returns, validates
//! every object as a create would, and writes them in checkpointed batches only when all pass.
//!
//! An export is JSON lines: a `header` record, `file` records (conf and scripts; in a directory
//! export they are files beside `objects.jsonl` instead), one `object` record per object and an
//! `end` record with the counts, which tells a complete export from a cut-off one.

pub mod export;
pub mod import;

/// The `format` of an export's header record.
pub const EXPORT_FORMAT: &str = "ferridm-export";
/// The version of the export format.
pub const EXPORT_VERSION: u64 = 1;
/// The file holding the records in a directory export.
pub const OBJECTS_FILE: &str = "objects.jsonl";
