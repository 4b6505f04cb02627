//! Routes: host and path patterns to an origin group. Like Front Door, the most specific
//! match wins: an exact host beats a wildcard domain beats `*`; then an exact path beats
//! the longest matching prefix.

use crate::config::RouteConfig;

/// A host pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `*`: any host.
    Any,
    /// `*.example.com`: any subdomain (stored as `.example.com`).
    Suffix(String),
    /// `api.example.com` (lower case).
    Exact(String),
}

impl HostPattern {
    /// Parses a pattern from config.
    pub fn parse(s: &str) -> Result<HostPattern, String> {
        let s = s.trim().to_ascii_lowercase();
        if s == "*" {
            return Ok(HostPattern::Any);
        }
        let valid = |h: &str| {
            !h.is_empty()
                && h.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':' | '[' | ']')
                })
        };
        if let Some(rest) = s.strip_prefix("*.") {
            if valid(rest) {
                return Ok(HostPattern::Suffix(format!(".{rest}")));
            }
        } else if valid(&s) && !s.contains('*') {
            return Ok(HostPattern::Exact(s));
        }
        Err(format!(
            "host pattern {s:?} must be \"*\", \"*.domain\" or a host name"
        ))
    }

    /// Match strength: `None` when not matching; higher is more specific.
    fn score(&self, host: &str) -> Option<usize> {
        match self {
            HostPattern::Any => Some(0),
            HostPattern::Suffix(sfx) => host.ends_with(sfx.as_str()).then(|| 1 + sfx.len()),
            HostPattern::Exact(h) => (h == host).then_some(usize::MAX),
        }
    }
}

/// A path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    /// `/api/*`: the prefix `/api/` (and `/api` itself).
    Prefix(String),
    /// `/exact`.
    Exact(String),
}

impl PathPattern {
    /// Parses a pattern from config.
    pub fn parse(s: &str) -> Result<PathPattern, String> {
        if !s.starts_with('/') {
            return Err(format!("path pattern {s:?} must start with '/'"));
        }
        if let Some(prefix) = s.strip_suffix('*') {
            if prefix.contains('*') {
                return Err(format!(
                    "path pattern {s:?}: '*' is only allowed at the end"
                ));
            }
            return Ok(PathPattern::Prefix(prefix.to_string()));
        }
        if s.contains('*') {
            return Err(format!(
                "path pattern {s:?}: '*' is only allowed at the end"
            ));
        }
        Ok(PathPattern::Exact(s.to_string()))
    }

    fn score(&self, path: &str) -> Option<usize> {
        match self {
            PathPattern::Exact(p) => (p == path).then_some(usize::MAX),
            PathPattern::Prefix(p) => {
                let matches = path.starts_with(p.as_str())
                    // `/api/*` also matches `/api`.
                    || (p.len() > 1 && p.ends_with('/') && path == &p[..p.len() - 1]);
                matches.then_some(p.len())
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Route {
    hosts: Vec<HostPattern>,
    paths: Vec<PathPattern>,
    group: usize,
}

/// All routes, ready to match.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Builds the table; `group_index` maps a group name to its index (validated config:
    /// every name resolves).
    pub fn build(
        routes: &[RouteConfig],
        group_index: impl Fn(&str) -> Option<usize>,
    ) -> RouteTable {
        let routes = routes
            .iter()
            .filter_map(|r| {
                Some(Route {
                    hosts: r
                        .hosts
                        .iter()
                        .filter_map(|h| HostPattern::parse(h).ok())
                        .collect(),
                    paths: r
                        .paths
                        .iter()
                        .filter_map(|p| PathPattern::parse(p).ok())
                        .collect(),
                    group: group_index(&r.origin_group)?,
                })
            })
            .collect();
        RouteTable { routes }
    }

    /// The origin group for a request's host (port and case ignored) and path.
    pub fn find(&self, host: &str, path: &str) -> Option<usize> {
        let host = strip_port(host).to_ascii_lowercase();
        let mut best: Option<((usize, usize), usize)> = None;
        for r in &self.routes {
            let Some(h) = r.hosts.iter().filter_map(|p| p.score(&host)).max() else {
                continue;
            };
            let Some(p) = r.paths.iter().filter_map(|p| p.score(path)).max() else {
                continue;
            };
            // Ties keep the route listed first.
            if best.is_none_or(|(score, _)| (h, p) > score) {
                best = Some(((h, p), r.group));
            }
        }
        best.map(|(_, g)| g)
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: &[(&[&str], &[&str], usize)]) -> RouteTable {
        let cfgs: Vec<RouteConfig> = routes
            .iter()
            .map(|(h, p, g)| RouteConfig {
                hosts: h.iter().map(|s| s.to_string()).collect(),
                paths: p.iter().map(|s| s.to_string()).collect(),
                origin_group: g.to_string(),
            })
            .collect();
        RouteTable::build(&cfgs, |n| n.parse().ok())
    }

    #[test]
    fn catch_all_matches_everything() {
        let t = table(&[(&["*"], &["/*"], 0)]);
        assert_eq!(t.find("example.com:8080", "/x/y"), Some(0));
        assert_eq!(t.find("", "/"), Some(0));
    }

    #[test]
    fn most_specific_host_then_longest_path_wins() {
        let t = table(&[
            (&["*"], &["/*"], 0),
            (&["*.example.com"], &["/*"], 1),
            (&["api.example.com"], &["/*"], 2),
            (&["api.example.com"], &["/v2/*"], 3),
            (&["api.example.com"], &["/health"], 4),
        ]);
        assert_eq!(t.find("other.org", "/"), Some(0));
        assert_eq!(t.find("www.example.com", "/"), Some(1));
        assert_eq!(t.find("API.example.com:443", "/v1/x"), Some(2));
        assert_eq!(t.find("api.example.com", "/v2/x"), Some(3));
        assert_eq!(t.find("api.example.com", "/v2"), Some(3));
        assert_eq!(t.find("api.example.com", "/health"), Some(4));
        assert_eq!(t.find("api.example.com", "/healthz"), Some(2));
    }

    #[test]
    fn no_match_is_none() {
        let t = table(&[(&["a.example"], &["/api/*"], 0)]);
        assert_eq!(t.find("b.example", "/api/x"), None);
        assert_eq!(t.find("a.example", "/other"), None);
        assert_eq!(t.find("a.example", "/api/x"), Some(0));
    }

    #[test]
    fn bad_patterns_are_rejected() {
        assert!(PathPattern::parse("api/*").is_err());
        assert!(PathPattern::parse("/a*/b").is_err());
        assert!(HostPattern::parse("a.*.com").is_err());
        assert!(HostPattern::parse("").is_err());
    }
}
