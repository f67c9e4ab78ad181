//! Per-data-type cache configuration: seed 002's `CacheConfig` table as [`CacheProfile`]s.

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
/// The named constructors are seed 002's data types with its TTLs, layers and refresh
/// thresholds. The seed's CDN and database-query layers are not caches this process holds, so
/// they are dropped from the layer lists; its `compression: true` becomes a threshold of
/// [`DEFAULT_COMPRESS_OVER_BYTES`], and it sets no entry size limit, so the limits here are
/// chosen per type (sessions and flags are small, analytics and static content large).
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

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

impl CacheProfile {
    /// Seed `user_session`: 30 minutes, L1 + L2, uncompressed, refresh at 0.9.
    pub fn user_session() -> Self {
        Self {
            ttl: Duration::from_secs(1800),
            layers: Layers::L1_AND_L2,
            compress_over_bytes: None,
            max_entry_bytes: 64 * KIB,
            refresh_ahead_fraction: 0.9,
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
            _ => return None,
        })
    }

    /// The names [`CacheProfile::named`] knows.
    pub const NAMES: [&'static str; 7] = [
        "user_session",
        "feature_flags",
        "api_response",
        "database_query",
        "trading_data",
        "analytics",
        "static_content",
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
