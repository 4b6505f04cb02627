//! The data plane: `workers` threads, each running its own current-thread tokio runtime
//! that serves the client connections handed to it (the nginx / pingora model).
//!
//! A client connection stays on the worker that got it, and so do the origin connections
//! its requests open (`pool` keeps one idle list per worker): a request, its origin
//! connection and their wake-ups stay on one thread, with no work stealing and no
//! cross-thread wake-ups on the request path.
//!
//! The accept loops run on the caller's runtime and hand each connection to the worker with
//! the fewest open connections (ties in turn), as HAProxy's and Envoy's exact balance do:
//! the load spreads evenly whatever order the kernel wakes threads in.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::error::FrontdoorError;
use crate::server::{self, ConnectionSet};
use crate::tls::TlsAcceptor;
use crate::Frontdoor;

/// Accepted connections waiting for their worker; the accept loop waits when it is full
/// (the permits of `limits.max_connections` bound the total anyway).
const QUEUE: usize = 256;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker running this code (0 on any other thread).
pub(crate) fn current_worker() -> usize {
    WORKER.with(Cell::get)
}

/// Open client connections per worker (what the balance looks at; also a metric).
#[derive(Debug)]
pub(crate) struct WorkerLoad {
    open: Box<[AtomicUsize]>,
}

impl WorkerLoad {
    pub(crate) fn new(workers: usize) -> Self {
        WorkerLoad {
            open: (0..workers.max(1)).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// Open client connections of each worker.
    pub(crate) fn open(&self) -> Vec<usize> {
        self.open
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }
}

/// A client connection on its way to a worker.
pub(crate) struct Accepted {
    pub(crate) stream: std::net::TcpStream,
    pub(crate) peer: SocketAddr,
    /// Which traffic listener took it (its TLS settings).
    pub(crate) listener: usize,
    pub(crate) permit: OwnedSemaphorePermit,
}

/// Hands accepted connections to workers.
#[derive(Debug)]
pub(crate) struct Dispatcher {
    queues: Vec<mpsc::Sender<(Accepted, TaskTrackerToken)>>,
    fd: Arc<Frontdoor>,
    connections: ConnectionSet,
    turn: AtomicUsize,
}

impl Dispatcher {
    /// Queues `conn` on the least loaded worker. The connection counts for the drain from
    /// here on, so a shutdown waits for it even before its worker picked it up.
    pub(crate) async fn dispatch(&self, conn: Accepted) {
        let n = self.queues.len();
        let start = self.turn.fetch_add(1, Ordering::Relaxed);
        let load = &self.fd.workers.open;
        let worker = (0..n)
            .map(|k| (start + k) % n)
            .min_by_key(|&i| load[i].load(Ordering::Relaxed))
            .unwrap_or(0);
        load[worker].fetch_add(1, Ordering::Relaxed);
        let token = self.connections.token();
        if self.queues[worker].send((conn, token)).await.is_err() {
            // The worker is gone (it panicked): the connection is dropped, i.e. closed.
            load[worker].fetch_sub(1, Ordering::Relaxed);
            tracing::error!(worker, "data-plane worker is gone; connection dropped");
        }
    }
}

/// The running workers.
#[derive(Debug)]
pub(crate) struct DataPlane {
    dispatcher: Option<Arc<Dispatcher>>,
    workers: Vec<(oneshot::Receiver<()>, std::thread::JoinHandle<()>)>,
    stop: CancellationToken,
}

impl DataPlane {
    /// Starts `fd.workers`' count of threads; `tls[i]` serves connections of listener `i`.
    pub(crate) fn start(
        fd: &Arc<Frontdoor>,
        tls: Vec<Option<TlsAcceptor>>,
        connections: &ConnectionSet,
    ) -> Result<DataPlane, FrontdoorError> {
        let tls = Arc::new(tls);
        let stop = CancellationToken::new();
        let mut queues = Vec::new();
        let mut workers = Vec::new();
        for index in 0..fd.workers.open.len() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| FrontdoorError::Worker { index, source })?;
            let (queue, accepted) = mpsc::channel(QUEUE);
            let (done_tx, done) = oneshot::channel();
            let worker = Worker {
                index,
                fd: Arc::clone(fd),
                tls: Arc::clone(&tls),
                connections: connections.clone(),
            };
            let stop = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("geoha-fd-{index}"))
                .spawn(move || {
                    WORKER.with(|w| w.set(index));
                    runtime.block_on(worker.run(accepted, stop));
                    // Cuts whatever is left: connections past the drain deadline, idle
                    // origin connections.
                    drop(runtime);
                    let _ = done_tx.send(());
                })
                .map_err(|source| FrontdoorError::Worker { index, source })?;
            queues.push(queue);
            workers.push((done, thread));
        }
        Ok(DataPlane {
            dispatcher: Some(Arc::new(Dispatcher {
                queues,
                fd: Arc::clone(fd),
                connections: connections.clone(),
                turn: AtomicUsize::new(0),
            })),
            workers,
            stop,
        })
    }

    /// What the accept loops hand connections to.
    pub(crate) fn dispatcher(&self) -> Option<Arc<Dispatcher>> {
        self.dispatcher.clone()
    }

    /// Stops the workers (after the drain) and waits for their threads to end.
    pub(crate) async fn stop(mut self) {
        self.dispatcher = None;
        self.stop.cancel();
        for (done, thread) in std::mem::take(&mut self.workers) {
            // `done` comes last on the thread (or fails if it panicked): joining is quick.
            let _ = done.await;
            if thread.join().is_err() {
                tracing::error!("a data-plane worker panicked");
            }
        }
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        // `run` was dropped before it finished: do not leave the threads behind.
        self.stop.cancel();
    }
}

/// What one worker thread needs.
struct Worker {
    index: usize,
    fd: Arc<Frontdoor>,
    tls: Arc<Vec<Option<TlsAcceptor>>>,
    connections: ConnectionSet,
}

impl Worker {
    /// Serves the connections it is handed until `stop`. The queue closing (accepting
    /// stopped) is not the end: open connections are drained first.
    async fn run(
        self,
        mut accepted: mpsc::Receiver<(Accepted, TaskTrackerToken)>,
        stop: CancellationToken,
    ) {
        let worker = Arc::new(self);
        loop {
            let next = tokio::select! {
                next = accepted.recv() => next,
                () = stop.cancelled() => return,
            };
            let Some((conn, token)) = next else {
                break;
            };
            let worker = Arc::clone(&worker);
            tokio::spawn(async move {
                let _counted = token;
                let _open = OpenOnWorker(&worker);
                let Accepted {
                    stream,
                    peer,
                    listener,
                    permit,
                } = conn;
                let stream = match tokio::net::TcpStream::from_std(stream) {
                    Ok(s) => s,
                    Err(err) => {
                        tracing::warn!(%err, %peer, "cannot register a client connection");
                        return;
                    }
                };
                let tls = worker.tls.get(listener).cloned().flatten();
                server::serve_connection(
                    stream,
                    tls,
                    peer,
                    Arc::clone(&worker.fd),
                    worker.connections.drain_signal(),
                    permit,
                )
                .await;
            });
        }
        stop.cancelled().await;
    }
}

/// Counts a connection as open on its worker until dropped.
struct OpenOnWorker<'a>(&'a Worker);

impl Drop for OpenOnWorker<'_> {
    fn drop(&mut self) {
        self.0.fd.workers.open[self.0.index].fetch_sub(1, Ordering::Relaxed);
    }
}
