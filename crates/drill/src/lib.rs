//! geoha-drill (in progress).
#![forbid(unsafe_code)]
