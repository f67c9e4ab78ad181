//! `signalbox jobs …`: background jobs from the command line. `work` and `bench` run the
//! worker runtime (`jobs_worker.rs`).

use crate::Common;

#[derive(clap::Subcommand, Debug)]
pub enum JobsCommand {
    /// Run job workers (no HTTP) against the configured database until SIGINT/SIGTERM.
    Work(crate::jobs_worker::WorkArgs),
    /// Measure jobs per second through enqueue → claim → complete, and enqueue latency.
    Bench(crate::jobs_worker::BenchArgs),
}

pub async fn run(common: Common, cmd: JobsCommand) -> anyhow::Result<()> {
    match cmd {
        JobsCommand::Work(args) => crate::jobs_worker::work(common, args).await,
        JobsCommand::Bench(args) => crate::jobs_worker::bench(common, args).await,
    }
}
