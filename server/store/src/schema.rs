//! Diesel's view of the tables (portable types only; the DDL is in `migrations/`).

diesel::table! {
    objects (pk) {
        pk -> BigInt,
        otype -> Text,
        oid -> Text,
        rev -> BigInt,
        content -> Text,
        meta -> Text,
        login_count -> BigInt,
        meta_rev -> BigInt,
    }
}

diesel::table! {
    login_failures (principal) {
        principal -> Text,
        failures -> BigInt,
        window_start -> BigInt,
        locked_until -> BigInt,
        recent -> Text,
    }
}

diesel::table! {
    store_settings (name) {
        name -> Text,
        value -> Text,
    }
}

diesel::table! {
    selfservice_flows (flow) {
        flow -> Text,
        step -> BigInt,
        expires -> BigInt,
    }
}

diesel::table! {
    rate_counters (bucket) {
        bucket -> Text,
        window_start -> BigInt,
        hits -> BigInt,
    }
}

diesel::table! {
    session_epochs (principal) {
        principal -> Text,
        epoch -> BigInt,
    }
}
