//! The `ferridm` binary: parses flags (or `FERRIDM_*` variables), sets up logging and serves
//! until SIGTERM/SIGINT, which drain in-flight requests before a clean exit.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferridm::log_sink::{self, LogSink};
use ferridm::{ConfigErrors, ServerOptions};
use tracing_subscriber::EnvFilter;

/// mimalloc returns freed memory to the system soon after a burst (for example the 19 MiB
/// each argon2id check takes), where glibc's per-thread arenas keep it. It is built without
/// transparent huge pages (`no_thp`): with them, every 2 MiB its arena touched stayed resident,
/// which doubled the resident size of a server under load for no measurable speed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// ferridm: an identity-management server speaking the PingIDM REST API.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Conf directory (IDM-style JSON); its parent is the project directory.
    #[arg(long, env = "FERRIDM_CONF", default_value = "conf", global = true)]
    conf: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "FERRIDM_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// This node's id among the nodes sharing the database (default: host name and port).
    #[arg(long, env = "FERRIDM_NODE_ID")]
    node_id: Option<String>,
    /// Database URL: sqlite://<path> (default) or postgres://user@host/db.
    #[arg(long, env = "FERRIDM_DB", default_value = "sqlite://data/ferridm.db", global = true)]
    db: String,
    /// Worker threads (default: one per CPU core).
    #[arg(long, env = "FERRIDM_WORKERS")]
    workers: Option<usize>,
    /// Serve a browser UI (a single-page app) from this directory at `/`.
    #[arg(long, env = "FERRIDM_UI")]
    ui: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve (the default).
    Serve,
    /// Validate a conf directory and its scripts exactly as a reload would; print each problem
    /// with file and position and exit non-zero if there is any. Files and keys of an IDM conf
    /// directory that ferridm does not implement are listed as warnings.
    Check(CheckArgs),
    /// Write every managed object (ids, revisions, metadata, secrets as stored) from one
    /// snapshot, with the conf directory and scripts: JSON lines on stdout, or a directory.
    Export(ExportArgs),
    /// Validate a ferridm export or IDM's objects as creates would, then write them all (or, if
    /// any fails, report each failure and write nothing).
    Import(ImportArgs),
}

/// `ferridm export`'s options.
#[derive(Debug, clap::Args)]
struct ExportArgs {
    /// Write `objects.jsonl` and copies of `conf/` and `scripts/` into this directory instead
    /// of JSON lines on stdout.
    #[arg(long)]
    output: Option<PathBuf>,
}

/// `ferridm import`'s options.
#[derive(Debug, clap::Args)]
struct ImportArgs {
    /// A ferridm export (directory or JSON-lines file), or IDM's objects: query responses
    /// (`{"result": [...]}`, several pages may follow each other), a JSON array or JSON lines.
    path: PathBuf,
    /// The managed type of the objects of an IDM file.
    #[arg(long = "type", default_value = "user")]
    object_type: String,
    /// Only validate, and report what would fail.
    #[arg(long)]
    dry_run: bool,
    /// Continue an interrupted import of the same file after its last committed batch.
    #[arg(long)]
    resume: bool,
    /// Objects written per transaction.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// `[ALIAS=]FILE`: IDM's symmetric key (`openidm-sym-default`), raw and base64-encoded in
    /// FILE, to decrypt IDM's `x-simple-encryption` values (passwords are then hashed); may be
    /// repeated, one per keystore alias.
    #[arg(long = "idm-key", value_name = "[ALIAS=]FILE")]
    idm_keys: Vec<String>,
}

fn main() -> ExitCode {
    // Request threads append formatted lines to a buffer that a logging thread writes out in
    // batches (`log_sink`); the guard writes whatever is still pending when `main` returns.
    let (log_writer, _log_flushed_on_exit) =
        match LogSink::start(std::io::stderr(), log_sink::Limits::default(), "ferridm-log") {
            Ok(started) => started,
            Err(error) => {
                eprintln!("ferridm: cannot start the logging thread: {error}");
                return ExitCode::FAILURE;
            }
        };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(log_writer)
        .init();
    let cli = Cli::parse();
    match cli.command {
        None | Some(Command::Serve) => serve(&cli),
        Some(Command::Check(ref args)) => check(&cli, args),
        Some(Command::Export(ref args)) => export(&cli, args),
        Some(Command::Import(ref args)) => import(&cli, args),
    }
}

/// `ferridm check`'s options.
#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// Also check every stored managed object of this database (opened read-only) against the
    /// configuration: exit 1 when an update of any would be refused, 0 when none would.
    #[arg(long, value_name = "DB_URL")]
    against: Option<String>,
    /// With --against: ids shown per finding.
    #[arg(long, default_value_t = 5, requires = "against")]
    sample: usize,
    /// With --against: `text` or `json`.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text, requires = "against")]
    format: ReportFormat,
    /// Fail (exit 1) when the conf directory uses files or keys ferridm does not implement.
    #[arg(long)]
    strict: bool,
}

/// How `check --against` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

/// `ferridm check`: gaps (warnings), then the loader's problems (exit 1), then with `--against`
/// the report over the stored data (exit 1 when anything would be rejected; 2 when the
/// database cannot be read).
fn check(cli: &Cli, args: &CheckArgs) -> ExitCode {
    let gaps = ferridm::config::gaps::report(&cli.conf);
    for gap in &gaps {
        println!("warning: {gap}");
    }
    if !gaps.is_empty() {
        eprintln!("{} file(s) or key(s) not implemented by ferridm", gaps.len());
    }
    let generation = match ferridm::check(&cli.conf) {
        Ok(generation) => generation,
        Err(problems) => {
            for problem in &problems {
                println!("{problem}");
            }
            eprintln!("{} problem(s) found", problems.len());
            return ExitCode::FAILURE;
        }
    };
    if args.format == ReportFormat::Text {
        println!(
            "{}: configuration OK ({} files, {} managed types, {} policies, {} access rules)",
            cli.conf.display(),
            generation.files.len(),
            generation.managed.all().len(),
            generation.policies.policy_ids().len(),
            generation.access.rules.len()
        );
    }
    let gaps_fail = args.strict && !gaps.is_empty();
    let Some(db) = &args.against else {
        return if gaps_fail {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    };
    let paths = ferridm::config::ConfigPaths::new(&cli.conf);
    let report = match ferridm::service::impact::assess(paths, generation, db, args.sample) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("cannot check the stored data: {error:#}");
            return ExitCode::from(2);
        }
    };
    match args.format {
        ReportFormat::Text => print!("{}", report.to_text()),
        ReportFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(error) => {
                eprintln!("cannot render the report: {error}");
                return ExitCode::from(2);
            }
        },
    }
    let rejected = report.rejected();
    if rejected > 0 {
        eprintln!("{rejected} stored object(s) would be rejected by an update");
    }
    if rejected > 0 || gaps_fail {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn export(cli: &Cli, args: &ExportArgs) -> ExitCode {
    match ferridm::export(&cli.conf, &cli.db, args.output.as_deref()) {
        Ok(summary) => {
            eprintln!("exported {} objects and {} files", summary.objects, summary.files);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("export failed: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn import(cli: &Cli, args: &ImportArgs) -> ExitCode {
    let mut idm_keys = ferridm::secrets::password::idm_encryption::IdmKeys::default();
    for spec in &args.idm_keys {
        if let Err(error) = idm_keys.add(spec) {
            eprintln!("import failed: --idm-key {error}");
            return ExitCode::from(2);
        }
    }
    let options = ferridm::service::transfer::import::ImportOptions {
        path: args.path.clone(),
        object_type: args.object_type.clone(),
        dry_run: args.dry_run,
        resume: args.resume,
        batch_size: args.batch_size as usize,
        idm_keys,
    };
    match ferridm::import(&cli.conf, &cli.db, &options) {
        Ok(ferridm::service::transfer::import::ImportOutcome::Done {
            checked,
            written,
            resumed,
        }) => {
            let verb = if args.dry_run { "would import" } else { "imported" };
            eprintln!("{checked} objects valid; {verb} {written}; {resumed} written by an earlier run");
            ExitCode::SUCCESS
        }
        Ok(ferridm::service::transfer::import::ImportOutcome::Refused { checked, failed }) => {
            eprintln!("{failed} of {checked} objects fail validation; nothing was written");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("import failed: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn serve(cli: &Cli) -> ExitCode {
    let options = ServerOptions {
        conf_dir: cli.conf.clone(),
        listen: cli.listen.clone(),
        db: cli.db.clone(),
        workers: cli.workers,
        ui_dir: cli.ui.clone(),
        clock: None,
        node_id: cli.node_id.clone(),
        ..ServerOptions::default()
    };
    let state = match ferridm::prepare(&options) {
        Ok(state) => state,
        Err(error) => {
            if let Some(ConfigErrors(errors)) = error.downcast_ref::<ConfigErrors>() {
                for problem in errors {
                    tracing::error!(file = %problem.file, "{problem}");
                }
            } else {
                tracing::error!("{error:#}");
            }
            return ExitCode::from(2);
        }
    };
    let listener = match std::net::TcpListener::bind(&options.listen) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(listen = %options.listen, "cannot listen: {error}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(listen = %options.listen, "ferridm listening");
    let _watch = ferridm::service::reload::watch(&state);
    ferridm::service::reindex::reconcile(&state);
    ferridm::service::reload::reconcile_completeness(&state);
    ferridm::service::roles::reconcile(&state);
    let port = listener.local_addr().map(|addr| addr.port()).unwrap_or_default();
    let node_id = options
        .node_id
        .clone()
        .unwrap_or_else(|| ferridm::service::cluster::default_node_id(port));
    let _membership = ferridm::service::cluster::join(&state, node_id);
    let serving = std::sync::Arc::clone(&state);
    let result = actix_web::rt::System::new().block_on(async move {
        match ferridm::server(serving, listener, options.workers, options.ui_dir) {
            Ok(server) => server.await,
            Err(error) => Err(error),
        }
    });
    ferridm::service::audit::stop_writer(&state);
    match result {
        Ok(()) => {
            tracing::info!("ferridm stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!("server failed: {error}");
            ExitCode::FAILURE
        }
    }
}
