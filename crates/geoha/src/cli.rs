//! The clap definition of every subcommand (what the user typed); validation into
//! typed library configs happens in `cmd::*`.

use clap::{Parser, Subcommand, ValueEnum};

/// Keeps an HTTP service available across zones and regions, and proves it.
#[derive(Debug, Parser)]
#[command(name = "geoha", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// Log format: `pretty` for people, `json` for machines.
    #[arg(
        long,
        global = true,
        env = "GEOHA_LOG_FORMAT",
        default_value = "pretty"
    )]
    pub(crate) log_format: LogFormat,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the sample API service (one replica).
    Api(crate::cmd::api::ApiArgs),
    /// Run an OCI registry replica (`gc` collects garbage).
    Registry(crate::cmd::registry::RegistryArgs),
    /// Run the global HTTP router (Front Door) from a config file; SIGHUP reloads it.
    Frontdoor(crate::cmd::frontdoor::FrontdoorArgs),
    /// Run the whole multi-region system on this machine (Ctrl-C stops it).
    Up(crate::cmd::lab::UpArgs),
    /// Stop a running lab.
    Down(crate::cmd::lab::DownArgs),
    /// Show the running lab: regions, replicas, health, traffic share, faults.
    Status(crate::cmd::lab::StatusArgs),
    /// Break the running lab on purpose: kill|freeze|thaw|slow|loss|partition|error-rate|heal.
    Fault(crate::cmd::lab::FaultArgs),
    /// Roll a new version out through the running lab, region by region, with a health
    /// gate and automatic rollback.
    #[command(disable_version_flag = true)]
    Deploy(crate::cmd::lab::DeployArgs),
    /// Validate or print a topology file.
    Topology(crate::cmd::topology::TopologyArgs),
    /// Convert the reference's variables.json into a topology file.
    Import(crate::cmd::topology::ImportArgs),
    /// Write the real-cloud deployment of a topology: Kubernetes (kustomize base and
    /// one overlay per region), Bicep, and the GitHub Actions workflow.
    Render(crate::cmd::render::RenderArgs),
    /// Measure availability: steady load, scripted faults, a report.
    Drill(crate::cmd::drill::DrillArgs),
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn every_subcommand_is_well_formed() {
        // clap's own consistency checks (duplicate names, conflicting flags) for every
        // subcommand, which otherwise only fire when that subcommand is used.
        super::Cli::command().debug_assert();
        // Building a subcommand (as parsing does) runs the checks that involve
        // propagated flags such as --version.
        for sub in super::Cli::command().get_subcommands() {
            let name = sub.get_name().to_string();
            let err = <super::Cli as clap::Parser>::try_parse_from(["geoha", &name, "--help"])
                .expect_err("--help ends parsing");
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::DisplayHelp,
                "{name}: {err}"
            );
        }
    }
}
