//! geoha-lab (in progress).
#![forbid(unsafe_code)]
