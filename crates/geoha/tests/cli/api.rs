//! `geoha api` through the real binary.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::{geoha, http, Running};

#[test]
fn api_serves_identity_and_drains_on_sigterm() {
    let mut cmd = geoha();
    cmd.args([
        "api",
        "--listen",
        "127.0.0.1:0",
        "--ip-lookup-url",
        "off",
        "--drain-delay",
        "300ms",
    ])
    .env("GEOHA_REGION", "centralus")
    .env("GEOHA_ZONE", "3")
    .env("GEOHA_REPLICA", "centralus-z3-r1");
    let mut api = Running::spawn(cmd);
    let addr = api.listening_addr();
    let (status, text) = http(addr, "GET", "/default/").unwrap();
    assert_eq!(status, 200, "{text}");
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let card: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(card["region"], "centralus");
    assert_eq!(card["zone"], "3");
    assert_eq!(card["replica"], "centralus-z3-r1");
    assert_eq!(card["ip"], "Error");
    assert_eq!(card["version"], env!("CARGO_PKG_VERSION"));

    api.signal(Signal::SIGTERM);
    api.wait_line("shutdown requested", Duration::from_secs(5));
    let (status, _) = http(addr, "GET", "/readyz").unwrap();
    assert_eq!(status, 503, "readiness turns 503 while draining");
    assert_eq!(api.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn bad_config_exits_64_naming_the_value() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 4] = [
        (&["api", "--listen", "nonsense"], &[], "nonsense"),
        (&["api", "--drain-delay", "soon"], &[], "soon"),
        (&["api"], &[("PORT", "eighty")], "eighty"),
        (
            &["api", "--ip-lookup-url", "https://x.example/"],
            &[],
            "https://x.example/",
        ),
    ];
    for (args, envs, needle) in cases {
        let mut cmd = geoha();
        cmd.args(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn help_exits_0() {
    let out = geoha().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("api"));
}
