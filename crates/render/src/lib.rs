//! geoha-render (in progress).
#![forbid(unsafe_code)]
