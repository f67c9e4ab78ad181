//! Per-data-type cache configuration: the `CacheConfig` tables of seed 002 (general data types)
//! and seed 003 (chatbot data types) as [`CacheProfile`]s.

use std::time::Duration;

use crate::CacheError;

/// Which layers a data type is kept in.
///
/// A read looks in L1, then L2, then calls the loader; a value found lower down is copied into
/// the layers above it that the profile names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layers {
    /// The in-process moka cache: fastest, private to this process.
    pub l1: bool,
    /// Redis: shared by every replica, survives a restart of this process.
    pub l2: bool,
}

impl Layers {
    /// In-process memory only.
    pub const L1_ONLY: Layers = Layers {
        l1: true,
        l2: false,
    };
    /// Redis only (large or rarely read values that are not worth process memory).
    pub const L2_ONLY: Layers = Layers {
        l1: false,
        l2: true,
    };
    /// Memory in front of Redis.
    pub const L1_AND_L2: Layers = Layers { l1: true, l2: true };
}

/// How one data type is cached.
///
/// The named constructors are seed 002's and seed 003's data types. Seed 002's come with its
/// TTLs, layers and refresh thresholds. The seed's CDN and database-query layers are not caches this process holds, so
/// they are dropped from the layer lists; its `compression: true` becomes a threshold of
/// [`DEFAULT_COMPRESS_OVER_BYTES`], and it sets no entry size limit, so the limits here are
/// chosen per type (sessions and flags are small, analytics and static content large).
///
/// Seed 003's (`conversation_context`, `model_response`, `tenant_config`,
/// `integration_config`, `analytics_data`, and `user_session`, which both seeds name) come with
/// its TTLs, entry size caps (`max_size_mb`, read as MiB) and compression thresholds
/// (`compression_threshold_kb`, 100 KiB unless the type says otherwise, read as KiB). The seed
/// keeps every type in its local cache and in Redis, so they use [`Layers::L1_AND_L2`]; it has
/// no refresh-ahead, so they do not refresh ahead (an analytics query or a model call is not
/// something to re-run in the background on a guess).
///
/// ```
/// use cache::CacheProfile;
/// use std::time::Duration;
///
/// let p = CacheProfile::named("model_response").unwrap();
/// assert_eq!(p.ttl, Duration::from_secs(7200));
/// assert_eq!(p.max_entry_bytes, 5 * 1024 * 1024);
/// assert_eq!(p.compress_over_bytes, Some(50 * 1024));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CacheProfile {
    /// How long a value lives after it was loaded, in every layer.
    pub ttl: Duration,
    /// The layers the value is kept in.
    pub layers: Layers,
    /// Values longer than this are stored compressed (gzip) in Redis; `None` never compresses.
    /// L1 always holds values uncompressed, because it is read far more often than written.
    pub compress_over_bytes: Option<usize>,
    /// Values longer than this (uncompressed) are returned to the caller but not cached, and
    /// counted in [`crate::CacheStats::oversize`].
    pub max_entry_bytes: usize,
    /// A read in the last `refresh_ahead_fraction` of a value's TTL starts one background
    /// reload while the old value is served (seed: "refresh when TTL < threshold * original
    /// TTL"). 0 turns refresh-ahead off; 1 refreshes on the first read after every load.
    pub refresh_ahead_fraction: f64,
}

/// The compression threshold given to the seed's `compression: true` types.
pub const DEFAULT_COMPRESS_OVER_BYTES: usize = 1024;

/// Seed 003's compression threshold for types that compress without naming one
/// (`compression_threshold_kb: float = 100`).
pub const SEED_003_COMPRESS_OVER_BYTES: usize = 100 * KIB;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

impl CacheProfile {
    /// Seeds 002 and 003 `user_session`: 30 minutes, L1 + L2, uncompressed, at most 512 KiB
    /// (seed 003's 0.5 MB; seed 002 sets no limit), refresh at 0.9 (seed 002; seed 003 has no
    /// refresh-ahead at all, and the two agree on everything else).
    pub fn user_session() -> Self {
        Self {
            ttl: Duration::from_secs(1800),
            layers: Layers::L1_AND_L2,
            compress_over_bytes: None,
            max_entry_bytes: 512 * KIB,
            refresh_ahead_fraction: 0.9,
        }
    }

    /// Seed 003 `conversation_context`: 1 hour, L1 + L2, at most 2 MiB, compressed over
    /// 100 KiB, no refresh-ahead.
    pub fn conversation_context() -> Self {
        Self::seed_003(3600, 2 * MIB, Some(SEED_003_COMPRESS_OVER_BYTES))
    }

    /// Seed 003 `model_response`: 2 hours, L1 + L2, at most 5 MiB, compressed over 50 KiB, no
    /// refresh-ahead.
    pub fn model_response() -> Self {
        Self::seed_003(7200, 5 * MIB, Some(50 * KIB))
    }

    /// Seed 003 `tenant_config`: 5 minutes, L1 + L2, at most 1 MiB, uncompressed, no
    /// refresh-ahead.
    pub fn tenant_config() -> Self {
        Self::seed_003(300, MIB, None)
    }

    /// Seed 003 `integration_config`: 10 minutes, L1 + L2, at most 1 MiB, uncompressed, no
    /// refresh-ahead.
    pub fn integration_config() -> Self {
        Self::seed_003(600, MIB, None)
    }

    /// Seed 003 `analytics_data`: 15 minutes, L1 + L2, at most 10 MiB, compressed over
    /// 100 KiB, no refresh-ahead. The server's usage and analytics response cache uses it.
    pub fn analytics_data() -> Self {
        Self::seed_003(900, 10 * MIB, Some(SEED_003_COMPRESS_OVER_BYTES))
    }

    /// Seed 003's shape: both layers, no refresh-ahead.
    fn seed_003(ttl_secs: u64, max_entry_bytes: usize, compress_over_bytes: Option<usize>) -> Self {
        Self {
            ttl: Duration::from_secs(ttl_secs),
            layers: Layers::L1_AND_L2,
            compress_over_bytes,
            max_entry_bytes,
            refresh_ahead_fraction: 0.0,
        }
    }

    /// Seed `feature_flags`: 5 minutes, L1 + L2, uncompressed, refresh at 0.8.
    pub fn feature_flags() -> Self {
        Self {
            ttl: Duration::from_secs(300),
            layers: Layers::L1_AND_L2,
            compress_over_bytes: None,
            max_entry_bytes: 256 * KIB,
            refresh_ahead_fraction: 0.8,
        }
    }

    /// Seed `api_response`: 1 hour, L2 (the seed's CDN layer is HTTP caching, not this
    /// crate), compressed, refresh at 0.7.
    pub fn api_response() -> Self {
        Self {
            ttl: Duration::from_secs(3600),
            layers: Layers::L2_ONLY,
            compress_over_bytes: Some(DEFAULT_COMPRESS_OVER_BYTES),
            max_entry_bytes: MIB,
            refresh_ahead_fraction: 0.7,
        }
    }

    /// Seed `database_query`: 30 minutes, L2, compressed, refresh at 0.6.
    pub fn database_query() -> Self {
        Self {
            ttl: Duration::from_secs(1800),
            layers: Layers::L2_ONLY,
            compress_over_bytes: Some(DEFAULT_COMPRESS_OVER_BYTES),
            max_entry_bytes: MIB,
            refresh_ahead_fraction: 0.6,
        }
    }

    /// Seed `trading_data`: 1 minute, L1 + L2, uncompressed, refresh at 0.9.
    pub fn trading_data() -> Self {
        Self {
            ttl: Duration::from_secs(60),
            layers: Layers::L1_AND_L2,
            compress_over_bytes: None,
            max_entry_bytes: 64 * KIB,
            refresh_ahead_fraction: 0.9,
        }
    }

    /// Seed `analytics`: 2 hours, L2, compressed, refresh at 0.5.
    pub fn analytics() -> Self {
        Self {
            ttl: Duration::from_secs(7200),
            layers: Layers::L2_ONLY,
            compress_over_bytes: Some(DEFAULT_COMPRESS_OVER_BYTES),
            max_entry_bytes: 4 * MIB,
            refresh_ahead_fraction: 0.5,
        }
    }

    /// Seed `static_content`: 24 hours, L2 (CDN dropped), compressed, refresh at 0.3.
    pub fn static_content() -> Self {
        Self {
            ttl: Duration::from_secs(86_400),
            layers: Layers::L2_ONLY,
            compress_over_bytes: Some(DEFAULT_COMPRESS_OVER_BYTES),
            max_entry_bytes: 4 * MIB,
            refresh_ahead_fraction: 0.3,
        }
    }

    /// The seed's data types by their seed names, for configuration files.
    pub fn named(name: &str) -> Option<Self> {
        Some(match name {
            "user_session" => Self::user_session(),
            "feature_flags" => Self::feature_flags(),
            "api_response" => Self::api_response(),
            "database_query" => Self::database_query(),
            "trading_data" => Self::trading_data(),
            "analytics" => Self::analytics(),
            "static_content" => Self::static_content(),
            "conversation_context" => Self::conversation_context(),
            "model_response" => Self::model_response(),
            "tenant_config" => Self::tenant_config(),
            "integration_config" => Self::integration_config(),
            "analytics_data" => Self::analytics_data(),
            _ => return None,
        })
    }

    /// The names [`CacheProfile::named`] knows.
    pub const NAMES: [&'static str; 12] = [
        "user_session",
        "feature_flags",
        "api_response",
        "database_query",
        "trading_data",
        "analytics",
        "static_content",
        "conversation_context",
        "model_response",
        "tenant_config",
        "integration_config",
        "analytics_data",
    ];

    /// Checks the fields, naming the first bad one.
    pub fn validate(&self) -> Result<(), CacheError> {
        let bad = |field, reason| Err(CacheError::InvalidProfile { field, reason });
        // Redis `PX` takes whole milliseconds, and 0 would mean "already expired".
        if self.ttl < Duration::from_millis(1) {
            return bad("ttl", "must be at least 1 ms");
        }
        if !self.layers.l1 && !self.layers.l2 {
            return bad("layers", "must name at least one layer");
        }
        if self.max_entry_bytes == 0 {
            return bad("max_entry_bytes", "must be positive");
        }
        if !(0.0..=1.0).contains(&self.refresh_ahead_fraction) {
            return bad("refresh_ahead_fraction", "must be between 0 and 1");
        }
        Ok(())
    }

    /// How long before expiry a read starts a background reload.
    pub(crate) fn refresh_window(&self) -> Duration {
        self.ttl.mul_f64(self.refresh_ahead_fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_profile_is_valid_and_found_by_name() {
        for name in CacheProfile::NAMES {
            let profile = CacheProfile::named(name).unwrap();
            profile.validate().unwrap();
        }
        assert_eq!(CacheProfile::named("nope"), None);
        assert_eq!(
            CacheProfile::named("trading_data").unwrap().ttl,
            Duration::from_secs(60)
        );
    }

    #[test]
    fn validate_names_the_bad_field() {
        let mut p = CacheProfile::feature_flags();
        p.refresh_ahead_fraction = 1.5;
        let err = p.validate().unwrap_err();
        assert!(err.to_string().contains("refresh_ahead_fraction"), "{err}");

        let mut p = CacheProfile::feature_flags();
        p.ttl = Duration::ZERO;
        assert!(p.validate().unwrap_err().to_string().contains("ttl"));

        let mut p = CacheProfile::feature_flags();
        p.layers = Layers {
            l1: false,
            l2: false,
        };
        assert!(p.validate().unwrap_err().to_string().contains("layers"));

        let mut p = CacheProfile::feature_flags();
        p.max_entry_bytes = 0;
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_entry_bytes"));
    }

    #[test]
    fn refresh_window_is_the_fraction_of_the_ttl() {
        let mut p = CacheProfile::trading_data();
        assert_eq!(p.refresh_window(), Duration::from_secs(54));
        p.refresh_ahead_fraction = 0.0;
        assert_eq!(p.refresh_window(), Duration::ZERO);
    }
}
