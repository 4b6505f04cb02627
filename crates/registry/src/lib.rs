//! geoha-registry (in progress).
#![forbid(unsafe_code)]
