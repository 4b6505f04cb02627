//! The Swagger UI's JavaScript and CSS, embedded gzip-compressed (from
//! `assets/*.gz`, see `assets/README.md`): 0.47 MB in the binary instead of 4 MB for
//! the plain files and their source maps, which matters for a `FROM scratch` image.
//!
//! Clients that accept gzip (every browser) get the stored bytes as they are, with
//! `Content-Encoding: gzip`; any other client gets the plain file, inflated once on
//! first use and then kept.

use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

/// One embedded asset.
pub(crate) struct SwaggerAsset {
    content_type: &'static str,
    gzip: &'static [u8],
    plain: OnceLock<Result<Bytes, String>>,
}

pub(crate) static BUNDLE_JS: SwaggerAsset = SwaggerAsset::new(
    "text/javascript; charset=utf-8",
    include_bytes!("../assets/swagger-ui-bundle.js.gz"),
);

pub(crate) static STYLESHEET: SwaggerAsset = SwaggerAsset::new(
    "text/css; charset=utf-8",
    include_bytes!("../assets/swagger-ui.css.gz"),
);

impl SwaggerAsset {
    const fn new(content_type: &'static str, gzip: &'static [u8]) -> SwaggerAsset {
        SwaggerAsset {
            content_type,
            gzip,
            plain: OnceLock::new(),
        }
    }

    /// The asset, encoded as the request's `Accept-Encoding` allows.
    pub(crate) fn respond(&'static self, request: &HeaderMap) -> Response {
        let headers = [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            ),
            (header::VARY, HeaderValue::from_static("accept-encoding")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
        ];
        if accepts_gzip(request) {
            let mut resp = (headers, Bytes::from_static(self.gzip)).into_response();
            resp.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            return resp;
        }
        match self.plain() {
            Ok(body) => (headers, body.clone()).into_response(),
            Err(err) => {
                tracing::error!(%err, "embedded Swagger UI asset is corrupt");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "embedded asset is corrupt\n",
                )
                    .into_response()
            }
        }
    }

    fn plain(&self) -> &Result<Bytes, String> {
        self.plain
            .get_or_init(|| gunzip(self.gzip).map(Bytes::from))
    }
}

/// Whether `Accept-Encoding` lists `gzip` (or `*`) with a non-zero quality. A request
/// without the header gets the plain file: `curl` users should not see binary output.
fn accepts_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let zero_q = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !zero_q
        })
}

/// Inflates a gzip member written by `gzip -n` (no optional header fields), checking
/// the length in its trailer.
fn gunzip(data: &[u8]) -> Result<Vec<u8>, String> {
    const HEADER: usize = 10;
    const TRAILER: usize = 8;
    if data.len() < HEADER + TRAILER || data[..3] != [0x1f, 0x8b, 8] {
        return Err("not a gzip member".into());
    }
    if data[3] != 0 {
        return Err(format!(
            "gzip header flags {:#x}: store it with `gzip -n`",
            data[3]
        ));
    }
    let body = &data[HEADER..data.len() - TRAILER];
    let plain = miniz_oxide::inflate::decompress_to_vec(body).map_err(|e| format!("{e:?}"))?;
    let isize_field = &data[data.len() - 4..];
    let want = u32::from_le_bytes([
        isize_field[0],
        isize_field[1],
        isize_field[2],
        isize_field[3],
    ]);
    if plain.len() as u32 != want {
        return Err(format!(
            "inflated {} bytes, trailer says {want}",
            plain.len()
        ));
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn gzip_is_sent_only_when_accepted() {
        assert!(!accepts_gzip(&HeaderMap::new()));
        assert!(accepts_gzip(&with("gzip, deflate, br")));
        assert!(accepts_gzip(&with("br;q=1.0, GZIP;q=0.5")));
        assert!(accepts_gzip(&with("*")));
        assert!(!accepts_gzip(&with("gzip;q=0")));
        assert!(!accepts_gzip(&with("identity")));
        assert!(!accepts_gzip(&with("br, deflate")));
    }

    #[test]
    fn embedded_assets_inflate_to_the_swagger_ui() {
        let js = BUNDLE_JS.plain().as_ref().unwrap();
        assert!(js.len() > 1_000_000, "{}", js.len());
        assert!(std::str::from_utf8(js).unwrap().contains("SwaggerUIBundle"));
        let css = STYLESHEET.plain().as_ref().unwrap();
        assert!(std::str::from_utf8(css).unwrap().contains(".swagger-ui"));
    }

    #[test]
    fn corrupt_gzip_is_an_error_not_a_panic() {
        assert!(gunzip(b"plain text, not gzip at all").is_err());
        let mut bad = BUNDLE_JS.gzip.to_vec();
        let n = bad.len();
        bad[n - 1] ^= 0xff; // the length in the trailer no longer matches
        assert!(gunzip(&bad).is_err());
    }
}
