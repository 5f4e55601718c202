use std::process::ExitCode;

use clap::Parser;

use autopi_rx::cli::{Cli, Command};

fn main() -> ExitCode {
    autopi_rx::panic::install();
    let cli = Cli::parse();
    if let Some(Command::Simulate(args)) = cli.command {
        return autopi_rx::simulate::main(args);
    }
    match cli.receive.settings().and_then(autopi_rx::run::run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(fatal) => {
            eprintln!("autopi-rx: {}", fatal.message);
            ExitCode::from(fatal.code)
        }
    }
}
