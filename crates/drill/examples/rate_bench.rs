//! Rate-accuracy benchmark: can the drill hold a constant rate on this machine?
//!
//! ```text
//! cargo run --release -p geoha-drill --example rate_bench -- [RATE] [SECONDS] [URL]
//! ```
//!
//! Defaults: 5000 req/s for 5 s against a minimal in-process HTTP server (so the
//! generator and the server share the machine's cores, as in a lab run). Prints the
//! achieved rate as a ratio of the target, the rate the server saw, and whether both
//! are within 2%; exits 1 when not.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use geoha_drill::{DrillPlan, Progress, TargetUrl};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

#[derive(Default)]
struct Seen {
    count: AtomicU64,
    first_last: Mutex<Option<(Instant, Instant)>>,
}

async fn serve(listener: tokio::net::TcpListener, seen: Arc<Seen>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let svc = service_fn(move |_req| {
                let seen = Arc::clone(&seen);
                async move {
                    seen.count.fetch_add(1, Ordering::Relaxed);
                    let now = Instant::now();
                    if let Ok(mut fl) = seen.first_last.lock() {
                        let first = fl.map_or(now, |(f, _)| f);
                        *fl = Some((first, now));
                    }
                    Ok::<_, Infallible>(
                        hyper::Response::builder()
                            .header("x-geoha-region", "bench")
                            .header("x-geoha-replica", "bench-z1-r0")
                            .body(Full::new(Bytes::from_static(b"{\"region\":\"bench\"}")))
                            .expect("static response"),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rate: f64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(5000.0);
    let secs: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let url = args.get(2).cloned();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let seen = Arc::new(Seen::default());
        let url = match url {
            Some(u) => u,
            None => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let addr = listener.local_addr().expect("addr");
                tokio::spawn(serve(listener, Arc::clone(&seen)));
                format!("http://{addr}/default/")
            }
        };
        let mut plan = DrillPlan::new(TargetUrl::parse(&url).expect("url"), None);
        plan.rate = rate;
        plan.duration = Duration::from_secs(secs);
        plan.connections = 256;
        let report = geoha_drill::run(plan, Progress::stderr()).await.expect("drill");
        let ratio = report.achieved_rate / rate;
        println!(
            "target {rate} req/s for {secs}s: achieved {:.1} req/s (ratio {ratio:.4}), sent {}, ok {}, failed {}, late {} (worst lag {:.1} ms), p50 {:.3} ms, p99 {:.3} ms",
            report.achieved_rate, report.sent, report.ok, report.failed, report.behind_schedule,
            report.max_schedule_lag_ms, report.latency_ms.p50, report.latency_ms.p99
        );
        let mut pass = (ratio - 1.0).abs() <= 0.02 && report.kept_up;
        let n = seen.count.load(Ordering::Relaxed);
        if let Some((first, last)) = *seen.first_last.lock().expect("lock") {
            let server_rate = (n.saturating_sub(1)) as f64 / (last - first).as_secs_f64();
            let server_ratio = server_rate / rate;
            println!("server saw {n} requests at {server_rate:.1} req/s (ratio {server_ratio:.4})");
            pass &= (server_ratio - 1.0).abs() <= 0.02;
        }
        println!("{}", if pass { "PASS: within 2%" } else { "FAIL: not within 2%" });
        if pass {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        }
    })
}
