//! `Supervisor`: keeps one replica process running, like a Kubernetes Deployment keeps
//! its pods: restarts it with exponential backoff when it dies, counts and logs each
//! restart, and carries out process faults (kill, freeze, thaw).
//!
//! Children are started in their own process group (Ctrl-C in the terminal reaches only
//! `geoha up`, which then stops them in order) with `GEOHA_PARENT_PID` set, so that the
//! child asks the kernel for SIGKILL when its parent dies: no orphan survives even if
//! `geoha up` itself is SIGKILLed.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot};

use crate::plan::ReplicaPlan;

/// First restart delay; doubles per consecutive crash up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A replica that ran this long is considered stable again: backoff resets.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// SIGTERM → SIGKILL grace when the lab stops.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// What the supervisor is told to do.
#[derive(Debug)]
pub enum ProcessCommand {
    /// SIGKILL now; restart after `restart_after` (default: the crash backoff) unless
    /// `stay_down`.
    Kill {
        /// Keep it down until healed.
        stay_down: bool,
        /// Wait this long before the restart.
        restart_after: Option<Duration>,
    },
    /// SIGSTOP.
    Freeze,
    /// SIGCONT.
    Thaw,
    /// Undo process faults: thaw, and start it if it is down.
    Heal,
    /// Stop for good (SIGTERM, then SIGKILL after a grace period) and acknowledge.
    Stop(oneshot::Sender<()>),
    /// A rollout step: stop the current process gracefully and run this launch from now
    /// on (another version, binary or image); acknowledged once the new one is spawned.
    Replace(Box<Launch>, oneshot::Sender<()>),
}

/// Process state as shown by `geoha status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProcessState {
    /// Spawned and not stopped.
    Running,
    /// SIGSTOPped.
    Frozen,
    /// Waiting before a restart.
    Restarting,
    /// Killed with `stay_down`, or stopped.
    Down,
}

/// What the supervisor publishes about its replica.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessStatus {
    /// Current PID while a process exists.
    pub pid: Option<u32>,
    /// State.
    pub state: ProcessState,
    /// Restarts so far (crashes and kills).
    pub restarts: u64,
    /// How the last process ended, e.g. `signal 9`.
    pub last_exit: Option<String>,
    /// Version label of the running launch.
    pub version: String,
    /// Container mode: the image it runs.
    pub image: Option<String>,
}

/// How to start a replica process.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The `geoha` executable.
    pub exe: PathBuf,
    /// The replica's place in the plan.
    pub replica: ReplicaPlan,
    /// Drain delay passed to the replica.
    pub drain_delay: Duration,
    /// Where the replica's stderr goes (appended).
    pub log_file: Option<PathBuf>,
    /// Container mode: run it as this container instead of a process.
    pub container: Option<crate::containers::ContainerLaunch>,
}

impl Launch {
    fn api_args(&self, listen: &str) -> Vec<String> {
        [
            "--log-format",
            "json",
            "api",
            "--listen",
            listen,
            "--ip-lookup-url",
            "off",
            "--drain-deadline",
            "5s",
            "--drain-delay",
        ]
        .iter()
        .map(|s| (*s).to_string())
        .chain(std::iter::once(format!(
            "{}ms",
            self.drain_delay.as_millis()
        )))
        .collect()
    }

    fn command(&self) -> std::io::Result<tokio::process::Command> {
        let r = &self.replica;
        let mut cmd = match &self.container {
            Some(c) => {
                let listen = format!("0.0.0.0:{}", crate::containers::CONTAINER_PORT);
                let env = [
                    ("GEOHA_REGION", r.region.as_str()),
                    ("GEOHA_ZONE", r.zone.as_str()),
                    ("GEOHA_REPLICA", r.name.as_str()),
                    ("GEOHA_VERSION", r.version.as_str()),
                ];
                crate::containers::run_command(c, &self.api_args(&listen), &env).into_std()
            }
            None => {
                let mut cmd = std::process::Command::new(&self.exe);
                cmd.args(self.api_args(&r.addr.to_string()))
                    .env("GEOHA_REGION", &r.region)
                    .env("GEOHA_ZONE", &r.zone)
                    .env("GEOHA_REPLICA", &r.name)
                    .env("GEOHA_VERSION", &r.version)
                    .env("GEOHA_PARENT_PID", std::process::id().to_string())
                    .env_remove("PORT");
                cmd
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0);
        match &self.log_file {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                cmd.stderr(file);
            }
            None => {
                cmd.stderr(Stdio::null());
            }
        }
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        Ok(cmd)
    }
}

/// Handle to a running supervisor.
#[derive(Debug, Clone)]
pub struct Supervisor {
    commands: mpsc::Sender<ProcessCommand>,
    status: Arc<Mutex<ProcessStatus>>,
}

impl Supervisor {
    /// Starts the replica and supervises it until told to stop.
    pub fn start(launch: Launch) -> Supervisor {
        let (tx, rx) = mpsc::channel(16);
        let status = Arc::new(Mutex::new(ProcessStatus {
            pid: None,
            state: ProcessState::Restarting,
            restarts: 0,
            last_exit: None,
            version: launch.replica.version.clone(),
            image: launch.container.as_ref().map(|c| c.image.clone()),
        }));
        tokio::spawn(supervise(launch, rx, Arc::clone(&status)));
        Supervisor {
            commands: tx,
            status,
        }
    }

    /// Sends a command; fails only if the supervisor has stopped.
    pub async fn send(&self, cmd: ProcessCommand) -> Result<(), String> {
        self.commands
            .send(cmd)
            .await
            .map_err(|_| "the replica's supervisor has stopped".to_string())
    }

    /// Stops the replica and waits until it is gone.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.send(ProcessCommand::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// A snapshot of the process status.
    pub fn status(&self) -> ProcessStatus {
        self.status
            .lock()
            .map(|s| s.clone())
            .unwrap_or(ProcessStatus {
                pid: None,
                state: ProcessState::Down,
                restarts: 0,
                last_exit: None,
                version: String::new(),
                image: None,
            })
    }
}

fn set(status: &Mutex<ProcessStatus>, f: impl FnOnce(&mut ProcessStatus)) {
    if let Ok(mut s) = status.lock() {
        f(&mut s);
    }
}

fn signal(child: &Child, sig: Signal) {
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), sig);
    }
}

enum Next {
    /// Start again after this delay.
    RestartAfter(Duration),
    /// Wait for `Heal` (or `Stop`).
    StayDown,
    /// The supervisor is done.
    Stopped,
    /// Run another launch now (a rollout step), then acknowledge.
    Replace(Box<Launch>, oneshot::Sender<()>),
}

async fn supervise(
    mut launch: Launch,
    mut commands: mpsc::Receiver<ProcessCommand>,
    status: Arc<Mutex<ProcessStatus>>,
) {
    let name = launch.replica.name.clone();
    let mut backoff = FIRST_BACKOFF;
    let mut first = true;
    let mut replaced: Option<oneshot::Sender<()>> = None;
    loop {
        if !first && replaced.is_none() {
            set(&status, |s| s.restarts += 1);
        }
        first = false;
        let started = tokio::time::Instant::now();
        if let Some(c) = &launch.container {
            // A container of the same name may linger (`--rm` is asynchronous).
            let _ = crate::containers::docker(&["rm", "-f", &c.name]).await;
        }
        let next = match launch.command().and_then(|mut c| c.spawn()) {
            Ok(child) => {
                set(&status, |s| {
                    s.pid = child.id();
                    s.state = ProcessState::Running;
                    s.version = launch.replica.version.clone();
                    s.image = launch.container.as_ref().map(|c| c.image.clone());
                });
                if let Some(ack) = replaced.take() {
                    let _ = ack.send(());
                }
                tracing::debug!(replica = %name, pid = ?child.id(), "replica started");
                let container = launch.container.as_ref().map(|c| c.name.as_str());
                run_child(child, &name, container, &mut commands, &status, backoff).await
            }
            Err(err) => {
                tracing::error!(replica = %name, %err, "cannot start replica");
                if let Some(ack) = replaced.take() {
                    let _ = ack.send(());
                }
                Next::RestartAfter(backoff)
            }
        };
        if started.elapsed() > STABLE_AFTER {
            backoff = FIRST_BACKOFF;
        }
        match next {
            Next::Replace(new, ack) => {
                tracing::info!(replica = %name, version = %new.replica.version, "replacing replica");
                launch = *new;
                backoff = FIRST_BACKOFF;
                replaced = Some(ack);
            }
            Next::Stopped => {
                set(&status, |s| {
                    s.pid = None;
                    s.state = ProcessState::Down;
                });
                return;
            }
            Next::RestartAfter(delay) => {
                set(&status, |s| {
                    s.pid = None;
                    s.state = ProcessState::Restarting;
                });
                tracing::warn!(replica = %name, ?delay, "replica down; restarting");
                backoff = (backoff * 2).min(MAX_BACKOFF);
                // Commands still count while waiting: Stop ends, Heal restarts now.
                let wait = tokio::time::sleep(delay);
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        () = &mut wait => break,
                        cmd = commands.recv() => match cmd {
                            None => return,
                            Some(ProcessCommand::Stop(ack)) => {
                                set(&status, |s| s.state = ProcessState::Down);
                                let _ = ack.send(());
                                return;
                            }
                            Some(ProcessCommand::Heal) => break,
                            Some(ProcessCommand::Replace(new, ack)) => {
                                launch = *new;
                                replaced = Some(ack);
                                break;
                            }
                            Some(_) => {}
                        },
                    }
                }
            }
            Next::StayDown => {
                set(&status, |s| {
                    s.pid = None;
                    s.state = ProcessState::Down;
                });
                tracing::info!(replica = %name, "replica stays down until healed");
                loop {
                    match commands.recv().await {
                        None => return,
                        Some(ProcessCommand::Stop(ack)) => {
                            let _ = ack.send(());
                            return;
                        }
                        Some(ProcessCommand::Heal) => break,
                        Some(ProcessCommand::Replace(new, ack)) => {
                            launch = *new;
                            replaced = Some(ack);
                            break;
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }
}

async fn run_child(
    mut child: Child,
    name: &str,
    container: Option<&str>,
    commands: &mut mpsc::Receiver<ProcessCommand>,
    status: &Mutex<ProcessStatus>,
    backoff: Duration,
) -> Next {
    // What to do once the current process exits because we killed it.
    let mut after_kill: Option<Next> = None;
    loop {
        tokio::select! {
            exit = child.wait() => {
                let how = match exit {
                    Ok(st) => describe_exit(st),
                    Err(e) => e.to_string(),
                };
                set(status, |s| s.last_exit = Some(how.clone()));
                return match after_kill.take() {
                    Some(next) => next,
                    None => {
                        tracing::warn!(replica = %name, exit = %how, "replica exited unexpectedly");
                        Next::RestartAfter(backoff)
                    }
                };
            }
            cmd = commands.recv() => match cmd {
                None => {
                    if let Some(c) = container {
                        crate::containers::engine_fault(&["rm", "-f", c]).await;
                    }
                    let _ = child.kill().await;
                    return Next::Stopped;
                }
                Some(ProcessCommand::Kill { stay_down, restart_after }) => {
                    match container {
                        // The engine kills paused containers too; the CLI then exits.
                        Some(c) => crate::containers::engine_fault(&["kill", c]).await,
                        // SIGKILL works on frozen processes too.
                        None => signal(&child, Signal::SIGKILL),
                    }
                    after_kill = Some(if stay_down {
                        Next::StayDown
                    } else {
                        Next::RestartAfter(restart_after.unwrap_or(backoff))
                    });
                }
                Some(ProcessCommand::Freeze) => {
                    match container {
                        Some(c) => crate::containers::engine_fault(&["pause", c]).await,
                        None => signal(&child, Signal::SIGSTOP),
                    }
                    set(status, |s| s.state = ProcessState::Frozen);
                }
                Some(ProcessCommand::Thaw) | Some(ProcessCommand::Heal) => {
                    let frozen = matches!(
                        status.lock().map(|s| s.state),
                        Ok(ProcessState::Frozen)
                    );
                    match container {
                        Some(c) if frozen => crate::containers::engine_fault(&["unpause", c]).await,
                        Some(_) => {}
                        None => signal(&child, Signal::SIGCONT),
                    }
                    set(status, |s| s.state = ProcessState::Running);
                }
                Some(ProcessCommand::Replace(new, ack)) => {
                    stop_child(&mut child, container).await;
                    return Next::Replace(new, ack);
                }
                Some(ProcessCommand::Stop(ack)) => {
                    stop_child(&mut child, container).await;
                    let _ = ack.send(());
                    return Next::Stopped;
                }
            }
        }
    }
}

/// Graceful stop of the current child: SIGTERM (or `docker stop`), bounded.
async fn stop_child(child: &mut Child, container: Option<&str>) {
    match container {
        Some(c) => {
            let _ = crate::containers::docker(&["unpause", c]).await;
            crate::containers::engine_fault(&["stop", "-t", "3", c]).await;
            if tokio::time::timeout(STOP_GRACE, child.wait())
                .await
                .is_err()
            {
                crate::containers::engine_fault(&["rm", "-f", c]).await;
                let _ = child.kill().await;
            }
        }
        None => {
            signal(child, Signal::SIGCONT);
            signal(child, Signal::SIGTERM);
            if tokio::time::timeout(STOP_GRACE, child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

fn describe_exit(st: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (st.code(), st.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => "unknown".into(),
    }
}
