//! `customer-order`: the CRUD services, their seam adapters, and the one-command demo.
//!
//! Run with: `cargo run --release -p customer-order -- demo`

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use customer_order::{adapter, crud, demo};

#[derive(Parser)]
#[command(
    name = "customer-order",
    version,
    about = "Seed 002 on seam: CRUD services on PostgreSQL kept in sync"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a CRUD service (no seam inside): its HTTP API on its own database.
    Crud(crud::CrudArgs),
    /// Run a service's seam adapter: its CDC source and its database sink.
    Adapter(adapter::AdapterArgs),
    /// Start everything, send the requests, register the order service late, and report
    /// whether both databases are in sync.
    Demo(demo::DemoArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    seam::serve::init_logging();
    let result = match Cli::parse().command {
        Command::Crud(args) => crud::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Adapter(args) => adapter::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Demo(args) => demo::run(args).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
