//! The command line: `vitrine serve` runs the service; `vitrine import` bulk-loads
//! products, customers, orders or events into its store; `vitrine healthcheck` probes a
//! running one (used by the container's HEALTHCHECK, which has no curl).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "vitrine",
    version,
    about = "Real-time personalization for headless commerce"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service.
    Serve(ServeArgs),
    /// Load products, customers, orders or events from an NDJSON or CSV file (also
    /// Shopify's product and order exports) into the configured store.
    Import(ImportArgs),
    /// Offline evaluation on a public dataset, with its published protocol.
    Eval(EvalArgs),
    /// Train the models from the store's event log (or an events file) on the stored
    /// catalog, and store them: running replicas swap them in.
    Train(TrainArgs),
    /// Exit 0 when a running service answers 200 on the given URL, 1 otherwise.
    Healthcheck(HealthcheckArgs),
    /// Write the API's OpenAPI 3.1 document (as `GET /openapi.json` serves it) to
    /// standard output.
    Openapi,
    /// The decision log: `decisions export` streams records for a warehouse.
    #[command(subcommand)]
    Decisions(DecisionsCommand),
}

#[derive(Debug, Subcommand)]
pub enum DecisionsCommand {
    /// Writes the kept decisions made in a time range to standard output, one JSON
    /// record per line, oldest first (as `GET /admin/v1/decisions/{id}` shows them).
    Export(ExportArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Ndjson,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// From this time: Unix milliseconds or RFC 3339 (`2026-11-30T00:00:00Z`).
    #[arg(long, value_name = "TIME")]
    pub since: String,
    /// Until this time (not included); default: now.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    #[arg(long, value_enum, default_value = "ndjson")]
    pub format: ExportFormat,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (overrides server.addr), e.g. 0.0.0.0:8080.
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<SocketAddr>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ImportKind {
    Products,
    Customers,
    Orders,
    Events,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ImportFormat {
    /// `.csv` files are CSV, anything else NDJSON.
    Auto,
    Ndjson,
    Csv,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// What the file holds.
    #[arg(value_enum)]
    pub kind: ImportKind,
    /// The file to load.
    pub file: PathBuf,
    #[command(flatten)]
    pub rows: RowArgs,
    /// The currency of a Shopify product export's prices (the export does not say);
    /// else `shopify.shop_currency`; with neither, such a file is refused.
    #[arg(long, value_name = "ISO 4217")]
    pub currency: Option<String>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// How a data file is read (import, train).
#[derive(Debug, Args)]
pub struct RowArgs {
    #[arg(long, value_enum, default_value = "auto")]
    pub format: ImportFormat,
    /// Bad rows tolerated before the command exits 1 (every row is still tried).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_errors: u64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum EvalDataset {
    Diginetica,
    Beauty,
    Tafeng,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum EvalFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[arg(long, value_enum)]
    pub dataset: EvalDataset,
    /// The dataset's directory (e.g. ../shared/data/diginetica).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    #[arg(long, value_enum, default_value = "table")]
    pub format: EvalFormat,
    /// Evaluate on the validation split (held out from training data) instead of the
    /// test split: for tuning.
    #[arg(long)]
    pub validation: bool,
    /// Turns the diversity cap off for this run (reported); by default the evaluation
    /// runs exactly what the server would.
    #[arg(long)]
    pub no_diversity: bool,
    /// Replay the test cases through the running server at URL as well (Diginetica),
    /// and report served beside evaluated. The server runs on the store these settings
    /// name (Redis), with no catalog of its own (`demo.enabled = false`).
    #[arg(long, value_name = "URL")]
    pub via_http: Option<String>,
    /// Only the first N test sessions (both figures on the same cases).
    #[arg(long, value_name = "N")]
    pub sessions: Option<usize>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// An events file to train on (NDJSON or CSV, as `import events` reads). Without
    /// it, the store's event log is the history.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    #[command(flatten)]
    pub rows: RowArgs,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Where settings come from (shared by the commands that read them).
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// An extra TOML file, layered over config/base.toml and config/$VITRINE_ENV.toml.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Use Redis at this URL as the shared store (sets storage.backend = "redis").
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// Directory holding base.toml and the per-environment files.
    #[arg(
        long,
        value_name = "DIR",
        env = "VITRINE_CONFIG_DIR",
        default_value = "config"
    )]
    pub config_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The URL to probe (plain http).
    #[arg(long, default_value = "http://127.0.0.1:8080/livez")]
    pub url: String,
}

/// Probes `url` with a plain HTTP/1.1 GET; true on a 200.
pub fn healthcheck(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let Some(addr) = authority.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return false;
    };
    let timeout = Duration::from_secs(2);
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && &head[9..12] == b"200"
}
