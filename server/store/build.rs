//! Rebuilds the crate when a migration is added or changed: `embed_migrations!` reads the
//! migration directories at compile time, which cargo does not track on its own.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
