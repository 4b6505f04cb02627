//! geoha-frontdoor (in progress).
#![forbid(unsafe_code)]
