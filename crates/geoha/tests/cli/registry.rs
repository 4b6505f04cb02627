//! `geoha registry` through the real binary: serves the Distribution API on the address
//! it was given, needs credentials to push, refuses bad config with 64.

use std::time::Duration;

use crate::support::{geoha, http, Running};

#[test]
fn registry_serves_v2_and_refuses_anonymous_pushes() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    // bcrypt of "secret" (htpasswd -nbB ci secret).
    std::fs::write(
        &htpasswd,
        "ci:$2y$05$6sJ6xO1C2d5qJxJ3j7sQ5O1iKqBqKQ6XbG9vG2mV0v3t6H2U3cH8a\n",
    )
    .unwrap();
    let cfg = dir.path().join("registry.toml");
    std::fs::write(
        &cfg,
        format!(
            "replica_id = \"east\"\nlisten = \"127.0.0.1:0\"\nstorage = \"{}\"\nanonymous_pull = true\nhtpasswd = \"{}\"\n",
            data.path().display(),
            htpasswd.display()
        ),
    )
    .unwrap();
    let mut reg = Running::spawn({
        let mut c = geoha();
        c.args(["registry", "--config"]).arg(&cfg);
        c
    });
    let addr = reg.listening_addr();
    // The base check asks for credentials (that is how `docker login` starts)...
    let (status, text) = http(addr, "GET", "/v2/").unwrap();
    assert_eq!(status, 401, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{text}"
    );
    // ...while anonymous pulls are allowed: an unknown repository is the spec's 404.
    let (status, text) = http(addr, "GET", "/v2/geoha/api/tags/list").unwrap();
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("NAME_UNKNOWN"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("docker-distribution-api-version: registry/2.0"),
        "{text}"
    );
    let (status, text) = http(addr, "POST", "/v2/geoha/api/blobs/uploads/").unwrap();
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("UNAUTHORIZED"), "{text}");
    reg.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(reg.wait_exit(Duration::from_secs(20)), Some(0));
}

#[test]
fn registry_refuses_a_bad_config_with_64_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "replica_id = \"east\"\nstorage = \"/tmp/x\"\nlisen = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let out = geoha()
        .args(["registry", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("bad.toml:3"), "{err}");
}
