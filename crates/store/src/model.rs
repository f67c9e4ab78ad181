//! The records the store keeps about tenants and their API keys.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A tenant's subscription tier. Later engines read it for quotas and feature gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Free,
    Starter,
    Professional,
    Business,
    Enterprise,
}

impl Tier {
    /// Every tier, cheapest first.
    pub const ALL: [Tier; 5] = [
        Tier::Free,
        Tier::Starter,
        Tier::Professional,
        Tier::Business,
        Tier::Enterprise,
    ];

    /// The lowercase name used on the wire, in the CLI and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Starter => "starter",
            Tier::Professional => "professional",
            Tier::Business => "business",
            Tier::Enterprise => "enterprise",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a string that names no tier or scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} '{given}' (expected one of: {expected})")]
pub struct ParseNameError {
    kind: &'static str,
    given: String,
    expected: &'static str,
}

impl FromStr for Tier {
    type Err = ParseNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| ParseNameError {
                kind: "tier",
                given: s.to_owned(),
                expected: "free, starter, professional, business, enterprise",
            })
    }
}

/// What an API key may do. `admin` implies every other scope but `read_clear`; `write` does not
/// imply `read`. `assert_user` lets a key name the user it acts for in `X-User-Id` (a backend
/// serving many users); from other keys the header is ignored. `read_clear` lets a key read
/// feedback text in clear (`GET /api/v1/feedback/{id}/text`, audited): a grant of its own, so
/// that managing a tenant never implies reading what its users wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Read,
    Write,
    Admin,
    AssertUser,
    ReadClear,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::Read,
        Scope::Write,
        Scope::Admin,
        Scope::AssertUser,
        Scope::ReadClear,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
            Scope::AssertUser => "assert_user",
            Scope::ReadClear => "read_clear",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Scope::Read => 1,
            Scope::Write => 2,
            Scope::Admin => 4,
            Scope::AssertUser => 8,
            Scope::ReadClear => 16,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = ParseNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| ParseNameError {
                kind: "scope",
                given: s.to_owned(),
                expected: "read, write, admin, assert_user, read_clear",
            })
    }
}

/// A set of [`Scope`]s held by one key.
///
/// ```
/// use store::{Scope, Scopes};
/// let scopes: Scopes = "read,write".parse().unwrap();
/// assert!(scopes.allows(Scope::Write));
/// assert!(!scopes.allows(Scope::Admin));
/// assert!(Scopes::from_iter([Scope::Admin]).allows(Scope::Read));
/// assert_eq!(scopes.to_string(), "read,write");
/// assert!(!Scopes::from_iter([Scope::Admin]).allows(Scope::ReadClear));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Scopes(u8);

impl Scopes {
    /// Whether a key with these scopes may perform an action that needs `needed`. Admin
    /// allows everything but [`Scope::ReadClear`], which only a key holding it allows.
    pub fn allows(self, needed: Scope) -> bool {
        self.0 & needed.bit() != 0
            || (needed != Scope::ReadClear && self.0 & Scope::Admin.bit() != 0)
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every scope in `other` is allowed by `self` (a key may only mint keys it could use itself).
    pub fn covers(self, other: Scopes) -> bool {
        other.iter().all(|s| self.allows(s))
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Scopes(iter.into_iter().fold(0, |acc, s| acc | s.bit()))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for scope in self.iter() {
            if !first {
                f.write_str(",")?;
            }
            f.write_str(scope.as_str())?;
            first = false;
        }
        Ok(())
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({self})")
    }
}

impl FromStr for Scopes {
    type Err = ParseNameError;

    /// Parses a comma-separated list such as `read,write`. Blank items are ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(Scope::from_str)
            .collect()
    }
}

impl Serialize for Scopes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Scopes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Vec::<Scope>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

/// A tenant: the unit of isolation. Every other record belongs to exactly one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub tier: Tier,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// What the store tells about an API key. The secret itself is never stored, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyInfo {
    pub id: String,
    pub tenant_id: String,
    /// The first characters of the secret, enough for a person to tell keys apart.
    pub prefix: String,
    pub scopes: Scopes,
    pub label: Option<String>,
    /// The user this key acts as (rate limits key its requests by this user), if bound.
    pub user_id: Option<String>,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// What a new key holds: see [`crate::Store::issue_key`].
#[derive(Debug, Clone, Default)]
pub struct NewKey<'a> {
    pub scopes: Scopes,
    pub label: Option<&'a str>,
    /// Bind the key to one user (1-128 visible ASCII characters, as `X-User-Id`).
    pub user_id: Option<&'a str>,
}

/// A freshly minted key: the only moment the secret exists outside its holder's hands.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub info: ApiKeyInfo,
    pub secret: String,
}

/// Who is calling: the tenant and the key they authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: Tenant,
    pub key_id: String,
    pub scopes: Scopes,
    /// The user the key is bound to, if any.
    pub user_id: Option<String>,
}
