//! The OpenAPI 3 document, generated from the handlers' annotations (utoipa), so the
//! document cannot drift from the code.

use utoipa::OpenApi;

use crate::identity::IdentityCard;
use crate::routes;

/// The service's OpenAPI description.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "geoha API",
        description = "The sample service every region runs: it tells which replica, zone and region answered.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        routes::default_slash,
        routes::default_bare,
        routes::livez,
        routes::readyz,
        routes::startupz,
        routes::metrics,
    ),
    components(schemas(IdentityCard)),
    tags((name = "default", description = "Who answered"), (name = "probes", description = "Kubernetes-style probes"))
)]
pub struct ApiDoc;

/// The document as JSON text (rendered once at start-up).
pub fn document_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".to_string())
}
