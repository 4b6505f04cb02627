//! `geoha api`: one replica of the sample service.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use geoha_api::{Config, IpLookup, ReplicaIdentity};

use crate::exit::BadInput;

/// Where the reference looks up its public IP (ipify answers with the IP as text).
const DEFAULT_IP_LOOKUP_URL: &str = "http://api.ipify.org/";

#[derive(Debug, Args)]
pub(crate) struct ApiArgs {
    /// Address to listen on [default: 127.0.0.1:$PORT, PORT defaulting to 8080].
    /// Containers and manifests pass 0.0.0.0:8080 explicitly.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Port on loopback when --listen is not given.
    #[arg(long, env = "PORT", default_value = "8080", hide_env_values = true)]
    port: String,
    /// Region label of the answers.
    #[arg(long, env = "GEOHA_REGION", default_value = "local")]
    region: String,
    /// Zone label of the answers.
    #[arg(long, env = "GEOHA_ZONE", default_value = "1")]
    zone: String,
    /// Replica name [default: the hostname].
    #[arg(long, env = "GEOHA_REPLICA")]
    replica: Option<String>,
    /// Version label [default: the build's version].
    #[arg(long = "service-version", env = "GEOHA_VERSION")]
    service_version: Option<String>,
    /// http:// URL that answers with the public IP as text; `off` disables the lookup.
    #[arg(long, env = "GEOHA_IP_LOOKUP_URL", default_value = DEFAULT_IP_LOOKUP_URL)]
    ip_lookup_url: String,
    /// Upper bound for one public IP lookup.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    ip_lookup_timeout: Duration,
    /// Time between public IP lookups.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    ip_refresh: Duration,
    /// After SIGTERM, keep serving (with /readyz at 503) this long before closing.
    #[arg(long, env = "GEOHA_DRAIN_DELAY", default_value = "5s", value_parser = humantime::parse_duration)]
    drain_delay: Duration,
    /// Then wait at most this long for in-flight requests.
    #[arg(long, env = "GEOHA_DRAIN_DEADLINE", default_value = "20s", value_parser = humantime::parse_duration)]
    drain_deadline: Duration,
    /// Log one line per request.
    #[arg(long)]
    access_log: bool,
    /// Chaos: answer this share (0..1) of /default/ requests with 500 while probes stay
    /// healthy (a "bad version" for drills and rollout tests).
    /// (`GEOHA_INJECT_ERRORS` in the environment: an image with it set is a bad version.)
    #[arg(
        long,
        env = "GEOHA_INJECT_ERRORS",
        default_value_t = 0.0,
        value_name = "SHARE"
    )]
    inject_errors: f64,
    /// Chaos: answer /default/ only after this long while probes stay fast (a "slow
    /// version"; `GEOHA_INJECT_LATENCY` in the environment), e.g. 300ms.
    #[arg(long, env = "GEOHA_INJECT_LATENCY", value_parser = humantime::parse_duration, value_name = "DUR")]
    inject_latency: Option<Duration>,
}

impl ApiArgs {
    /// Validates the arguments into the library's config and the listen address.
    fn into_config(self) -> Result<(Config, SocketAddr), BadInput> {
        if !(0.0..=1.0).contains(&self.inject_errors) {
            return Err(BadInput(format!(
                "--inject-errors {}: a share between 0 and 1",
                self.inject_errors
            )));
        }
        let listen = match self.listen {
            Some(addr) => addr,
            None => {
                let port: u16 = self.port.parse().map_err(|_| {
                    BadInput(format!(
                        "PORT: {:?} is not a port number (1-65535)",
                        self.port
                    ))
                })?;
                SocketAddr::from(([127, 0, 0, 1], port))
            }
        };
        for (key, value) in [("region", &self.region), ("zone", &self.zone)] {
            check_label(key, value)?;
        }
        let hostname = ReplicaIdentity::os_hostname();
        let replica = self.replica.unwrap_or_else(|| hostname.clone());
        check_label("replica", &replica)?;
        let ip_lookup = match self.ip_lookup_url.as_str() {
            "off" | "" => None,
            url => Some(
                IpLookup::new(url, self.ip_lookup_timeout, self.ip_refresh)
                    .map_err(|e| BadInput(format!("--ip-lookup-url: {e}")))?,
            ),
        };
        let identity = ReplicaIdentity {
            hostname,
            region: self.region,
            zone: self.zone,
            replica,
            version: self
                .service_version
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string()),
        };
        Ok((
            Config {
                identity,
                ip_lookup,
                drain_delay: self.drain_delay,
                drain_deadline: self.drain_deadline,
                access_log: self.access_log,
                inject_errors: self.inject_errors,
                inject_latency: self.inject_latency.unwrap_or_default(),
            },
            listen,
        ))
    }
}

/// Labels travel in headers and JSON: keep them short and printable.
fn check_label(key: &str, value: &str) -> Result<(), BadInput> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(BadInput(format!(
            "--{key}: {value:?} must be 1-63 characters of [A-Za-z0-9._-]"
        )))
    }
}

pub(crate) fn run(args: ApiArgs) -> anyhow::Result<ExitCode> {
    let (cfg, listen) = args.into_config()?;
    let rt = super::runtime()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        geoha_api::run(cfg, listener, crate::signals::shutdown()).await?;
        Ok(ExitCode::SUCCESS)
    })
}
