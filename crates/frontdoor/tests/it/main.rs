//! Integration tests of the front door on real loopback sockets: test origins are small
//! hyper servers in this binary; the front door runs in-process through `run`.

mod admin;
mod failover;
mod input;
mod protocol;
mod routing;
mod support;
