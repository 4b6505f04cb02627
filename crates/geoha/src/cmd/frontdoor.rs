//! `geoha frontdoor`: the global HTTP router, configured by a TOML file; SIGHUP reloads.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use geoha_frontdoor::{Config, FrontdoorError, Listeners};
use tokio::signal::unix::{signal, SignalKind};

use crate::exit::BadInput;

#[derive(Debug, Args)]
pub(crate) struct FrontdoorArgs {
    /// The front door's config (TOML; see crates/frontdoor/CONFIG.md).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

pub(crate) fn run(args: FrontdoorArgs) -> anyhow::Result<ExitCode> {
    let rt = super::runtime()?;
    rt.block_on(async move {
        // File, line and key are in the message; a bad file exits 64.
        let cfg = Config::from_file(args.config.clone())
            .await
            .map_err(|e| BadInput(e.to_string()))?;
        if cfg.listeners.is_empty() {
            return Err(BadInput(format!(
                "{}: at least one [[listener]] with an address is required",
                args.config.display()
            ))
            .into());
        }
        let mut traffic = Vec::new();
        for l in &cfg.listeners {
            let listener = tokio::net::TcpListener::bind(l.address)
                .await
                .with_context(|| format!("cannot listen on {}", l.address))?;
            traffic.push(listener);
        }
        let admin = match cfg.admin.as_ref().and_then(|a| a.address) {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (admin)"))?,
            ),
            None => None,
        };

        // SIGHUP: parse, validate, send. A bad file is logged and the running config stays.
        let cfg = Arc::new(cfg);
        let (reloads, reload_rx) = tokio::sync::watch::channel(Arc::clone(&cfg));
        let path = args.config.clone();
        let mut hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match Config::from_file(path.clone()).await {
                    Ok(next) => {
                        tracing::info!(file = %path.display(), "SIGHUP: reloading");
                        let _ = reloads.send(Arc::new(next));
                    }
                    Err(err) => {
                        tracing::error!("SIGHUP: config refused, keeping the running one:\n{err}")
                    }
                }
            }
        });

        match geoha_frontdoor::run(
            cfg,
            Listeners { traffic, admin },
            reload_rx,
            crate::signals::shutdown(),
        )
        .await
        {
            Ok(()) => Ok(ExitCode::SUCCESS),
            // Unusable config content (bad TLS files included) is the user's input: 64.
            Err(e @ (FrontdoorError::Config(_) | FrontdoorError::Tls { .. })) => {
                Err(BadInput(e.to_string()).into())
            }
            Err(e) => Err(e.into()),
        }
    })
}
