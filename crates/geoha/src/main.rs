//! The geoha command line.
#![forbid(unsafe_code)]
fn main() {}
