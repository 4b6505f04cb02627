//! Lab integration tests on real sockets: the link proxy's faults.

mod link;
