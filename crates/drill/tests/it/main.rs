//! Integration tests of geoha-drill on real loopback sockets: test servers that
//! answer, fail, reset or stall on purpose, and a fake lab control API.

mod fakes;
mod load;
mod report;
mod scenario;
