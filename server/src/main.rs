//! The `ferridm` binary: parses flags (or `FERRIDM_*` variables), sets up logging and serves
//! until SIGTERM/SIGINT, which drain in-flight requests before a clean exit.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferridm::{ConfigErrors, ServerOptions};
use tracing_subscriber::EnvFilter;

/// mimalloc returns freed memory to the system soon after a burst (for example the 19 MiB
/// each argon2id check takes), where glibc's per-thread arenas keep it.
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
    #[arg(long, env = "FERRIDM_DB", default_value = "sqlite://data/ferridm.db")]
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
    /// with file and position and exit non-zero if there is any.
    Check,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        None | Some(Command::Serve) => serve(&cli),
        Some(Command::Check) => check(&cli),
    }
}

fn check(cli: &Cli) -> ExitCode {
    match ferridm::check(&cli.conf) {
        Ok(generation) => {
            println!(
                "{}: configuration OK ({} files, {} managed types, {} policies, {} access rules)",
                cli.conf.display(),
                generation.files.len(),
                generation.managed.all().len(),
                generation.policies.policy_ids().len(),
                generation.access.rules.len()
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for problem in &problems {
                println!("{problem}");
            }
            eprintln!("{} problem(s) found", problems.len());
            ExitCode::FAILURE
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
    ferridm::service::reload::reconcile_completeness(&state);
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
