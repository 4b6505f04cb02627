//! The built-in default topology's rendering is committed under `deploy/`; this test
//! proves `render` reproduces it byte for byte. After an intended change, regenerate
//! with `GEOHA_BLESS=1 cargo test -p geoha-render golden` and review the diff.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use geoha_render::write_tree;

use crate::rendered::render_default;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// Every file under `dir`, by '/'-separated relative path.
fn files_under(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.expect("readable directory").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under root");
                let rel = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                let text =
                    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                out.insert(rel, text);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn the_default_topology_renders_the_committed_deploy_tree() {
    let tree = render_default();
    let dir = deploy_dir();
    if std::env::var("GEOHA_BLESS").as_deref() == Ok("1") {
        // Everything under deploy/ is generated: drop files the renderer no longer makes.
        for stale in files_under(&dir).keys() {
            if tree.get(stale).is_none() {
                fs::remove_file(dir.join(stale)).expect("remove stale file");
            }
        }
        write_tree(&tree, &dir).expect("write deploy/");
        eprintln!(
            "GEOHA_BLESS=1: wrote {} files to {}",
            tree.len(),
            dir.display()
        );
        return;
    }
    let committed = files_under(&dir);
    let mut problems = Vec::new();
    for (path, want) in tree.files() {
        match committed.get(path) {
            None => problems.push(format!("{path}: rendered but not committed")),
            Some(have) if have != want => {
                let line = have
                    .lines()
                    .zip(want.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or_else(|| have.lines().count().min(want.lines().count()));
                problems.push(format!(
                    "{path}: differs from line {}: committed {:?}, rendered {:?}",
                    line + 1,
                    have.lines().nth(line).unwrap_or("<end>"),
                    want.lines().nth(line).unwrap_or("<end>"),
                ));
            }
            Some(_) => {}
        }
    }
    for path in committed.keys() {
        if tree.get(path).is_none() {
            problems.push(format!("{path}: committed but no longer rendered"));
        }
    }
    assert!(
        problems.is_empty(),
        "deploy/ is out of date (regenerate with GEOHA_BLESS=1 cargo test -p geoha-render golden):\n{}",
        problems.join("\n")
    );
}

#[test]
fn rendering_is_deterministic_and_every_file_ends_with_a_newline() {
    let a = render_default();
    let b = render_default();
    assert_eq!(a, b);
    let paths: Vec<&str> = a.files().iter().map(|(p, _)| p.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "files are listed in path order");
    for (path, text) in a.files() {
        assert!(text.ends_with('\n'), "{path} ends without a newline");
        assert!(!text.contains('\t'), "{path} contains a tab");
        assert!(
            !text.contains("@REGION") && !text.contains("@ENV@"),
            "{path} has an unfilled placeholder"
        );
    }
}

#[test]
fn the_committed_topology_renders_the_same_tree_as_the_built_in_default() {
    // The workflow renders from deploy/topology.toml: it must mean the same topology.
    let tree = render_default();
    let text = tree.get("topology.toml").expect("topology.toml rendered");
    let topology =
        geoha_topology::Topology::from_toml_str(text, "deploy/topology.toml").expect("parses");
    let again =
        geoha_render::render(&topology, &geoha_render::RenderOptions::default()).expect("renders");
    assert_eq!(tree, again);
}
