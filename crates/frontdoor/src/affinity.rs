//! Session affinity: a cookie pins a client to the origin that first answered it, while
//! that origin stays healthy; when it fails the client moves and gets a new cookie.

use http::{header, HeaderMap, HeaderValue};

/// The cookie's name.
pub(crate) const COOKIE: &str = "geoha_affinity";

/// The affinity cookie's value in a request, if any.
pub(crate) fn from_request(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
}

/// The `Set-Cookie` header that pins a client to the origin with this affinity id.
pub(crate) fn set_cookie(id: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax"))
        .unwrap_or_else(|_| HeaderValue::from_static("geoha_affinity=; Path=/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cookie_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; geoha_affinity=abc ; b=2"),
        );
        assert_eq!(from_request(&h), Some("abc"));
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::COOKIE, HeaderValue::from_static("geoha_affinity=x"));
        assert_eq!(from_request(&h), Some("x"));
        assert_eq!(from_request(&HeaderMap::new()), None);
    }
}
