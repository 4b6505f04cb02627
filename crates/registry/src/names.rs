//! Repository names, tags and upload ids, validated against the distribution spec's
//! grammars. A value of these types is safe to join onto a storage path: no `..`, no
//! absolute paths, no component starting with `_` (reserved for the store's own dirs).

use std::fmt;

/// A repository name: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`,
/// at most 255 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct RepoName(String);

impl RepoName {
    /// Validates a name.
    pub(crate) fn parse(s: &str) -> Option<RepoName> {
        if s.is_empty() || s.len() > 255 {
            return None;
        }
        s.split('/')
            .all(valid_component)
            .then(|| RepoName(s.to_owned()))
    }

    /// The name.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// One path component: alphanumeric runs joined by `.`, `_`, `__` or `-+`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub(crate) fn valid_tag(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'.' | b'_' | b'-'))
}

/// An upload session id: 32 lowercase hex characters, generated here.
pub(crate) fn valid_upload_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub(crate) fn new_upload_id() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "library/ubuntu", "a.b_c__d---e/f0", "x/y/z"] {
            assert!(RepoName::parse(ok).is_some(), "{ok}");
        }
        for bad in [
            "", "A", "../x", "a/../b", "/a", "a/", "a//b", "_x", "a/_tags", "a..b", "a___b", "a-",
            ".a",
        ] {
            assert!(RepoName::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn tags_and_ids() {
        assert!(valid_tag("v1.0_rc-1") && valid_tag("_x") && valid_tag("latest"));
        assert!(
            !valid_tag("..")
                && !valid_tag(".x")
                && !valid_tag("a/b")
                && !valid_tag(&"a".repeat(129))
        );
        assert!(valid_upload_id(&new_upload_id()));
        assert!(!valid_upload_id("../../../../etc/passwd/aaaaaaaaaaa"));
    }
}
