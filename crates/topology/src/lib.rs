//! geoha-topology (in progress).
#![forbid(unsafe_code)]
