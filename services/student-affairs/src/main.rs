//! `student-affairs`: run a Student Affairs service, or the one-command demo.
//!
//! Run with: `cargo run --release -p student-affairs -- demo`

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use student_affairs::{demo, serve};

#[derive(Parser)]
#[command(
    name = "student-affairs",
    version,
    about = "The Student Affairs example of seam (seed 000)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one service: its store, publisher, consumer and HTTP API.
    Serve(serve::ServeCommand),
    /// Start everything, drive the scenario, and report whether every flow is in sync.
    Demo(demo::DemoArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    seam::serve::init_logging();
    let result = match Cli::parse().command {
        Command::Serve(args) => serve::run(args).await.map(|()| ExitCode::SUCCESS),
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

    /// clap checks a command line's definition only when it parses; this checks it always
    /// (two flattened option structs once gave clap the same group name).
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
