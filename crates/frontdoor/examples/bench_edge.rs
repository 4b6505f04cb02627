//! Benchmark fixture: two tiny HTTP/1.1 origins and a front door over them, in one
//! process, on fixed loopback ports, so that wrk can compare the origin direct, HAProxy
//! over the same origins, and the front door.
//!
//! ```text
//! cargo run --release -p geoha-frontdoor --example bench_edge -- 127.0.0.1:18081 127.0.0.1:18082 127.0.0.1:18080
//! wrk -t2 -c64 -d10s --latency http://127.0.0.1:18081/      # origin direct
//! wrk -t2 -c64 -d10s --latency http://127.0.0.1:18080/      # front door
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use geoha_frontdoor::{
    Config, Listeners, OriginConfig, OriginGroupConfig, ProbeConfig, RouteConfig,
};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

async fn origin(addr: SocketAddr, name: &'static str) {
    let listener = TcpListener::bind(addr).await.expect("bind origin");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(move |_req| async move {
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(
                    name.as_bytes(),
                ))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn main() {
    let args: Vec<SocketAddr> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("address"))
        .collect();
    let [a, b, front] = args[..] else {
        eprintln!("usage: bench_edge ORIGIN_A ORIGIN_B FRONTDOOR");
        std::process::exit(64);
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        tokio::spawn(origin(a, "a"));
        tokio::spawn(origin(b, "b"));
        let cfg = Config {
            routes: vec![RouteConfig {
                origin_group: "api".into(),
                ..RouteConfig::default()
            }],
            origin_groups: vec![OriginGroupConfig {
                name: "api".into(),
                probe: ProbeConfig {
                    interval: Duration::from_secs(1),
                    ..ProbeConfig::default()
                },
                origins: vec![OriginConfig::new("a", a), OriginConfig::new("b", b)],
                ..OriginGroupConfig::default()
            }],
            ..Config::default()
        };
        let cfg = Arc::new(cfg);
        let (_reloads, rx) = tokio::sync::watch::channel(Arc::clone(&cfg));
        let traffic = TcpListener::bind(front).await.expect("bind front door");
        eprintln!("origins {a} {b}, front door {front}");
        geoha_frontdoor::run(
            cfg,
            Listeners {
                traffic: vec![traffic],
                admin: None,
            },
            rx,
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
        )
        .await
        .expect("front door");
    });
}
