//! Schema migrations for the conductor's store: ordered steps `vN -> vN+1`,
//! each a tested function run by the store at open inside one transaction,
//! with the frozen record types of every released schema and fixture
//! databases written by each. Not yet filled: it arrives with the store.

#![forbid(unsafe_code)]
