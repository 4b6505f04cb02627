//! The state file: how `geoha status`, `geoha fault`, `geoha down` and `geoha drill`
//! find a running lab without flags. It lives in `$GEOHA_STATE_DIR` (else
//! `$HOME/.geoha`) as `lab.json`, is written atomically once the lab is up, and removed
//! when the lab stops.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Contents of `lab.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    /// Base URL of the control API, e.g. `http://127.0.0.1:41234`.
    pub control_url: String,
    /// Bearer token for the control API.
    pub token: String,
    /// Where clients send traffic, e.g. `http://127.0.0.1:8080`.
    pub frontdoor_url: String,
    /// PID of the `geoha up` process.
    pub pid: u32,
}

/// The directory holding `lab.json` (and the replicas' logs).
pub fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GEOHA_STATE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".geoha")
}

/// Path of `lab.json` in `dir`.
pub fn state_file(dir: &Path) -> PathBuf {
    dir.join("lab.json")
}

impl LabState {
    /// Writes the file atomically (temp file + rename), readable only by the owner
    /// because it holds the token.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".lab.json.{}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(self).unwrap_or_default())?;
        f.sync_all()?;
        std::fs::rename(&tmp, state_file(dir))
    }

    /// Reads the file; `Ok(None)` when there is none.
    pub fn read(dir: &Path) -> Result<Option<LabState>, String> {
        let path = state_file(dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Whether the recorded `geoha up` process still exists.
    pub fn is_alive(&self) -> bool {
        let pid = nix::unistd::Pid::from_raw(self.pid as i32);
        nix::sys::signal::kill(pid, None).is_ok()
    }

    /// Removes the file if it still describes this process.
    pub fn remove_if_mine(dir: &Path) {
        if let Ok(Some(state)) = LabState::read(dir) {
            if state.pid == std::process::id() {
                let _ = std::fs::remove_file(state_file(dir));
            }
        }
    }
}
