//! `geoha up`, `status`, `fault`, `down` through the real binary. Each test runs its own
//! lab with every port picked by the kernel (`--listen 127.0.0.1:0 --replica-port 0`)
//! and its own state directory, so labs run in parallel without colliding.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::support::{basic_auth, geoha, http, http_with, Running};

struct TestLab {
    up: Running,
    dir: tempfile::TempDir,
    frontdoor: SocketAddr,
}

fn read_state(dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("lab.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn start_lab(extra: &[&str]) -> TestLab {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = geoha();
    cmd.args(["up", "--listen", "127.0.0.1:0", "--replica-port", "0"])
        .args(extra)
        .env("GEOHA_STATE_DIR", dir.path());
    let mut up = Running::spawn(cmd);
    up.wait_line("lab running", Duration::from_secs(30));
    let state = read_state(dir.path()).expect("lab.json written once the lab runs");
    let frontdoor = state["frontdoor_url"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    TestLab { up, dir, frontdoor }
}

impl TestLab {
    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = geoha()
            .args(args)
            .env("GEOHA_STATE_DIR", self.dir.path())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn status(&self) -> serde_json::Value {
        let (code, out, err) = self.cli(&["status", "--json"]);
        assert_eq!(code, 0, "status failed: {err}");
        serde_json::from_str(&out).unwrap()
    }

    fn fault(&self, args: &[&str]) {
        let mut all = vec!["fault"];
        all.extend_from_slice(args);
        let (code, out, err) = self.cli(&all);
        assert_eq!(code, 0, "fault {args:?}: {out} {err}");
    }

    /// Polls the status until `pred` holds, under a deadline; fails with the last status.
    fn wait_status(&self, what: &str, within: Duration, pred: impl Fn(&serde_json::Value) -> bool) {
        let deadline = Instant::now() + within;
        let mut last = serde_json::Value::Null;
        while Instant::now() < deadline {
            last = self.status();
            if pred(&last) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{what}: not within {within:?}; last status:\n{last:#}");
    }

    /// Regions that answered `n` requests through the front door; panics on a non-200.
    fn regions_answering(&self, n: usize) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        for _ in 0..n {
            let (status, text) = http(self.frontdoor, "GET", "/default/").unwrap();
            assert_eq!(status, 200, "{text}");
            let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
            let card: serde_json::Value = serde_json::from_str(body).unwrap();
            seen.insert(card["region"].as_str().unwrap().to_string());
        }
        seen
    }
}

fn replica<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no replica {name} in {status:#}"))
}

fn all_healthy_in(status: &serde_json::Value, region: &str) -> bool {
    status["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["region"] == region)
        .all(|r| r["healthy"] == true)
}

fn none_healthy_in(status: &serde_json::Value, region: &str) -> bool {
    status["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["region"] == region)
        .all(|r| r["healthy"] == false)
}

#[test]
fn default_lab_comes_up_healthy_and_answers_from_both_regions() {
    let lab = start_lab(&[]);
    let status = lab.status();
    let replicas = status["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 6, "{status:#}");
    assert!(replicas.iter().all(|r| r["healthy"] == true), "{status:#}");
    assert_eq!(status["frontdoor"]["listen"], lab.frontdoor.to_string());
    for r in replicas {
        // 127.<region>.<zone>.<n>: region and zone recognisable in the address.
        let addr: SocketAddr = r["addr"].as_str().unwrap().parse().unwrap();
        let ip = match addr.ip() {
            std::net::IpAddr::V4(ip) => ip.octets(),
            other => panic!("{other}"),
        };
        assert_eq!(ip[0], 127);
        assert_eq!(ip[2].to_string(), r["zone"].as_str().unwrap());
        assert_eq!(r["restarts"], 0);
        assert!(r["faults"].as_array().unwrap().is_empty());
    }
    let seen = lab.regions_answering(60);
    assert_eq!(
        seen,
        BTreeSet::from(["centralus".to_string(), "eastus2".to_string()])
    );
    // One registry replica per region, on the region's address block, answering the
    // Distribution API's base check.
    let regs = status["registries"].as_array().unwrap();
    let regions: Vec<&str> = regs.iter().map(|r| r["region"].as_str().unwrap()).collect();
    assert_eq!(regions, ["eastus2", "centralus"]);
    for (i, r) in regs.iter().enumerate() {
        let addr: SocketAddr = r["url"]
            .as_str()
            .unwrap()
            .trim_start_matches("http://")
            .parse()
            .unwrap();
        assert_eq!(addr.ip().to_string(), format!("127.{}.0.1", i + 1));
        let (code, text) = http(addr, "GET", "/v2/").unwrap();
        assert!(code == 200 || code == 401, "{text}");
        assert!(text.to_ascii_lowercase().contains("registry/2.0"), "{text}");
    }
}

#[test]
fn region_loss_keeps_answering_from_the_other_region_and_heals() {
    let lab = start_lab(&[]);
    lab.fault(&["kill", "region:eastus2", "--stay-down"]);
    // Every request still succeeds (retries + ejection), and soon only centralus answers.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let seen = lab.regions_answering(20);
        if seen == BTreeSet::from(["centralus".to_string()]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "eastus2 still answering: {seen:?}"
        );
    }
    let status = lab.status();
    assert!(replica(&status, "eastus2-z1-r0")["faults"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "down"));
    lab.fault(&["heal", "region:eastus2"]);
    lab.wait_status("eastus2 healthy again", Duration::from_secs(10), |s| {
        all_healthy_in(s, "eastus2")
    });
}

#[test]
fn supervisor_restarts_a_killed_replica() {
    let lab = start_lab(&[]);
    let before = lab.status();
    let pid = replica(&before, "centralus-z2-r0")["pid"].as_u64().unwrap();
    lab.fault(&["kill", "replica:centralus-z2-r0"]);
    lab.wait_status("restarted and healthy", Duration::from_secs(10), |s| {
        let r = replica(s, "centralus-z2-r0");
        r["restarts"] == 1 && r["healthy"] == true && r["pid"].as_u64() != Some(pid)
    });
}

#[test]
fn freeze_thaw_slow_partition_and_heal_change_what_the_front_door_sees() {
    let lab = start_lab(&[]);
    // Freeze: the front door stops seeing the region as healthy; thaw brings it back.
    lab.fault(&["freeze", "region:centralus"]);
    lab.wait_status("frozen region unhealthy", Duration::from_secs(10), |s| {
        none_healthy_in(s, "centralus")
            && replica(s, "centralus-z1-r0")["faults"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == "frozen")
    });
    assert_eq!(
        lab.regions_answering(20),
        BTreeSet::from(["eastus2".to_string()])
    );
    lab.fault(&["thaw", "region:centralus"]);
    lab.wait_status("thawed region healthy", Duration::from_secs(10), |s| {
        all_healthy_in(s, "centralus")
    });

    // Partition (black hole): unhealthy, then heal.
    lab.fault(&["partition", "zone:eastus2-1"]);
    lab.wait_status("partitioned zone unhealthy", Duration::from_secs(10), |s| {
        replica(s, "eastus2-z1-r0")["healthy"] == false
    });
    lab.fault(&["heal", "zone:eastus2-1"]);
    lab.wait_status("healed zone healthy", Duration::from_secs(10), |s| {
        replica(s, "eastus2-z1-r0")["healthy"] == true
    });

    // Slow: listed as a fault, and the slowed replica's answers take at least the latency.
    lab.fault(&["slow", "replica:eastus2-z3-r0", "--latency", "300ms"]);
    let s = lab.status();
    assert!(replica(&s, "eastus2-z3-r0")["faults"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f.as_str().unwrap().starts_with("slow 300ms")));
    lab.fault(&["heal", "replica:eastus2-z3-r0"]);
    let s = lab.status();
    assert!(replica(&s, "eastus2-z3-r0")["faults"]
        .as_array()
        .unwrap()
        .is_empty());

    // Error rate 1.0 on a region: the lab's front door retries GETs answered 5xx on
    // another replica (`retry.on_5xx`), so no client sees one, while passive health
    // ejects the failing region.
    lab.fault(&["error-rate", "region:centralus", "1.0"]);
    let answers: Vec<(u16, String)> = (0..30)
        .map(|_| http(lab.frontdoor, "GET", "/default/").unwrap())
        .collect();
    assert!(
        answers
            .iter()
            .all(|(code, text)| *code == 200 && text.contains("\"region\":\"eastus2\"")),
        "a 5xx or a failing region reached a client: {:?}",
        answers.iter().map(|(c, _)| c).collect::<Vec<_>>()
    );
    lab.fault(&["heal", "region:centralus"]);
}

#[test]
fn bad_fault_requests_exit_64() {
    let lab = start_lab(&[]);
    for args in [
        &["fault", "explode", "region:eastus2"][..],
        &["fault", "kill", "region:atlantis"][..],
        &["fault", "error-rate", "region:eastus2", "7"][..],
        &["fault", "kill", "pod:x"][..],
    ] {
        let (code, out, err) = lab.cli(args);
        assert_eq!(code, 64, "{args:?}: {out} {err}");
    }
}

#[test]
fn sigkill_of_up_leaves_no_replica_behind() {
    let mut lab = start_lab(&[]);
    let status = lab.status();
    let pids: Vec<i32> = status["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pid"].as_i64().unwrap() as i32)
        .collect();
    assert_eq!(pids.len(), 6);
    lab.up.signal(Signal::SIGKILL);
    let _ = lab.up.wait_exit(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let alive: Vec<i32> = pids
            .iter()
            .copied()
            .filter(|p| {
                kill(Pid::from_raw(*p), None).is_ok()
                    && !std::fs::read_to_string(format!("/proc/{p}/stat"))
                        .unwrap_or_default()
                        .contains(") Z")
            })
            .collect();
        if alive.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "replicas survived: {alive:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn second_up_on_the_same_front_door_address_fails_clearly() {
    let lab = start_lab(&[]);
    let dir = tempfile::tempdir().unwrap();
    let out = geoha()
        .args(["up", "--replica-port", "0", "--listen"])
        .arg(lab.frontdoor.to_string())
        .env("GEOHA_STATE_DIR", lab.dir.path())
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr.contains("already in use"), "{stderr}");
    assert!(stderr.contains("geoha up"), "{stderr}");
}

#[test]
fn sigterm_stops_everything_and_removes_the_state_file() {
    let mut lab = start_lab(&[]);
    let status = lab.status();
    let pids: Vec<i32> = status["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pid"].as_i64().unwrap() as i32)
        .collect();
    lab.up.signal(Signal::SIGTERM);
    assert_eq!(lab.up.wait_exit(Duration::from_secs(20)), Some(0));
    assert!(read_state(lab.dir.path()).is_none());
    for p in pids {
        assert!(
            kill(Pid::from_raw(p), None).is_err(),
            "replica {p} still running"
        );
    }
}

#[test]
fn bad_topology_is_rejected_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "environment = \"dev\"\n\n[[region]]\nname = \"eastus2\"\nwieght = 50\n",
    )
    .unwrap();
    for args in [
        vec!["up".to_string(), path.display().to_string()],
        vec![
            "topology".to_string(),
            "check".to_string(),
            path.display().to_string(),
        ],
    ] {
        let out = geoha()
            .args(&args)
            .env("GEOHA_STATE_DIR", dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains("bad.toml:5"), "{args:?}: {stderr}");
        assert!(stderr.contains("wieght"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_small_topology_file_comes_up_healthy_with_its_own_names() {
    let topo = tempfile::tempdir().unwrap();
    let path = topo.path().join("small.toml");
    std::fs::write(
        &path,
        "environment = \"small\"\n\
         [frontdoor.probe]\ninterval = \"200ms\"\n\
         [[region]]\nname = \"westeurope\"\nrole = \"green\"\nzones = [\"1\"]\n\
         [[region]]\nname = \"northeurope\"\nrole = \"blue\"\nzones = [\"2\"]\npriority = 2\n",
    )
    .unwrap();
    let lab = start_lab(&[path.to_str().unwrap()]);
    let status = lab.status();
    assert_eq!(status["environment"], "small");
    let names: Vec<&str> = status["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["westeurope-z1-r0", "northeurope-z2-r0"]);
    lab.wait_status("both healthy", Duration::from_secs(10), |s| {
        s["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["healthy"] == true)
    });
    // Priority 1 beats 2: only westeurope answers while it is healthy...
    assert_eq!(
        lab.regions_answering(20),
        BTreeSet::from(["westeurope".to_string()])
    );
    // ...and northeurope takes over when it dies.
    lab.fault(&["kill", "region:westeurope", "--stay-down"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if lab.regions_answering(10) == BTreeSet::from(["northeurope".to_string()]) {
            break;
        }
        assert!(Instant::now() < deadline, "no failover to priority 2");
    }
}

fn small_lab() -> (TestLab, tempfile::TempDir) {
    let topo = tempfile::tempdir().unwrap();
    let path = topo.path().join("small.toml");
    std::fs::write(
        &path,
        "environment = \"deploy\"\n\
         [frontdoor.probe]\ninterval = \"200ms\"\n\
         [[region]]\nname = \"east\"\nzones = [\"1\", \"2\"]\n\
         [[region]]\nname = \"west\"\nzones = [\"1\"]\n",
    )
    .unwrap();
    (start_lab(&[path.to_str().unwrap()]), topo)
}

fn versions(status: &serde_json::Value) -> Vec<(String, String)> {
    status["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["version"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Sequential GETs through the front door until `stop`; returns (ok, failed).
fn steady_load(
    frontdoor: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(u64, u64)> {
    std::thread::spawn(move || {
        let (mut ok, mut failed) = (0, 0);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
            match http(frontdoor, "GET", "/default/") {
                Ok((200, _)) => ok += 1,
                _ => failed += 1,
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (ok, failed)
    })
}

#[test]
fn deploy_rolls_a_good_version_out_with_no_failed_request() {
    let (lab, _topo) = small_lab();
    lab.wait_status("healthy", Duration::from_secs(10), |s| {
        s["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["healthy"] == true)
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = steady_load(lab.frontdoor, std::sync::Arc::clone(&stop));
    let (code, out, err) = lab.cli(&["deploy", "--version", "2.0.0", "--bake", "300ms"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = load.join().unwrap();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("deployed 2.0.0"), "{out}");
    // Region by region: every east replica before any west one.
    let east_done = out.find("region done    east").expect("east finished");
    assert!(out.find("west-z1-r0").unwrap() > east_done, "{out}");
    assert_eq!(failed, 0, "{failed} failed of {}", ok + failed);
    assert!(ok > 50, "load ran: {ok}");
    assert!(versions(&lab.status()).iter().all(|(_, v)| v == "2.0.0"));
}

#[test]
fn deploy_of_a_version_that_never_gets_ready_rolls_back_within_the_first_region() {
    let (lab, _topo) = small_lab();
    lab.wait_status("healthy", Duration::from_secs(10), |s| {
        s["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["healthy"] == true)
    });
    let before = versions(&lab.status());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = steady_load(lab.frontdoor, std::sync::Arc::clone(&stop));
    let (code, out, err) = lab.cli(&[
        "deploy",
        "--version",
        "9.9.9",
        "--binary",
        "/bin/false",
        "--ready-timeout",
        "1s",
        "--bake",
        "200ms",
    ]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (_, failed) = load.join().unwrap();
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("rolled-back"), "{err}");
    assert!(out.contains("rollback"), "{out}");
    // The other region was never touched, and the first is back on its version.
    assert!(!out.contains("west"), "{out}");
    assert_eq!(versions(&lab.status()), before);
    assert_eq!(failed, 0, "the drained replica took no traffic");
    // Bad input exits 64 before anything happens.
    let (code, _, err) = lab.cli(&["deploy", "--version", "no spaces"]);
    assert_eq!(code, 64, "{err}");
}

#[test]
fn a_registry_replica_can_be_killed_and_healed() {
    let (lab, _topo) = small_lab();
    let regs = lab.status()["registries"].as_array().unwrap().clone();
    let west: SocketAddr = regs.iter().find(|r| r["region"] == "west").unwrap()["url"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    assert!(http(west, "GET", "/v2/").is_ok());
    lab.fault(&["kill", "registry:west"]);
    let s = lab.status();
    let up: Vec<bool> = s["registries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["up"].as_bool().unwrap())
        .collect();
    assert_eq!(up, [true, false], "{s:#}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while http(west, "GET", "/v2/").is_ok() {
        assert!(Instant::now() < deadline, "killed registry still answers");
        std::thread::sleep(Duration::from_millis(20));
    }
    lab.fault(&["heal", "registry:west"]);
    let (code, text) = http(west, "GET", "/v2/").unwrap();
    assert!(code == 200 || code == 401, "{text}");
    let (code, _, err) = lab.cli(&["fault", "freeze", "registry:west"]);
    assert_eq!(code, 64, "{err}");
    let (code, _, err) = lab.cli(&["fault", "kill", "registry:atlantis"]);
    assert_eq!(code, 64, "{err}");
}

fn registry_addr(status: &serde_json::Value, region: &str) -> SocketAddr {
    status["registries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == region)
        .unwrap_or_else(|| panic!("no registry of {region} in {status:#}"))["url"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .parse()
        .unwrap()
}

#[test]
fn a_partitioned_registry_replica_misses_pushes_until_healed() {
    let (lab, _topo) = small_lab();
    let status = lab.status();
    let (east, west) = (
        registry_addr(&status, "east"),
        registry_addr(&status, "west"),
    );
    // The lab hands developers its push credential, owner-only.
    let secret = lab.dir.path().join("registry").join("push-password");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&secret).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let auth = basic_auth("geoha", std::fs::read_to_string(&secret).unwrap().trim());

    // `refuse`: west's read-through to east fails at once instead of stalling.
    lab.fault(&["partition", "registry:west", "--mode", "refuse"]);
    let s = lab.status();
    let west_status = s["registries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == "west")
        .unwrap()
        .clone();
    assert_eq!(west_status["up"], true, "{s:#}");
    assert_eq!(west_status["faults"][0], "partition (refuse)", "{s:#}");

    let body = b"geoha partition test";
    let digest = "sha256:a7f0e8aeb633669f4c66ca778f89c455216d0a6696701f59f29b99b14a3b09ed";
    let (code, text) = http_with(
        east,
        "POST",
        &format!("/v2/lab/partition/blobs/uploads/?digest={digest}"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/octet-stream"),
        ],
        body,
    )
    .unwrap();
    assert_eq!(code, 201, "{text}");
    let blob = format!("/v2/lab/partition/blobs/{digest}");
    assert_eq!(http(east, "HEAD", &blob).unwrap().0, 200);
    // Cut off: neither replication nor read-through reaches west (it still serves).
    std::thread::sleep(Duration::from_millis(1500));
    let (code, text) = http(west, "HEAD", &blob).unwrap();
    assert_eq!(code, 404, "a partitioned replica got the blob: {text}");
    let (code, text) = http(west, "GET", "/v2/").unwrap();
    assert!(code == 200 || code == 401, "west stopped serving: {text}");

    lab.fault(&["heal", "registry:west"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while http(west, "HEAD", &blob).map(|r| r.0).unwrap_or(0) != 200 {
        assert!(
            Instant::now() < deadline,
            "the healed replica never got the blob"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = lab.status();
    assert!(
        s["registries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["faults"].as_array().unwrap().is_empty()),
        "{s:#}"
    );
    let (code, _, err) = lab.cli(&["fault", "slow", "registry:west", "--latency", "1s"]);
    assert_eq!(code, 64, "{err}");
}

/// A "bad version" deployed under steady load: the same binary through a wrapper that
/// adds `chaos` flags to `geoha api` (its probes stay healthy and fast).
struct BadDeploy {
    lab: TestLab,
    _topo: tempfile::TempDir,
    code: i32,
    out: String,
    err: String,
    versions_before: Vec<(String, String)>,
    ok: u64,
    failed: u64,
}

fn deploy_bad_version(chaos: &str, version: &str, deploy_flags: &[&str]) -> BadDeploy {
    let (lab, topo) = small_lab();
    lab.wait_status("healthy", Duration::from_secs(10), |s| {
        s["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["healthy"] == true)
    });
    let script = topo.path().join("bad-version.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec '{}' \"$@\" {chaos}\n",
            env!("CARGO_BIN_EXE_geoha")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let versions_before = versions(&lab.status());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = steady_load(lab.frontdoor, std::sync::Arc::clone(&stop));
    let mut args = vec![
        "deploy",
        "--version",
        version,
        "--binary",
        script.to_str().unwrap(),
    ];
    args.extend_from_slice(deploy_flags);
    let (code, out, err) = lab.cli(&args);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = load.join().unwrap();
    BadDeploy {
        lab,
        _topo: topo,
        code,
        out,
        err,
        versions_before,
        ok,
        failed,
    }
}

impl BadDeploy {
    /// Rolled back for `reason` within the first region, and no client noticed.
    fn assert_rolled_back_unnoticed(&self, reason: &str) {
        let (out, err) = (&self.out, &self.err);
        assert_eq!(self.code, 1, "{out}\n{err}");
        assert!(err.contains(reason), "{out}\n{err}");
        assert!(
            !out.contains("west"),
            "the other region is untouched: {out}"
        );
        assert_eq!(versions(&self.lab.status()), self.versions_before);
        let (ok, failed) = (self.ok, self.failed);
        assert_eq!(failed, 0, "{failed} failed of {}", ok + failed);
    }
}

#[test]
fn deploy_of_a_version_that_answers_5xx_is_rolled_back_by_its_error_rate() {
    // Every /default/ answered 500: only live traffic during the bake can catch it. No
    // 500 reaches a client: the lab's front door retries each on another replica
    // (`retry.on_5xx`) while the bake counts them against the new one.
    let d = deploy_bad_version("--inject-errors 1", "6.6.6", &["--bake", "1s"]);
    d.assert_rolled_back_unnoticed("error rate over the limit");
}

#[test]
fn deploy_of_a_slow_version_is_rolled_back_by_its_latency() {
    // Every /default/ answered after 300 ms: timed before it takes any traffic.
    let d = deploy_bad_version(
        "--inject-latency 300ms",
        "7.7.7",
        &["--bake", "2s", "--max-p99", "100ms"],
    );
    d.assert_rolled_back_unnoticed("answers slower than the limit of 100 ms");
    let (code, _, err) = d.lab.cli(&["deploy", "--version", "x", "--max-p99", "0s"]);
    assert_eq!(code, 64, "{err}");
}
