use std::process::ExitCode;

use clap::Parser;
use vitrine::app::App;
use vitrine::cli::{
    Cli, Command, ConfigArgs, DecisionsCommand, EvalArgs, EvalDataset, EvalFormat, ExportArgs,
    ExportFormat, ImportArgs, ImportFormat, ImportKind, ServeArgs, TrainArgs,
};
use vitrine::config::{Overrides, Settings};
use vitrine::ingest::import;

/// mimalloc rather than the system allocator: a request allocates and frees many small
/// objects on several worker threads, where glibc's arenas contend on their locks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Import(args) => import_file(&args),
        Command::Eval(args) => evaluate(&args),
        Command::Train(args) => train(&args),
        Command::Decisions(DecisionsCommand::Export(args)) => export_decisions(&args),
        Command::Openapi => {
            print!("{}", vitrine::http::openapi::document_text());
            ExitCode::SUCCESS
        }
        Command::Healthcheck(args) => {
            if vitrine::cli::healthcheck(&args.url) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn settings(config: &ConfigArgs, addr: Option<std::net::SocketAddr>) -> Result<Settings, ExitCode> {
    let overrides = Overrides {
        config_file: config.config.clone(),
        addr,
        redis: config.redis.clone(),
    };
    Settings::load(&config.config_dir, &overrides).map_err(|e| {
        eprintln!("vitrine: {e}");
        ExitCode::from(2)
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("vitrine: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}

fn serve(args: &ServeArgs) -> ExitCode {
    let settings = match settings(&args.config, args.addr) {
        Ok(s) => s,
        Err(code) => return code,
    };
    vitrine::telemetry::init(&settings.log);
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
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

/// Settings and a runtime for a batch command: progress and results go to the
/// terminal, logs only for warnings.
fn batch(config: &ConfigArgs) -> Result<(Settings, tokio::runtime::Runtime), ExitCode> {
    let mut settings = settings(config, None)?;
    settings.log.level = "warn".into();
    vitrine::telemetry::init(&settings.log);
    Ok((settings, runtime()?))
}

/// `vitrine decisions export`: exit 0 when every kept record of the range was written,
/// 2 when the export cannot run (settings, times, store).
fn export_decisions(args: &ExportArgs) -> ExitCode {
    let (settings, runtime) = match batch(&args.config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let ExportFormat::Ndjson = args.format;
    let parse = |what: &str, raw: &str| {
        vitrine::domain::time::parse_time_ms(raw).ok_or_else(|| {
            eprintln!("vitrine: --{what} {raw:?} is neither Unix milliseconds nor RFC 3339");
            ExitCode::from(2)
        })
    };
    let since = match parse("since", &args.since) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let until = match args.until.as_deref().map(|u| parse("until", u)).transpose() {
        Ok(t) => t.unwrap_or_else(|| vitrine::domain::time::unix_now_ms() + 1),
        Err(code) => return code,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match runtime.block_on(vitrine::app::export_decisions(
        &settings, since, until, &mut out,
    )) {
        Ok(n) => {
            eprintln!("{n} decisions exported");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vitrine: {e}");
            ExitCode::from(2)
        }
    }
}

/// `vitrine import`: exit 0 when the bad lines are within `--max-errors`, 1 when over,
/// 2 when the import cannot run (settings, file, store).
fn import_file(args: &ImportArgs) -> ExitCode {
    let (settings, runtime) = match batch(&args.config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let kind = match args.kind {
        ImportKind::Products => import::Kind::Products,
        ImportKind::Customers => import::Kind::Customers,
        ImportKind::Orders => import::Kind::Orders,
        ImportKind::Events => import::Kind::Events,
    };
    let format = import_format(args.rows.format);
    let size = std::fs::metadata(&args.file).map_or(0, |m| m.len());
    let bar = indicatif::ProgressBar::new(size);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    let job = vitrine::app::ImportJob {
        kind,
        file: &args.file,
        format,
        currency: args.currency.as_deref(),
    };
    let progress = |bytes: u64, report: &import::Report| {
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        bar.set_position(bytes);
        bar.set_message(format!(
            "{} rows, {:.0} rows/s, {} bad",
            report.rows,
            report.rows as f64 / secs,
            report.bad.len()
        ));
    };
    let result = runtime.block_on(vitrine::app::import(&settings, &job, &progress));
    bar.finish_and_clear();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vitrine import: {e}");
            return ExitCode::from(2);
        }
    };
    let file = args.file.display();
    for bad in &report.bad {
        eprintln!("{file}:{}: {}", bad.line, bad.message);
    }
    println!("{file}: {}", report.summary(started.elapsed()));
    if report.bad.len() as u64 > args.rows.max_errors {
        eprintln!(
            "vitrine import: {} bad rows, over --max-errors {}",
            report.bad.len(),
            args.rows.max_errors
        );
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn import_format(f: ImportFormat) -> import::Format {
    match f {
        ImportFormat::Auto => import::Format::Auto,
        ImportFormat::Ndjson => import::Format::Ndjson,
        ImportFormat::Csv => import::Format::Csv,
    }
}

/// `vitrine train`: exit 0 when stored (1 when there were more bad rows than allowed),
/// 2 when it cannot run.
fn train(args: &TrainArgs) -> ExitCode {
    let (settings, runtime) = match batch(&args.config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let started = std::time::Instant::now();
    let events = args
        .events
        .as_deref()
        .map(|f| (f, import_format(args.rows.format)));
    let result = runtime.block_on(vitrine::app::train(&settings, events));
    let trained = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vitrine train: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(file) = &args.events {
        for bad in &trained.report.bad {
            eprintln!("{}:{}: {}", file.display(), bad.line, bad.message);
        }
    }
    println!("{}", trained.summary(started.elapsed()));
    if trained.report.bad.len() as u64 > args.rows.max_errors {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `vitrine eval`: prints the report (a table, or one JSON object); exit 2 when the data
/// cannot be read.
fn evaluate(args: &EvalArgs) -> ExitCode {
    // The served configuration: what the server would run with these settings.
    let (settings, runtime) = match batch(&args.config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let via_http = args
        .via_http
        .clone()
        .map(|url| vitrine::eval::served::ViaHttp {
            url,
            settings: settings.clone(),
        });
    let setup = vitrine::eval::Setup {
        recommend: settings.recommend,
        diversity: !args.no_diversity,
        via_http,
        sessions: args.sessions,
    };
    let dataset = match args.dataset {
        EvalDataset::Diginetica => vitrine::eval::Dataset::Diginetica,
        EvalDataset::Beauty => vitrine::eval::Dataset::Beauty,
        EvalDataset::Tafeng => vitrine::eval::Dataset::Tafeng,
    };
    match runtime.block_on(vitrine::eval::run(
        dataset,
        &args.data,
        args.validation,
        &setup,
    )) {
        Ok(report) => {
            match args.format {
                EvalFormat::Table => print!("{}", vitrine::eval::table(&report)),
                EvalFormat::Json => match serde_json::to_string(&report) {
                    Ok(json) => println!("{json}"),
                    Err(e) => {
                        eprintln!("vitrine eval: {e}");
                        return ExitCode::FAILURE;
                    }
                },
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vitrine eval: {e}");
            ExitCode::from(2)
        }
    }
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
