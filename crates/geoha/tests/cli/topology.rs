//! `geoha topology check|show`, `geoha import`, `geoha frontdoor` and `geoha drill`
//! through the real binary.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::{geoha, http, Running};

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = geoha().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn shipped_topologies_pass_check() {
    for rel in ["examples/default.toml", "examples/azure-reference.toml"] {
        let path = repo_file(rel);
        let (code, out, err) = run(&["topology", "check", path.to_str().unwrap()]);
        assert_eq!(code, 0, "{rel}: {err}");
        assert!(
            out.contains("ok: environment dev, 2 regions, 6 replicas"),
            "{out}"
        );
    }
}

#[test]
fn show_prints_the_builtin_default_which_parses_back() {
    let (code, out, _) = run(&["topology", "show"]);
    assert_eq!(code, 0);
    let t = geoha_topology_text_ok(&out);
    assert!(t.contains("eastus2") && t.contains("centralus"));
}

fn geoha_topology_text_ok(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shown.toml");
    std::fs::write(&path, text).unwrap();
    let (code, _, err) = run(&["topology", "check", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    text.to_string()
}

#[test]
fn import_converts_variables_json_into_a_valid_topology() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("imported.toml");
    let src = repo_file("examples/variables.json");
    let (code, _, err) = run(&[
        "import",
        src.to_str().unwrap(),
        "-o",
        out_path.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert!(text.contains("cluster = \"aks-green\""), "{text}");
    assert!(text.contains("interval = \"30s\""), "{text}");
    let (code, _, err) = run(&["topology", "check", out_path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"env":"dev","dev":{}}"#).unwrap();
    let (code, _, err) = run(&["import", bad.to_str().unwrap()]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("neither location_green nor location_blue"),
        "{err}"
    );
}

#[test]
fn frontdoor_serves_from_a_config_file_and_refuses_a_bad_one() {
    // An API replica as the only origin.
    let mut api = Running::spawn({
        let mut c = geoha();
        c.args(["api", "--listen", "127.0.0.1:0", "--region", "westus"]);
        c
    });
    let origin = api.listening_addr();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("fd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n\n[[route]]\norigin_group = \"api\"\n\n\
             [[origin_group]]\nname = \"api\"\n[origin_group.probe]\ninterval = \"200ms\"\n\
             [[origin_group.origin]]\nname = \"w1\"\naddress = \"{origin}\"\n"
        ),
    )
    .unwrap();
    let mut fd = Running::spawn({
        let mut c = geoha();
        c.args(["frontdoor", "--config", cfg.to_str().unwrap()]);
        c
    });
    let addr = fd.listening_addr();
    let (status, text) = http(addr, "GET", "/default/").unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"region\":\"westus\""), "{text}");
    assert!(text.to_ascii_lowercase().contains("x-geoha-ref:"), "{text}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[route]]\norigin_group = \"api\"\n[[origin_group]]\nname = \"api\"\n\
         [[origin_group.origin]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nweight = 0\n",
    )
    .unwrap();
    let (code, _, err) = run(&["frontdoor", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("bad.toml:8"), "{err}");
    assert!(err.contains("weight"), "{err}");
}

#[test]
fn drill_measures_a_steady_target_and_writes_reports() {
    let mut api = Running::spawn({
        let mut c = geoha();
        c.args(["api", "--listen", "127.0.0.1:0", "--region", "westus"]);
        c
    });
    let origin = api.listening_addr();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let html = dir.path().join("r.html");
    let out = geoha()
        .args(["drill", "--target"])
        .arg(format!("http://{origin}/default/"))
        .args(["--rate", "200", "--duration", "2s", "--quiet", "--json"])
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .args(["--max-failed", "0"])
        .timeout_output(Duration::from_secs(30));
    assert_eq!(out.0, 0, "{}", out.2);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["failed"], 0, "{report:#}");
    let sent = report["sent"].as_u64().unwrap();
    assert!((380..=420).contains(&sent), "sent {sent}");
    assert!(
        report["by_region"]["westus"].as_u64().unwrap() >= 380,
        "{report:#}"
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<svg") && !page.contains("<script src"),
        "self-contained"
    );

    // A target that refuses: the objective is missed, exit 1.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let out = geoha()
        .args(["drill", "--target"])
        .arg(format!("http://{dead}/"))
        .args([
            "--rate",
            "50",
            "--duration",
            "1s",
            "--quiet",
            "--max-failed",
            "0",
        ])
        .timeout_output(Duration::from_secs(30));
    assert_eq!(out.0, 1, "{}", out.2);

    // Bad input: 64.
    let (code, _, err) = run(&["drill", "--target", "ftp://x/", "--duration", "1s"]);
    assert_eq!(code, 64, "{err}");
}

trait TimeoutOutput {
    fn timeout_output(&mut self, within: Duration) -> (i32, String, String);
}

impl TimeoutOutput for std::process::Command {
    /// Runs to completion, killing the child if it outlives `within`.
    fn timeout_output(&mut self, within: Duration) -> (i32, String, String) {
        use std::io::Read as _;
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + within;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("command outlived {within:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        let mut err = String::new();
        let _ = child.stdout.take().unwrap().read_to_string(&mut out);
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        (status.code().unwrap_or(-1), out, err)
    }
}
