//! The rendered files as an ordered list, and writing them safely.
//!
//! Each file is written to a temporary file in its own directory and renamed over the
//! target, so a reader never sees half a manifest. Paths must be plain relative paths
//! (no `..`, no root, no drive); a directory that resolves outside the output
//! directory (a symlink) is refused as well.

use std::fs;
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

use crate::RenderError;

/// Rendered files: `(relative path with '/' separators, contents)`, sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderedTree {
    files: Vec<(String, String)>,
}

// === impl RenderedTree ===

impl RenderedTree {
    /// The files, in order.
    pub fn files(&self) -> &[(String, String)] {
        &self.files
    }

    /// The contents of one file, if rendered.
    pub fn get(&self, path: &str) -> Option<&str> {
        self.files
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, c)| c.as_str())
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True when nothing was rendered.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub(crate) fn push(&mut self, path: impl Into<String>, contents: String) {
        self.files.push((path.into(), contents));
    }

    pub(crate) fn sort(&mut self) {
        self.files.sort_by(|a, b| a.0.cmp(&b.0));
    }
}

impl IntoIterator for RenderedTree {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;
    fn into_iter(self) -> Self::IntoIter {
        self.files.into_iter()
    }
}

/// Writes every file of `tree` under `out_dir` (created if missing). Each file is
/// replaced atomically; files already in `out_dir` that the tree does not name are left
/// alone. Every path is checked before anything is written.
pub fn write_tree(tree: &RenderedTree, out_dir: &Path) -> Result<(), RenderError> {
    let relative: Vec<PathBuf> = tree
        .files
        .iter()
        .map(|(path, _)| safe_relative(path))
        .collect::<Result<_, _>>()?;
    fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;
    let root = out_dir.canonicalize().map_err(io_err(out_dir))?;
    for (rel, (path, contents)) in relative.iter().zip(&tree.files) {
        let target = root.join(rel);
        let dir = target.parent().unwrap_or(&root);
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let real_dir = dir.canonicalize().map_err(io_err(dir))?;
        if !real_dir.starts_with(&root) {
            return Err(RenderError::UnsafePath { path: path.clone() });
        }
        write_atomically(&target, contents.as_bytes())?;
    }
    Ok(())
}

/// `path` as a relative path of normal components only.
fn safe_relative(path: &str) -> Result<PathBuf, RenderError> {
    let unsafe_path = || RenderError::UnsafePath {
        path: path.to_string(),
    };
    if path.is_empty() || path.contains('\\') {
        return Err(unsafe_path());
    }
    let mut out = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => out.push(part),
            _ => return Err(unsafe_path()),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(unsafe_path());
    }
    Ok(out)
}

fn write_atomically(target: &Path, bytes: &[u8]) -> Result<(), RenderError> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, target)
    })();
    if let Err(source) = result {
        let _ = fs::remove_file(&tmp);
        return Err(RenderError::Io {
            path: target.display().to_string(),
            source,
        });
    }
    Ok(())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RenderError + '_ {
    move |source| RenderError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_of(files: &[(&str, &str)]) -> RenderedTree {
        let mut tree = RenderedTree::default();
        for (p, c) in files {
            tree.push(*p, c.to_string());
        }
        tree
    }

    #[test]
    fn writes_nested_files_and_replaces_existing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        write_tree(
            &tree_of(&[("a/b/c.yaml", "one\n"), ("top.txt", "t\n")]),
            &out,
        )
        .unwrap();
        write_tree(&tree_of(&[("a/b/c.yaml", "two\n")]), &out).unwrap();
        assert_eq!(fs::read_to_string(out.join("a/b/c.yaml")).unwrap(), "two\n");
        assert_eq!(fs::read_to_string(out.join("top.txt")).unwrap(), "t\n");
        let leftovers: Vec<_> = fs::read_dir(out.join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temp files left: {leftovers:?}");
    }

    #[test]
    fn refuses_paths_outside_the_output_directory_before_writing_anything() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        for bad in ["../escape", "/etc/passwd", "a/../../b", "", "./", "a\\b"] {
            let tree = tree_of(&[("ok.txt", "x"), (bad, "x")]);
            let err = write_tree(&tree, &out).unwrap_err();
            assert!(
                matches!(err, RenderError::UnsafePath { .. }),
                "{bad:?}: {err}"
            );
        }
        assert!(!out.join("ok.txt").exists(), "nothing written on refusal");
        assert!(!dir.path().join("escape").exists());
    }

    #[cfg(unix)]
    #[test]
    fn refuses_to_follow_a_symlink_out_of_the_output_directory() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let outside = dir.path().join("outside");
        fs::create_dir_all(&out).unwrap();
        fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, out.join("link")).unwrap();
        let err = write_tree(&tree_of(&[("link/x.yaml", "x")]), &out).unwrap_err();
        assert!(matches!(err, RenderError::UnsafePath { .. }), "{err}");
        assert!(!outside.join("x.yaml").exists());
    }
}
