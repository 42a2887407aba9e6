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
