//! ferridm: an identity-management server speaking the PingIDM / ForgeRock IDM REST API.
//!
//! [`start`] loads the conf directory into a configuration generation, opens the store, and
//! serves `/openidm` over actix-web. The binary (`main.rs`) and the black-box tests both start
//! the server through it.

pub mod audit;
pub mod auth;
pub mod clock;
pub mod config;
pub mod gate;
pub mod generation;
pub mod http;
pub mod log_sink;
pub mod metrics;
pub mod oidc;
pub mod policy;
pub mod resource;
pub mod role_catalog;
pub mod sealed;
pub mod secrets;
pub mod selfservice;
pub mod service;
pub mod state;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::{App, middleware, web};
use anyhow::Context as _;
use ferridm_store::{Store, StoreOptions};

use crate::clock::{Clock, SystemClock};
use crate::config::{ConfigError, ConfigPaths};
use crate::secrets::PasswordHasher;
use crate::service::reload;
use crate::state::AppState;

/// How to start a server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The conf directory.
    pub conf_dir: PathBuf,
    /// Address to listen on (`127.0.0.1:8080`; port 0 picks a free port).
    pub listen: String,
    /// Database URL (`sqlite://…` or `postgres://…`).
    pub db: String,
    /// Worker threads (default: one per core).
    pub workers: Option<usize>,
    /// A directory holding a browser UI to serve at `/`.
    pub ui_dir: Option<PathBuf>,
    /// The clock (the system's unless a test brings one it can move).
    pub clock: Option<Arc<dyn Clock>>,
    /// This node's id among the nodes sharing the database (default: host name and port).
    pub node_id: Option<String>,
    /// Connections the database pool keeps ready (see [`StoreOptions::idle_connections`]; 0 for
    /// one-shot commands).
    pub idle_connections: u32,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            conf_dir: PathBuf::from("conf"),
            listen: "127.0.0.1:8080".to_owned(),
            db: "sqlite://data/ferridm.db".to_owned(),
            workers: None,
            ui_dir: None,
            clock: None,
            node_id: None,
            idle_connections: StoreOptions::default().idle_connections,
        }
    }
}

/// A configuration that could not be loaded: every problem, each naming its file.
#[derive(Debug, thiserror::Error)]
#[error("the configuration cannot be loaded:\n{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// Checks a conf directory exactly as a reload would; returns every problem found.
pub fn check(conf_dir: &std::path::Path) -> Result<generation::Generation, Vec<ConfigError>> {
    generation::load(&ConfigPaths::new(conf_dir), 1)
}

/// `ferridm export`: every managed object of the database at `db` from one snapshot, with the
/// conf directory and scripts, into `output` (a directory) or as JSON lines on stdout.
pub fn export(
    conf_dir: &std::path::Path,
    db: &str,
    output: Option<&std::path::Path>,
) -> anyhow::Result<service::transfer::export::ExportSummary> {
    use service::transfer::export::{ExportTarget, export};
    if let ferridm_store::DbTarget::Sqlite(path) = ferridm_store::DbTarget::parse(db)?
        && !path.exists()
    {
        anyhow::bail!("there is no database at {}", path.display());
    }
    let one_shot = StoreOptions {
        idle_connections: 0,
        ..StoreOptions::default()
    };
    let store = Store::open(db, &one_shot).with_context(|| format!("cannot open the database {}", redact_url(db)))?;
    let paths = ConfigPaths::new(conf_dir);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let summary = match output {
        Some(dir) => export(&store, &paths, ExportTarget::Directory(dir), &now)?,
        None => export(
            &store,
            &paths,
            ExportTarget::Stream(&mut std::io::stdout().lock()),
            &now,
        )?,
    };
    Ok(summary)
}

/// `ferridm import`: validates and writes the objects of `options.path` into the database at
/// `db` under the configuration of `conf_dir`; the report of failed objects goes to stdout.
pub fn import(
    conf_dir: &std::path::Path,
    db: &str,
    options: &service::transfer::import::ImportOptions,
) -> anyhow::Result<service::transfer::import::ImportOutcome> {
    let state = prepare(&ServerOptions {
        conf_dir: conf_dir.to_path_buf(),
        db: db.to_owned(),
        idle_connections: 0,
        ..ServerOptions::default()
    })?;
    let ctx = service::RequestContext::internal(Arc::clone(&state), state.generation());
    let outcome = service::transfer::import::import(&ctx, options, &mut std::io::stdout().lock());
    service::audit::stop_writer(&state);
    Ok(outcome?)
}

/// Loads configuration, secrets and the store (with the configuration shared by the nodes of a
/// PostgreSQL database applied): everything before listening.
pub fn prepare(options: &ServerOptions) -> anyhow::Result<Arc<AppState>> {
    let paths = ConfigPaths::new(&options.conf_dir);
    let generation = generation::load(&paths, 1).map_err(ConfigErrors)?;
    let data_dir = paths.resolve(&generation.settings.data_dir);
    let hasher = PasswordHasher::new(generation.settings.password_hashing);
    let secrets = secrets::load(
        generation.file("boot"),
        &paths.conf_dir.join("boot.json"),
        &data_dir,
        &hasher,
    )
    .map_err(|error| ConfigErrors(vec![error]))?;
    if secrets.admin_password_is_default {
        tracing::warn!("openidm-admin still has its default password: set adminPassword in conf/boot.json");
    }
    let store_options = StoreOptions {
        idle_connections: options.idle_connections,
        ..StoreOptions::default()
    };
    let store = Store::open(&options.db, &store_options)
        .with_context(|| format!("cannot open the database {}", redact_url(&options.db)))?;
    tracing::info!(backend = ?store.backend(), generation = generation.number, "configuration loaded");
    let clock = options.clock.clone().unwrap_or_else(|| Arc::new(SystemClock));
    let state = Arc::new(AppState::new(paths, store, secrets, generation, clock));
    service::audit::start_writer(&state);
    // Configuration changed over REST on other nodes wins over these files.
    service::shared_config::catch_up(&state);
    Ok(state)
}

/// A database URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***{}", &url[..scheme_end], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The actix server over prepared state, bound to `listener`. Accepted connections are read
/// through [`http::wire::RequestLineSanitizer`], so request targets with bytes actix's URI parser
/// refuses (a raw `"` in a query, as curl sends it) still reach ferridm. Connection limits and
/// timeouts come from `ferridm.json` → `http` as it is when the server starts.
pub fn server(
    state: Arc<AppState>,
    listener: TcpListener,
    workers: Option<usize>,
    ui_dir: Option<PathBuf>,
) -> std::io::Result<actix_web::dev::Server> {
    use actix_service::ServiceFactoryExt as _;
    let edge = state.generation().settings.http;
    let millis = std::time::Duration::from_millis;
    let keep_alive = match edge.keep_alive_millis {
        0 => actix_http::KeepAlive::Disabled,
        idle => actix_http::KeepAlive::Timeout(millis(idle)),
    };
    let pool_connections = state.store.pool_state().max_size;
    let connection_state = Arc::clone(&state);
    let data = web::Data::from(state);
    let listening = http::ListenAddress(listener.local_addr()?);
    let app = move || {
        let app = App::new()
            .app_data(data.clone())
            .app_data(listening)
            .wrap(middleware::from_fn(http::ui::cache_headers))
            .wrap(middleware::from_fn(http::log_request))
            .configure(http::configure);
        match &ui_dir {
            Some(dir) => app.service(http::ui::files(dir.clone())),
            None => app,
        }
    };
    let builder = actix_server::Server::build()
        .shutdown_timeout(10)
        .max_concurrent_connections(edge.max_connections.max(1))
        .listen("ferridm", listener, move || {
            let application = actix_service::IntoServiceFactory::into_factory(app())
                .map_err(|error: actix_web::Error| error.error_response());
            let http = actix_http::HttpService::build()
                .keep_alive(keep_alive)
                .client_request_timeout(millis(edge.request_head_timeout_millis))
                .client_disconnect_timeout(millis(edge.disconnect_timeout_millis))
                .h1(actix_service::map_config(application, |()| {
                    actix_web::dev::AppConfig::default()
                }));
            let state = Arc::clone(&connection_state);
            actix_service::fn_service(move |stream: actix_web::rt::net::TcpStream| {
                // Head bounds as configured now, so a reload applies to new connections.
                let limits = http::wire::HeadLimits::from(&state.generation().settings.http);
                async move {
                    let peer = stream.peer_addr().ok();
                    let _ = stream.set_nodelay(true);
                    Ok::<_, std::io::Error>((http::wire::RequestLineSanitizer::with_limits(stream, limits), peer))
                }
            })
            .and_then(http.map_err(|_| std::io::Error::other("the connection failed")))
        })?;
    let workers =
        workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get));
    let connections = usize::try_from(pool_connections).unwrap_or(usize::MAX);
    Ok(builder
        .workers(workers)
        .worker_max_blocking_threads(blocking_threads_per_worker(connections, workers))
        .run())
}

/// How many blocking-pool threads each worker may run: together about as many as the store has
/// connections (at least [`MIN_BLOCKING_THREADS`] each), since nearly all blocking work is
/// database work. More threads than connections only queue on the pool, and a busy server then
/// spends its cores switching between them.
fn blocking_threads_per_worker(connections: usize, workers: usize) -> usize {
    connections.div_ceil(workers.max(1)).max(MIN_BLOCKING_THREADS)
}

/// The fewest blocking-pool threads of a worker, so that a few slow calls (a mail server or an
/// identity provider taking its time) leave room for other requests.
const MIN_BLOCKING_THREADS: usize = 4;

/// A server running on its own thread (for tests and embedding).
#[derive(Debug)]
pub struct RunningServer {
    /// The bound address.
    pub addr: SocketAddr,
    /// The shared state.
    pub state: Arc<AppState>,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
    _watch: Option<ferridm_plugins::watch::DirectoryWatch>,
    membership: Option<service::cluster::Membership>,
}

impl RunningServer {
    /// The base URL, e.g. `http://127.0.0.1:34567`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(thread) = self.thread.take() {
            let handle = self.handle.clone();
            let _ = std::thread::spawn(move || actix_web::rt::System::new().block_on(handle.stop(false))).join();
            let _ = thread.join();
        }
        drop(self.membership.take());
        service::audit::stop_writer(&self.state);
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Prepares and starts a server on a background thread; returns once it is listening.
pub fn start(options: &ServerOptions) -> anyhow::Result<RunningServer> {
    let state = prepare(options)?;
    let listener =
        TcpListener::bind(&options.listen).with_context(|| format!("cannot listen on {}", options.listen))?;
    let addr = listener.local_addr()?;
    let (sender, receiver) = std::sync::mpsc::channel();
    let thread_state = Arc::clone(&state);
    let workers = options.workers;
    let ui_dir = options.ui_dir.clone();
    let thread = std::thread::Builder::new()
        .name("ferridm-server".to_owned())
        .spawn(move || {
            let system = actix_web::rt::System::new();
            system.block_on(async move {
                match server(thread_state, listener, workers, ui_dir) {
                    Ok(server) => {
                        let _ = sender.send(Ok(server.handle()));
                        let _ = server.await;
                    }
                    Err(error) => {
                        let _ = sender.send(Err(error));
                    }
                }
            });
        })?;
    let handle = receiver.recv().context("the server thread stopped early")??;
    let watch = reload::watch(&state);
    service::reindex::reconcile(&state);
    reload::reconcile_completeness(&state);
    service::roles::reconcile(&state);
    let node_id = options
        .node_id
        .clone()
        .unwrap_or_else(|| service::cluster::default_node_id(addr.port()));
    let membership = service::cluster::join(&state, node_id);
    Ok(RunningServer {
        addr,
        state,
        handle,
        thread: Some(thread),
        _watch: watch,
        membership: Some(membership),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(redact_url("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }

    #[test]
    fn workers_share_about_as_many_blocking_threads_as_there_are_connections() {
        assert_eq!(blocking_threads_per_worker(16, 2), 8);
        assert_eq!(blocking_threads_per_worker(16, 3), 6);
        assert_eq!(blocking_threads_per_worker(16, 8), MIN_BLOCKING_THREADS);
        assert_eq!(blocking_threads_per_worker(1, 0), MIN_BLOCKING_THREADS);
    }
}
