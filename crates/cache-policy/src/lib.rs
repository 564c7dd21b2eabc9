//! A sans-IO implementation of RFC 9111, HTTP Caching.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod stored;
mod vary;

pub use stored::StoredResponse;
