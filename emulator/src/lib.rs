//! # m365-emulator
//!
//! A local, offline emulator of the Microsoft cloud endpoints a Microsoft 365 / Teams daemon
//! talks to. Start it as a binary (`m365-emulator serve`) or embed it in tests:
//!
//! ```no_run
//! # async fn demo() -> Result<(), m365_emulator::StartError> {
//! let emulator = m365_emulator::Emulator::builder().start().await?;
//! println!("Entra authority: {}/contoso.onmicrosoft.com", emulator.https_uri());
//! # Ok(()) }
//! ```

pub mod acs;
pub mod admin;
pub mod clock;
pub mod cpu_pool;
pub mod entra;
pub mod faults;
pub mod graph;
pub mod http;
pub mod jose;
pub mod journal;
pub mod management;
pub mod pki;
pub mod proxy;
pub mod ready;
pub mod services;
pub mod settings;
pub mod sfb;
pub mod signing;
pub mod state;
pub mod template;
pub mod tokens;
pub mod world;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::response::IntoResponse;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use clock::Clock;
pub use ready::ReadyInfo;
pub use settings::{Overrides, Settings};
pub use state::Core;
pub use world::World;

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    World(#[from] world::WorldError),
    #[error(transparent)]
    Settings(#[from] settings::SettingsError),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot create a temporary state directory: {0}")]
    TempDir(std::io::Error),
    #[error("fault rule {index}: {source}")]
    Fault {
        index: usize,
        source: faults::RuleError,
    },
}

/// Configures and starts an [`Emulator`]. Library defaults: the embedded default world, free
/// ports on 127.0.0.1, and a temporary state directory removed when the emulator is dropped.
#[derive(Debug, Default)]
pub struct EmulatorBuilder {
    world: Option<World>,
    overrides: Overrides,
    default_ports: (u16, u16),
    faults: Vec<serde_json::Value>,
}

impl EmulatorBuilder {
    /// Serves this world instead of the embedded default.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let world = m365_emulator::World::from_file("my-world.toml".as_ref())?;
    /// let emulator = m365_emulator::Emulator::builder().world(world).start().await?;
    /// # Ok(()) }
    /// ```
    pub fn world(mut self, world: World) -> Self {
        self.world = Some(world);
        self
    }

    /// Keeps CA, certificates and keys in `dir` (reused on the next start).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let emulator = m365_emulator::Emulator::builder().state_dir("/tmp/m365emu").start().await?;
    /// assert!(emulator.ca_path().starts_with("/tmp/m365emu"));
    /// # Ok(()) }
    /// ```
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.overrides.state_dir = Some(dir.into());
        self
    }

    /// Generates every RSA key from this seed: reproducible thumbprints and `kid`s.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let emulator = m365_emulator::Emulator::builder().key_seed(42).start().await?;
    /// let thumbprint = &emulator.ready().tenants[0].applications[0].thumbprint_sha1;
    /// # Ok(()) }
    /// ```
    pub fn key_seed(mut self, seed: u64) -> Self {
        self.overrides.key_seed = Some(seed);
        self
    }

    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let emulator = m365_emulator::Emulator::builder().https_port(8443).start().await?;
    /// assert_eq!(emulator.https_addr().port(), 8443);
    /// # Ok(()) }
    /// ```
    pub fn https_port(mut self, port: u16) -> Self {
        self.overrides.https_port = Some(port);
        self
    }

    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let emulator = m365_emulator::Emulator::builder().http_port(0).start().await?;
    /// println!("{}", emulator.uri());
    /// # Ok(()) }
    /// ```
    pub fn http_port(mut self, port: u16) -> Self {
        self.overrides.http_port = Some(port);
        self
    }

    /// Also writes the ready file here (it is always written to `state_dir/ready.json`).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let emulator = m365_emulator::Emulator::builder().ready_file("/tmp/emulator-ready.json").start().await?;
    /// # Ok(()) }
    /// ```
    pub fn ready_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.overrides.ready_file = Some(path.into());
        self
    }

    /// How many entries the request journal keeps (a ring buffer; default 10000).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let emulator = m365_emulator::Emulator::builder().journal_capacity(100).start().await?;
    /// assert_eq!(emulator.journal().capacity(), 100);
    /// # Ok(()) }
    /// ```
    pub fn journal_capacity(mut self, entries: usize) -> Self {
        self.overrides.journal_capacity = Some(entries);
        self
    }

    /// Headless sign-in: `login_hint` names the user, no pages (see the README).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let emulator = m365_emulator::Emulator::builder().auto_sign_in(true).start().await?;
    /// # Ok(()) }
    /// ```
    pub fn auto_sign_in(mut self, on: bool) -> Self {
        self.overrides.auto_sign_in = Some(on);
        self
    }

    /// Also runs the forward proxy of proxy mode on this port (0 = a free port): clients with
    /// `HTTPS_PROXY` set to [`Emulator::proxy_uri`] reach the emulator by the real Microsoft
    /// host names. Off unless asked for.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let emulator = m365_emulator::Emulator::builder().proxy_port(0).start().await?;
    /// std::env::set_var("HTTPS_PROXY", emulator.proxy_uri().unwrap_or_default());
    /// # Ok(()) }
    /// ```
    pub fn proxy_port(mut self, port: u16) -> Self {
        self.overrides.proxy_port = Some(port);
        self
    }

    /// Replaces all overrides at once (what the CLI does).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let over = m365_emulator::Overrides { clock_skew_seconds: Some(60), ..Default::default() };
    /// let emulator = m365_emulator::Emulator::builder().overrides(over).start().await?;
    /// # Ok(()) }
    /// ```
    pub fn overrides(mut self, overrides: Overrides) -> Self {
        self.overrides = overrides;
        self
    }

    /// Loads a fault rule (in `/_emulator/faults` JSON format) at start and after every reset.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), m365_emulator::StartError> {
    /// let emulator = m365_emulator::Emulator::builder()
    ///     .fault(serde_json::json!({"match": {"operation": "entra.token"}, "action": {"error": "AADSTS700027"}}))
    ///     .start()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn fault(mut self, rule: serde_json::Value) -> Self {
        self.faults.push(rule);
        self
    }

    /// Ports used when neither an override nor the world file names one (0 = free port).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let emulator = m365_emulator::Emulator::builder().default_ports(8443, 8080).start().await?;
    /// # Ok(()) }
    /// ```
    pub fn default_ports(mut self, https: u16, http: u16) -> Self {
        self.default_ports = (https, http);
        self
    }

    /// Binds the listeners, seeds the world, writes the ready file and starts serving.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let emulator = m365_emulator::Emulator::builder().start().await?;
    /// # Ok(()) }
    /// ```
    pub async fn start(self) -> Result<Emulator, StartError> {
        let world = match self.world {
            Some(w) => w,
            None => World::default_world()?,
        };
        let mut overrides = self.overrides;
        let temp = if overrides.state_dir.is_none() {
            let t = tempfile::Builder::new()
                .prefix("m365-emulator-")
                .tempdir()
                .map_err(StartError::TempDir)?;
            overrides.state_dir = Some(t.path().to_path_buf());
            Some(t)
        } else {
            None
        };
        let settings = Settings::resolve(overrides, &world.server, self.default_ports)?;
        let extra_faults = self
            .faults
            .into_iter()
            .enumerate()
            .map(|(index, v)| {
                faults::FaultSpec::from_json(v, &services::known_error)
                    .map_err(|source| StartError::Fault { index, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bind = settings.bind;
        let https_addr = SocketAddr::new(bind, settings.https_port);
        let http_addr = SocketAddr::new(bind, settings.http_port);
        let https_listener =
            TcpListener::bind(https_addr)
                .await
                .map_err(|source| StartError::Bind {
                    addr: https_addr,
                    source,
                })?;
        let http_listener =
            TcpListener::bind(http_addr)
                .await
                .map_err(|source| StartError::Bind {
                    addr: http_addr,
                    source,
                })?;
        let https_local = https_listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: https_addr,
                source,
            })?;
        let http_local = http_listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: http_addr,
                source,
            })?;
        let proxy_listener = match settings.proxy_port {
            Some(port) => Some(bind_listener(SocketAddr::new(bind, port)).await?),
            None => None,
        };

        // Key generation is CPU-bound; keep it off the async workers.
        let core =
            tokio::task::spawn_blocking(move || Core::with_faults(settings, world, extra_faults))
                .await
                .map_err(|e| StartError::Pki(pki::PkiError::Rsa(e.to_string())))??;
        let core = Arc::new(core);
        entra::presign::start(&core);
        core.cpu_pool
            .start(std::thread::available_parallelism().map_or(1, usize::from));
        let tls = core.pki.tls_server_config(&tls_names(&core, bind))?;

        let router = router(core.clone());
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut tasks = vec![
            tokio::spawn(http::listener::serve(
                https_listener,
                Some(tls),
                router.clone(),
                shutdown_rx.clone(),
            )),
            tokio::spawn(http::listener::serve(
                http_listener,
                None,
                router,
                shutdown_rx.clone(),
            )),
            // Webhook notifications follow the emulator's clock.
            tokio::spawn(management::delivery::run(core.clone(), shutdown_rx.clone())),
        ];
        let proxy_local = proxy_listener.as_ref().map(|(_, addr)| *addr);
        if let Some((listener, _)) = proxy_listener {
            let router = crate::router(core.clone());
            tasks.push(tokio::spawn(proxy::serve(
                listener,
                core.clone(),
                router,
                shutdown_rx,
            )));
        }
        let host = url_host(https_local);
        let https_url = format!("https://{host}:{}", https_local.port());
        let http_url = format!("http://{host}:{}", http_local.port());
        let mut ready = ReadyInfo::build(&core, &https_url, &http_url);
        ready.proxy_url = proxy_local.map(|a| format!("http://{}:{}", url_host(a), a.port()));
        let mut ready_paths = vec![core.state_dir.join("ready.json")];
        ready_paths.extend(core.settings.ready_file.clone());
        for p in &ready_paths {
            ready.write(p)?;
        }
        Ok(Emulator {
            core,
            https_local,
            http_local,
            proxy_local,
            ready,
            ready_paths,
            shutdown_tx,
            tasks,
            _temp: temp,
        })
    }
}

async fn bind_listener(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    Ok((listener, local))
}

fn url_host(addr: SocketAddr) -> String {
    match addr.ip() {
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V4(ip) => ip.to_string(),
    }
}

/// Host names the TLS certificate covers: loopback, the bind address, and the Microsoft hosts
/// the emulator serves (for clients that reach it by a real host name).
fn tls_names(core: &Core, bind: std::net::IpAddr) -> Vec<String> {
    let mut names: Vec<String> = [
        "localhost",
        "127.0.0.1",
        "::1",
        "login.microsoftonline.com",
        "login.windows.net",
        "login.microsoft.com",
        "sts.windows.net",
        "manage.office.com",
        "graph.microsoft.com",
        "api.skypeforbusiness.com",
        "*.communication.azure.com",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !bind.is_loopback() && !bind.is_unspecified() {
        names.push(bind.to_string());
    }
    for acs in &core.initial_directory().world.acs {
        if !names.contains(&acs.host) {
            names.push(acs.host.clone());
        }
    }
    names
}

/// All services and the control plane on one router.
pub fn router(core: Arc<Core>) -> Router {
    // Faults apply to the services only: the control plane must stay reachable to remove them.
    let services = Router::new()
        .merge(entra::router())
        .merge(management::router())
        .merge(graph::router())
        .merge(sfb::router())
        .merge(acs::router())
        .route_layer(axum::middleware::from_fn_with_state(
            core.clone(),
            faults::layer::layer,
        ));
    Router::new()
        .merge(services)
        .merge(admin::router())
        .merge(proxy::router())
        .merge(acs::admin::router())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            core.clone(),
            journal::layer,
        ))
        .with_state(core)
}

async fn not_found(uri: axum::http::Uri) -> axum::response::Response {
    let body = serde_json::json!({"error": {"code": "NotFound", "message": format!("m365-emulator serves no resource at {}", uri.path())}});
    let mut resp = (axum::http::StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    resp.extensions_mut().insert(http::Outcome::new("unrouted"));
    resp
}

/// A running emulator. Dropping it stops the listeners and removes the ready files.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let emulator = m365_emulator::Emulator::builder().key_seed(1).start().await?;
/// let contoso = &emulator.ready().tenants[0];
/// let app = &contoso.applications[0];
/// let ca = reqwest::Certificate::from_pem(emulator.ca_pem().as_bytes())?;
/// let client = reqwest::Client::builder().tls_certs_only([ca]).no_proxy().build()?;
/// let token: serde_json::Value = client
///     .post(format!("{}/{}/oauth2/v2.0/token", emulator.https_uri(), contoso.id))
///     .form(&[
///         ("grant_type", "client_credentials"),
///         ("client_id", app.client_id.as_str()),
///         ("client_secret", app.client_secret.as_deref().unwrap_or_default()),
///         ("scope", "https://manage.office.com/.default"),
///     ])
///     .send()
///     .await?
///     .json()
///     .await?;
/// assert_eq!(token["expires_in"], 3599);
/// assert_eq!(emulator.journal().len(), 1);
/// # Ok(()) }
/// ```
pub struct Emulator {
    core: Arc<Core>,
    https_local: SocketAddr,
    http_local: SocketAddr,
    proxy_local: Option<SocketAddr>,
    ready: ReadyInfo,
    ready_paths: Vec<PathBuf>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    _temp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("https", &self.ready.https_url)
            .finish()
    }
}

impl Emulator {
    /// A builder with library defaults.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let builder = m365_emulator::Emulator::builder().key_seed(7);
    /// let emulator = builder.start().await?;
    /// # Ok(()) }
    /// ```
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder::default()
    }

    /// The HTTPS base URL, e.g. `https://127.0.0.1:41234` (no trailing slash).
    ///
    /// ```no_run
    /// # async fn demo(emulator: m365_emulator::Emulator) -> Result<(), Box<dyn std::error::Error>> {
    /// let authority = format!("{}/contoso.onmicrosoft.com", emulator.https_uri());
    /// # Ok(()) }
    /// ```
    pub fn https_uri(&self) -> &str {
        &self.ready.https_url
    }

    /// The plain-HTTP base URL.
    ///
    /// ```no_run
    /// # async fn demo(emulator: m365_emulator::Emulator) -> Result<(), Box<dyn std::error::Error>> {
    /// let health = format!("{}/_emulator/health", emulator.uri());
    /// # Ok(()) }
    /// ```
    pub fn uri(&self) -> &str {
        &self.ready.http_url
    }

    ///
    /// ```no_run
    /// # async fn demo(emulator: m365_emulator::Emulator) -> Result<(), Box<dyn std::error::Error>> {
    /// let port = emulator.https_addr().port();
    /// # Ok(()) }
    /// ```
    pub fn https_addr(&self) -> SocketAddr {
        self.https_local
    }

    ///
    /// ```no_run
    /// # async fn demo(emulator: m365_emulator::Emulator) -> Result<(), Box<dyn std::error::Error>> {
    /// let port = emulator.http_addr().port();
    /// # Ok(()) }
    /// ```
    pub fn http_addr(&self) -> SocketAddr {
        self.http_local
    }

    /// The forward proxy's URL (`HTTPS_PROXY`), e.g. `http://127.0.0.1:41236`, when started
    /// with [`EmulatorBuilder::proxy_port`].
    ///
    /// ```no_run
    /// # async fn demo(emulator: m365_emulator::Emulator) -> Result<(), Box<dyn std::error::Error>> {
    /// if let Some(proxy) = emulator.proxy_uri() {
    ///     println!("export HTTPS_PROXY={proxy}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn proxy_uri(&self) -> Option<&str> {
        self.ready.proxy_url.as_deref()
    }

    ///
    /// ```no_run
    /// # async fn demo(emulator: m365_emulator::Emulator) -> Result<(), Box<dyn std::error::Error>> {
    /// let port = emulator.proxy_addr().map(|a| a.port());
    /// # Ok(()) }
    /// ```
    pub fn proxy_addr(&self) -> Option<SocketAddr> {
        self.proxy_local
    }

    /// The CA certificate (PEM) that clients must trust.
    ///
    /// ```no_run
    /// # async fn demo(emulator: m365_emulator::Emulator) -> Result<(), Box<dyn std::error::Error>> {
    /// assert!(emulator.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    /// # Ok(()) }
    /// ```
    pub fn ca_pem(&self) -> &str {
        self.core.pki.ca_pem()
    }

    ///
    /// ```no_run
    /// # async fn demo(emulator: m365_emulator::Emulator) -> Result<(), Box<dyn std::error::Error>> {
    /// std::env::set_var("REQUESTS_CA_BUNDLE", emulator.ca_path());
    /// # Ok(()) }
    /// ```
    pub fn ca_path(&self) -> PathBuf {
        self.core.pki.ca_path()
    }

    ///
    /// ```no_run
    /// # async fn demo(emulator: m365_emulator::Emulator) -> Result<(), Box<dyn std::error::Error>> {
    /// let ready = emulator.state_dir().join("ready.json");
    /// # Ok(()) }
    /// ```
    pub fn state_dir(&self) -> &Path {
        &self.core.state_dir
    }

    /// What the ready file says: URLs, tenants, credentials and their files.
    ///
    /// ```no_run
    /// # async fn demo(emulator: m365_emulator::Emulator) -> Result<(), Box<dyn std::error::Error>> {
    /// let contoso = &emulator.ready().tenants[0];
    /// let secret = contoso.applications[0].client_secret.clone();
    /// # Ok(()) }
    /// ```
    pub fn ready(&self) -> &ReadyInfo {
        &self.ready
    }

    /// The emulator's clock (freeze, advance, set).
    ///
    /// ```no_run
    /// # async fn demo(emulator: m365_emulator::Emulator) -> Result<(), Box<dyn std::error::Error>> {
    /// emulator.clock().freeze();
    /// emulator.clock().advance(time::Duration::hours(2)); // issued tokens have now expired
    /// # Ok(()) }
    /// ```
    pub fn clock(&self) -> &Clock {
        &self.core.clock
    }

    /// The request journal.
    ///
    /// ```no_run
    /// # async fn demo(emulator: m365_emulator::Emulator) {
    /// let q = m365_emulator::journal::JournalQuery { operation: Some("entra.token".into()), ..Default::default() };
    /// for entry in emulator.journal().query(&q) {
    ///     println!("{} {} -> {} {:?}", entry.method, entry.path, entry.status, entry.error_code);
    /// }
    /// # }
    /// ```
    pub fn journal(&self) -> &journal::Journal {
        &self.core.journal
    }

    /// Adds a fault rule; it is removed when the returned guard is dropped.
    ///
    /// ```no_run
    /// # async fn demo(emulator: m365_emulator::Emulator) -> Result<(), m365_emulator::faults::RuleError> {
    /// let _guard = emulator.add_fault(serde_json::json!({
    ///     "match": {"operation": "entra.token"},
    ///     "action": {"error": "AADSTS700027"},
    ///     "schedule": {"first": 1}
    /// }))?;
    /// // … the next token request fails with AADSTS700027 …
    /// # Ok(()) }
    /// ```
    pub fn add_fault(&self, rule: serde_json::Value) -> Result<FaultGuard, faults::RuleError> {
        let spec = faults::FaultSpec::from_json(rule, &services::known_error)?;
        let id = self.core.faults.add(spec, self.core.clock.now())?;
        Ok(FaultGuard {
            core: self.core.clone(),
            id,
        })
    }

    /// The shared state, for advanced embedding.
    ///
    /// ```no_run
    /// # async fn demo(emulator: m365_emulator::Emulator) -> Result<(), Box<dyn std::error::Error>> {
    /// let tenants = emulator.core().directory().world.tenants.len();
    /// # Ok(()) }
    /// ```
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Stops accepting, drains open connections and removes the ready files.
    ///
    /// ```no_run
    /// # async fn demo(emulator: m365_emulator::Emulator) -> Result<(), Box<dyn std::error::Error>> {
    /// emulator.shutdown().await; // the ready files are gone
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        self.remove_ready_files();
    }

    fn remove_ready_files(&self) {
        for p in &self.ready_paths {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Removes its fault rule when dropped (see [`Emulator::add_fault`]).
#[derive(Debug)]
pub struct FaultGuard {
    core: Arc<Core>,
    id: String,
}

impl FaultGuard {
    /// The rule's id, as `/_emulator/faults` lists it.
    ///
    /// ```no_run
    /// # async fn demo(emulator: m365_emulator::Emulator) -> Result<(), Box<dyn std::error::Error>> {
    /// let guard = emulator.add_fault(serde_json::json!({"action": {"status": 503}}))?;
    /// println!("rule {}", guard.id());
    /// # Ok(()) }
    /// ```
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for FaultGuard {
    fn drop(&mut self) {
        self.core.faults.remove(&self.id);
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
        self.core.presign.stop();
        self.core.cpu_pool.stop();
        self.remove_ready_files();
    }
}
