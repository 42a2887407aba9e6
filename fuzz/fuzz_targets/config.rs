//! The config loaders: every conf file is read, parsed and checked by `generation::load`, which
//! also checks a configuration sent to `PUT /openidm/config/<id>` before it is written.
//!
//! Input: a byte choosing the conf file (one of the shipped ones, `ferridm.json` or
//! `external.email.json`), then the file's bytes. The other files are the shipped configuration
//! (conf/ and scripts/ of the repository, copied once). Asserts, besides "no panic, no hang": a
//! file that is not JSON text is refused with an error naming it, and a refused configuration
//! always carries at least one error with a message.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use ferridm::config::ConfigPaths;
use ferridm::generation;
use libfuzzer_sys::fuzz_target;

/// The conf files the first byte chooses from.
const FILES: &[&str] = &[
    "access.json",
    "audit.json",
    "auth.profile.json",
    "authentication.json",
    "boot.json",
    "consent.json",
    "managed.json",
    "policy.json",
    "selfservice-profile.json",
    "selfservice-registration.json",
    "selfservice-reset.json",
    "selfservice-username.json",
    "selfservice.kba.json",
    "selfservice.terms.json",
    "ui-configuration.json",
    "ui-dashboard.json",
    "ferridm.json",
    "external.email.json",
];

/// A project directory holding a copy of the shipped conf/ and scripts/.
struct Project {
    _dir: tempfile::TempDir,
    paths: ConfigPaths,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|error| panic!("creating {}: {error}", to.display()));
    let entries = std::fs::read_dir(from).unwrap_or_else(|error| panic!("reading {}: {error}", from.display()));
    for entry in entries.flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|error| panic!("copying to {}: {error}", target.display()));
        }
    }
}

static PROJECT: LazyLock<Project> = LazyLock::new(|| {
    let repository = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("creating a temporary directory: {error}"));
    copy_dir(&repository.join("conf"), &dir.path().join("conf"));
    copy_dir(&repository.join("scripts"), &dir.path().join("scripts"));
    let paths = ConfigPaths::new(dir.path().join("conf"));
    Project { _dir: dir, paths }
});

fuzz_target!(|data: &[u8]| {
    let Some((&choice, contents)) = data.split_first() else {
        return;
    };
    let name = FILES[usize::from(choice) % FILES.len()];
    let path = PROJECT.paths.conf_dir.join(name);
    let shipped = std::fs::read(&path).ok();
    std::fs::write(&path, contents).unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
    let loaded = generation::load(&PROJECT.paths, 1);
    match &shipped {
        Some(shipped) => std::fs::write(&path, shipped),
        None => std::fs::remove_file(&path),
    }
    .unwrap_or_else(|error| panic!("restoring {}: {error}", path.display()));
    match loaded {
        Ok(_) => assert!(
            serde_json::from_slice::<serde_json::Value>(contents).is_ok(),
            "{name} is not JSON but was accepted"
        ),
        Err(errors) => {
            assert!(!errors.is_empty(), "refused without an error");
            assert!(errors.iter().all(|error| !error.message.is_empty()), "{errors:?}");
            if serde_json::from_slice::<serde_json::Value>(contents).is_err() {
                let named = format!("conf/{name}");
                assert!(
                    errors.iter().any(|error| error.file == named),
                    "{name} not named in {errors:?}"
                );
            }
        }
    }
});
