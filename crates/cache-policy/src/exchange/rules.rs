//! The rules an exchange follows: the policy as configured, and its variants for the cache
//! modes that bend it.

use std::time::Duration;

use crate::directives::DELTA_SECONDS_MAX;
use crate::{CacheMode, CachePolicy, PolicyOptions, ServeStale};

/// The policy of one cache, and the variants of it that the [`CacheMode`]s use: built once,
/// shared by every [`Exchange`](crate::Exchange).
///
/// ```
/// use cache_policy::{CacheRules, PolicyOptions};
///
/// let rules = CacheRules::new(PolicyOptions::default().shared(true)).max_body_size(Some(1 << 20));
/// assert!(rules.policy().options().shared);
/// ```
#[derive(Debug, Clone)]
pub struct CacheRules {
    /// RFC 9111 as configured.
    policy: CachePolicy,
    /// The same, revalidating every reuse ([`CacheMode::NoCache`]).
    revalidating: CachePolicy,
    /// The same, ignoring the rules ([`CacheMode::IgnoreRules`]).
    ignoring: CachePolicy,
    /// Reuses anything stored, however stale ([`CacheMode::ForceCache`],
    /// [`CacheMode::OnlyIfCached`]).
    forcing: CachePolicy,
    max_body_size: Option<u64>,
}

impl CacheRules {
    /// The rules for a cache with these policy options, without a body size limit.
    pub fn new(options: PolicyOptions) -> Self {
        let forever = Duration::from_secs(DELTA_SECONDS_MAX);
        let forcing = options.clone().ignore_rules(true).serve_stale(ServeStale {
            use_directives: false,
            default_stale_while_revalidate: forever,
            default_stale_if_error: forever,
        });
        CacheRules {
            revalidating: CachePolicy::new(options.clone().always_revalidate(true)),
            ignoring: CachePolicy::new(options.clone().ignore_rules(true)),
            forcing: CachePolicy::new(forcing),
            policy: CachePolicy::new(options),
            max_body_size: None,
        }
    }

    /// Responses whose `Content-Length` announces more than this many bytes are not stored.
    /// (A store enforces the limit on bodies without one, as they stream.)
    pub fn max_body_size(mut self, limit: Option<u64>) -> Self {
        self.max_body_size = limit;
        self
    }

    /// The body size limit, if any.
    pub fn body_size_limit(&self) -> Option<u64> {
        self.max_body_size
    }

    /// The policy as configured, which [`CacheMode::Default`] follows.
    pub fn policy(&self) -> &CachePolicy {
        &self.policy
    }

    /// The policy that chooses among stored responses under `mode`.
    pub(crate) fn lookup_policy(&self, mode: CacheMode) -> &CachePolicy {
        match mode {
            CacheMode::NoCache => &self.revalidating,
            CacheMode::ForceCache | CacheMode::OnlyIfCached => &self.forcing,
            CacheMode::IgnoreRules => &self.ignoring,
            _ => &self.policy,
        }
    }

    /// The policy that decides what to store, and what to serve when the origin fails, under
    /// `mode`: forcing modes store by the usual rules.
    pub(crate) fn storing_policy(&self, mode: CacheMode) -> &CachePolicy {
        match mode {
            CacheMode::IgnoreRules => &self.ignoring,
            _ => &self.policy,
        }
    }
}

impl Default for CacheRules {
    fn default() -> Self {
        CacheRules::new(PolicyOptions::default())
    }
}
