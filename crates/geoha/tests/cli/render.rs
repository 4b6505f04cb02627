//! `geoha render` through the real binary: it reproduces the committed `deploy/` tree,
//! and bad input exits 64 without writing anything.

use crate::support::geoha;

#[test]
fn render_writes_the_committed_deploy_tree() {
    let dir = tempfile::tempdir().unwrap();
    let out = geoha()
        .args(["render", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    for rel in [
        "k8s/base/deployment.yaml",
        "bicep/main.bicep",
        "github/workflows/deploy.yml",
    ] {
        assert_eq!(
            std::fs::read_to_string(dir.path().join(rel)).unwrap(),
            std::fs::read_to_string(root.join(rel)).unwrap(),
            "{rel}"
        );
    }
    // --config is the same as the positional topology.
    let dir2 = tempfile::tempdir().unwrap();
    let topo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/default.toml");
    let out = geoha()
        .args(["render", "--config"])
        .arg(&topo)
        .arg("--out")
        .arg(dir2.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir2.path().join("k8s/base/deployment.yaml")).unwrap(),
        std::fs::read_to_string(root.join("k8s/base/deployment.yaml")).unwrap(),
    );
}

#[test]
fn render_refuses_a_malformed_digest_with_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let out = geoha()
        .args(["render", "--image-digest", "latest", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(64),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing written"
    );
}
