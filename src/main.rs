use std::io::IsTerminal;
use std::process::ExitCode;

use offloading_webhook::cli::{self, LogFormat};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match cli::parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        // Help and version go to stdout with 0; a usage error to stderr with its own code.
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(cli::USAGE_ERROR) } else { ExitCode::SUCCESS };
        }
    };
    init_tracing(cli.log_format);
    match offloading_webhook::run(cli.command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = cli::log_colour(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
