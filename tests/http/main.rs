//! ferridm's black-box HTTP tests: one binary, a module per area. Every test starts its own
//! server (own conf copy, own database) and talks to it over HTTP.
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod access;
mod api_document;
mod audit;
mod auth;
mod bad_input;
mod clients;
mod completeness;
mod concurrency;
mod config_queries;
mod crest;
mod crud;
mod durability;
mod generations;
mod hardening;
mod health;
mod idm_hashes;
mod index_limits;
mod index_rules;
mod limits;
mod metrics;
mod migration_check;
mod multinode;
mod paging;
mod policies;
mod profile;
mod queries;
mod query_budget;
mod recovery;
mod registration;
mod relationships;
mod reload;
mod roles;
mod sandbox;
mod script_limits;
mod seeds;
mod social;
mod stages;
mod transfer;
