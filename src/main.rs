use std::process::ExitCode;

use clap::Parser;

use autopi_rx::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Simulate(args)) = cli.command {
        return autopi_rx::simulate::main(args);
    }
    match autopi_rx::receive::run(cli.receive) {
        Ok(()) => ExitCode::SUCCESS,
        Err(fatal) => {
            eprintln!("autopi-rx: {}", fatal.message);
            ExitCode::from(fatal.code)
        }
    }
}
