//! Path globs: `*` matches any run of characters (slashes included), everything else matches
//! itself.

/// A refused glob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// The pattern does not start with `/`.
    #[error("a path pattern starts with '/'")]
    NotAbsolute,
    /// The pattern is longer than [`MAX_GLOB_LEN`].
    #[error("a path pattern is at most {MAX_GLOB_LEN} bytes")]
    TooLong,
}

/// The longest pattern accepted.
pub const MAX_GLOB_LEN: usize = 256;

/// A validated path glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
}

impl Glob {
    /// Validates `pattern`.
    pub fn new(pattern: &str) -> Result<Self, GlobError> {
        if !pattern.starts_with('/') {
            return Err(GlobError::NotAbsolute);
        }
        if pattern.len() > MAX_GLOB_LEN {
            return Err(GlobError::TooLong);
        }
        Ok(Self {
            pattern: pattern.to_owned(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the pattern has no `*`.
    pub fn is_exact(&self) -> bool {
        !self.pattern.contains('*')
    }

    /// Whether `path` matches. Linear in `pattern × path` at worst (the usual backtracking over
    /// the last `*` only), so a hostile path cannot make it exponential.
    pub fn matches(&self, path: &str) -> bool {
        let (p, s) = (self.pattern.as_bytes(), path.as_bytes());
        let (mut pi, mut si) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, si));
                pi += 1;
            } else if pi < p.len() && p[pi] == s[si] {
                pi += 1;
                si += 1;
            } else if let Some((star_pi, star_si)) = star {
                pi = star_pi + 1;
                si = star_si + 1;
                star = Some((star_pi, star_si + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&b| b == b'*')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_matches_any_run() {
        let g = Glob::new("/api/v1/analytics/*").unwrap();
        assert!(g.matches("/api/v1/analytics/performance"));
        assert!(g.matches("/api/v1/analytics/a/b"));
        assert!(g.matches("/api/v1/analytics/"));
        assert!(!g.matches("/api/v1/analytics"));
        assert!(!g.matches("/api/v1/reports/x"));
        let g = Glob::new("/a/*/c").unwrap();
        assert!(g.matches("/a/b/c"));
        assert!(g.matches("/a/b/x/c"));
        assert!(!g.matches("/a/b/cd"));
        assert!(Glob::new("/exact").unwrap().matches("/exact"));
        assert!(!Glob::new("/exact").unwrap().matches("/exact/"));
    }

    #[test]
    fn refuses_relative_and_long() {
        assert_eq!(Glob::new("api/*"), Err(GlobError::NotAbsolute));
        assert_eq!(
            Glob::new(&format!("/{}", "a".repeat(300))),
            Err(GlobError::TooLong)
        );
    }
}
