//! geoha-api (in progress).
#![forbid(unsafe_code)]
