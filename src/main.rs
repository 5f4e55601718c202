use std::process::ExitCode;

use clap::Parser;

use autopi_rx::cli::{Cli, Command};

fn main() -> ExitCode {
    autopi_rx::panic::install();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Simulate(args)) => return autopi_rx::simulate::main(args),
        Some(Command::View(args)) => return autopi_rx::dashboard::view::main(args),
        Some(Command::Replay(args)) => {
            return autopi_rx::capture::replay::main(&args.file, args.settings());
        }
        Some(Command::Export(args)) => {
            return autopi_rx::capture::export::main(
                &args.files,
                args.format.into(),
                args.filter(),
                args.output.as_deref(),
            );
        }
        None => {}
    }
    match cli.receive.settings().and_then(autopi_rx::run::run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(fatal) => {
            eprintln!("autopi-rx: {}", fatal.message);
            ExitCode::from(fatal.code)
        }
    }
}
