//! The conductor's durable state: one redb file holding apps, specs per
//! generation, placements, rollouts, operator and node keys, the hash-chained
//! audit log, seen nonces and meta (schema version, cluster id). It is the
//! only crate that touches the database file, and its API speaks in domain
//! operations so no caller can commit a state change without its audit
//! entry. Not yet filled: the store issue builds it on `skr8tr-migrations`.

#![forbid(unsafe_code)]
