//! Tests through the real `geoha` binary (`CARGO_BIN_EXE_geoha`): one test binary,
//! one module per subcommand.

mod api;
mod lab;
mod registry;
mod render;
mod support;
mod topology;
