use std::process::ExitCode;

use clap::Parser;
use vitrine::app::App;
use vitrine::cli::{Cli, Command, ServeArgs};
use vitrine::config::{Overrides, Settings};

/// mimalloc rather than the system allocator: a request allocates and frees many small
/// objects on several worker threads, where glibc's arenas contend on their locks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Healthcheck(args) => {
            if vitrine::cli::healthcheck(&args.url) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    let overrides = Overrides {
        config_file: args.config.clone(),
        addr: args.addr,
        redis: args.redis.clone(),
    };
    let settings = match Settings::load(&args.config_dir, &overrides) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vitrine: {e}");
            return ExitCode::from(2);
        }
    };
    vitrine::telemetry::init(&settings.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vitrine: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let app = match App::build(settings).await {
            Ok(app) => app,
            Err(e) => {
                tracing::error!(error = %e, "start-up failed");
                return ExitCode::FAILURE;
            }
        };
        match app.run_until(shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "server failed");
                ExitCode::FAILURE
            }
        }
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
