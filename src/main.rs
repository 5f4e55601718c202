use std::process::ExitCode;

use clap::Parser;

use autopi_rx::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match autopi_rx::receive::run(cli.receive) {
        Ok(()) => ExitCode::SUCCESS,
        Err(fatal) => {
            eprintln!("autopi-rx: {}", fatal.message);
            ExitCode::from(fatal.code)
        }
    }
}
