//! RFC 9111 conformance suite for `cache-policy`: one module per section, table-driven where a
//! rule has several cases. Every test name cites the section it checks. Times are explicit
//! (`helpers::at`), nothing reads a clock and nothing sleeps.

// Tables of tuples read better inline than behind type aliases; decisions are returned in
// `Err` so that a test can show the unexpected one.
#![allow(clippy::type_complexity, clippy::result_large_err)]

mod helpers;

mod options;
mod regressions;
mod s3_headers;
mod s3_storing;
mod s4_1_vary;
mod s4_2_3_age;
mod s4_2_4_stale;
mod s4_2_freshness;
mod s4_3_validation;
mod s4_4_invalidation;
mod s5_2_directives;
mod s7_security;
