#![deny(clippy::print_stderr, clippy::print_stdout)]

use std::process::ExitCode;

use autopi_rx::cli::Command;

fn main() -> ExitCode {
    autopi_rx::panic::install();
    autopi_rx::tune_allocator();
    let cli = autopi_rx::cli::parse();
    match cli.command {
        Some(Command::Simulate(args)) => return autopi_rx::simulate::main(args),
        Some(Command::View(mut args)) => {
            args.files = autopi_rx::input::distinct(&args.files, "view");
            return autopi_rx::dashboard::view::main(args);
        }
        Some(Command::Replay(args)) => {
            return autopi_rx::capture::replay::main(&args.file, args.settings());
        }
        Some(Command::Export(args)) => {
            return autopi_rx::capture::export::main(
                &autopi_rx::input::distinct(&args.files, "export"),
                args.format.into(),
                args.filter(),
                args.output.as_deref(),
                if args.spreadsheet_safe {
                    autopi_rx::capture::export::Cells::SpreadsheetSafe
                } else {
                    autopi_rx::capture::export::Cells::AsCaptured
                },
            );
        }
        Some(Command::Fingerprint) => {
            return match autopi_rx::cli::first_line(&mut std::io::stdin().lock())
                .and_then(|input| autopi_rx::cli::fingerprint(&input))
            {
                Ok(fp) => autopi_rx::cli::written(
                    &format!("{fp}\n"),
                    "autopi-rx fingerprint: cannot write the fingerprint",
                ),
                Err(why) => {
                    autopi_rx::say!("autopi-rx fingerprint: {why}");
                    ExitCode::from(2)
                }
            };
        }
        None => {}
    }
    match cli.receive.settings().and_then(autopi_rx::run::run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(fatal) => {
            autopi_rx::say!("autopi-rx: {}", fatal.message);
            ExitCode::from(fatal.code)
        }
    }
}
