//! `mxfed serve`: first-run set-up of the data directory, the config with flags applied, the
//! state rebuilt from the database, binding, and the start-up banner.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use mxfed_core::inbound::TxnDedup;
use mxfed_core::keys::SigningKey;
use mxfed_core::server_keys::KeyCache;
use mxfed_core::transaction::TransactionResponse;

use super::config::{self, Config, CONFIG_FILE};
use super::{app, client, keys, log, outbound, rooms, run, store, AppState};

/// The default data directory.
pub const DEFAULT_DATA_DIR: &str = "mxfed-data";
/// The admin token file in the data directory.
pub const TOKEN_FILE: &str = "admin.token";
/// The admin API address file in the data directory, written at start.
pub const ADMIN_FILE: &str = "admin.json";

/// `mxfed serve` flags (they override the config file).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The config file (default: DATA_DIR/mxfed.toml, created on first run).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The data directory (default: ./mxfed-data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Our server name, e.g. localhost:8448.
    #[arg(long)]
    pub server_name: Option<String>,
    /// The address to listen on, e.g. 127.0.0.1:8448 (replaces the configured listeners' addresses).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Local testing: federation to and from loopback, no outbound certificate checks.
    #[arg(long)]
    pub dev: bool,
}

fn write_new(path: &Path, text: &str, secret: bool) -> Result<(), String> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Creates what is missing in the data directory: config, signing key, TLS pair, admin token.
/// Returns the lines to print about what was created.
fn first_run(data_dir: &Path, args: &ServeArgs, config_path: &Path) -> Result<Vec<String>, String> {
    let mut made = Vec::new();
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    if !config_path.exists() {
        let name = args
            .server_name
            .clone()
            .unwrap_or_else(|| "localhost:8448".into());
        let listen = args
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8448)));
        write_new(config_path, &config::default_file(&name, listen), false)?;
        made.push(format!("created config {}", config_path.display()));
    }
    let cfg = Config::load(config_path)?;
    let key_path = Config::resolve(data_dir, &cfg.signing_key);
    if !key_path.exists() {
        let mut entropy = [0u8; 36];
        getrandom::getrandom(&mut entropy).map_err(|e| format!("getrandom: {e}"))?;
        let key = SigningKey::generate(&entropy);
        write_new(&key_path, &format!("{}\n", key.to_synapse_line()), true)?;
        made.push(format!(
            "created signing key {} ({})",
            key_path.display(),
            key.key_id().as_str()
        ));
    }
    for l in &cfg.listeners {
        let (Some(cert), Some(key), true) = (&l.cert, &l.key, l.tls) else {
            continue;
        };
        let cert = Config::resolve(data_dir, cert);
        let key = Config::resolve(data_dir, key);
        if cert.exists() || key.exists() {
            continue;
        }
        let name = args.server_name.as_deref().unwrap_or(&cfg.server_name);
        let host = client::split_host_port(name).0.to_owned();
        let mut names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        if !names.contains(&host) {
            names.push(host);
        }
        let pair = rcgen::generate_simple_self_signed(names)
            .map_err(|e| format!("cannot make a TLS certificate: {e}"))?;
        if let Some(dir) = cert.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        if let Some(dir) = key.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        write_new(&cert, &pair.cert.pem(), false)?;
        write_new(&key, &pair.key_pair.serialize_pem(), true)?;
        made.push(format!(
            "created self-signed TLS certificate {}",
            cert.display()
        ));
    }
    let token = data_dir.join(TOKEN_FILE);
    if !token.exists() {
        let t = super::random_token(43).map_err(|e| e.error)?;
        write_new(&token, &format!("{t}\n"), true)?;
        made.push(format!("created admin token {}", token.display()));
    }
    Ok(made)
}

/// The admin token from its file (made on first run when missing). An empty one, or one a
/// bearer header cannot carry, would lock every admin call out (401): the server does not
/// start with it.
fn admin_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("admin token {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "admin token {}: {}; delete the file to have a new token made at start",
            path.display(),
            if token.is_empty() {
                "the file is empty"
            } else {
                "only printable ASCII without spaces can be a bearer token"
            }
        ));
    }
    Ok(token.to_owned())
}

/// Everything `serve` prepared, before binding.
pub struct Prepared {
    /// The shared state.
    pub state: Arc<AppState>,
    /// Lines about first-run creation.
    pub created: Vec<String>,
}

/// Reads (creating on first run) the data directory and builds the state: config with flags
/// applied, keys, database, rooms replayed from storage, key cache, transaction window.
///
/// # Errors
/// A message for the user.
pub fn prepare(args: &ServeArgs) -> Result<Prepared, String> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let config_path = args
        .config
        .clone()
        .unwrap_or_else(|| data_dir.join(CONFIG_FILE));
    let created = first_run(&data_dir, args, &config_path)?;
    let mut cfg = Config::load(&config_path)?;
    if let Some(n) = &args.server_name {
        mxfed_core::identifiers::validate_server_name(n)
            .map_err(|e| format!("--server-name: {e}"))?;
        cfg.server_name = n.clone();
    }
    if let Some(addr) = args.listen {
        if cfg.listeners.is_empty() {
            cfg.listeners = vec![config::Listener {
                addr,
                tls: true,
                cert: Some("tls/cert.pem".into()),
                key: Some("tls/key.pem".into()),
            }];
        }
        for l in &mut cfg.listeners {
            l.addr = addr;
        }
        cfg.listeners.truncate(1);
    }
    cfg.dev |= args.dev;
    if cfg.dev {
        cfg.federation.verify_tls = false;
    }
    let key_text = std::fs::read_to_string(Config::resolve(&data_dir, &cfg.signing_key))
        .map_err(|e| format!("signing key: {e}"))?;
    let keys = SigningKey::parse_synapse(&key_text).map_err(|e| format!("signing key: {e}"))?;
    if keys.is_empty() {
        return Err("the signing key file holds no key".into());
    }
    let token = admin_token(&data_dir.join(TOKEN_FILE))?;
    let mut db = store::Store::open(&Config::resolve(&data_dir, &cfg.database))
        .map_err(|e| format!("database: {e}"))?;
    // Applied at once: a restart with lower limits deletes what they no longer keep. A failure
    // here is no reason not to start: the limits are set, and the next commit of EDUs applies
    // them.
    if let Err(e) = db.set_edu_limits(cfg.limits.edus()) {
        // Before the log is set up (it needs the whole config): straight to stderr.
        eprintln!("mxfed: warning: received EDUs not pruned at start: {e}");
    }
    // Two for the federation's reads and two for the admin API's, whose reads can be long
    // (a whole timeline): one of those never keeps a peer's read waiting.
    let readers = db.readers(2).map_err(|e| format!("database: {e}"))?;
    let admin_readers = db.readers(2).map_err(|e| format!("database: {e}"))?;
    let client = client::FedClient::new(
        &cfg.server_name,
        keys.clone(),
        cfg.ip_policy(),
        cfg.federation.verify_tls,
        Duration::from_secs(cfg.federation.request_timeout_secs.max(1)),
    )?
    .with_response_limits(client::ResponseLimits {
        default_bytes: cfg.limits.max_response_bytes,
        state_bytes: cfg.limits.max_state_response_bytes,
    });
    let mut dedup = TxnDedup::new(TxnDedup::DEFAULT_CAPACITY);
    for (origin, txn, response) in db.txns().map_err(|e| e.to_string())? {
        if let Ok(r) = TransactionResponse::parse(response.as_bytes()) {
            dedup.complete(&origin, &txn, r);
        }
    }
    let limiter = super::ratelimit::RateLimiter::new(
        cfg.limits.federation_per_second,
        cfg.limits.federation_burst,
    );
    let state = Arc::new(AppState {
        server_name: cfg.server_name.clone(),
        keys,
        config: cfg,
        data_dir,
        txn_answers: db.pending_txns(),
        store: Mutex::new(db),
        readers,
        admin_readers,
        rooms: Mutex::new(Default::default()),
        writers: Mutex::default(),
        local_commit: tokio::sync::Mutex::new(()),
        key_cache: Mutex::new(KeyCache::new()),
        dedup: Mutex::new(dedup),
        client,
        outbound: outbound::Outbound::default(),
        sends: Default::default(),
        commits: Default::default(),
        admin_token: token,
        changed: tokio::sync::Notify::new(),
        txn_done: tokio::sync::Notify::new(),
        joining: Mutex::default(),
        metrics: Default::default(),
        limiter,
        written_state: Mutex::default(),
        typing: Default::default(),
    });
    keys::load(&state);
    rooms::load(&state)?;
    Ok(Prepared { state, created })
}

/// The TLS configuration of a listener (`None` for plain HTTP).
///
/// # Errors
/// Unreadable or invalid certificate or key.
pub fn tls_config(
    state: &AppState,
    l: &config::Listener,
) -> Result<Option<axum_server::tls_rustls::RustlsConfig>, String> {
    if !l.tls {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (&l.cert, &l.key) else {
        return Err(format!(
            "listener {}: tls = true needs cert and key",
            l.addr
        ));
    };
    let cert = std::fs::read(Config::resolve(&state.data_dir, cert))
        .map_err(|e| format!("TLS certificate: {e}"))?;
    let key = std::fs::read(Config::resolve(&state.data_dir, key))
        .map_err(|e| format!("TLS key: {e}"))?;
    let certs = rustls_pemfile_certs(&cert)?;
    use rustls::pki_types::pem::PemObject as _;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&key)
        .map_err(|e| format!("TLS key: {e}"))?;
    let mut sc = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS: {e}"))?;
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(axum_server::tls_rustls::RustlsConfig::from_config(
        Arc::new(sc),
    )))
}

fn rustls_pemfile_certs(
    pem: &[u8],
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("TLS certificate: {e}"))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// `mxfed serve`.
///
/// # Errors
/// A message for the user (exit 2).
pub fn serve(args: &ServeArgs) -> Result<(), String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio: {e}"))?;
    rt.block_on(async {
        let Prepared { state, created } = prepare(args)?;
        super::init_logging(&state.config.log)?;
        for line in &created {
            println!("mxfed: {line}");
        }
        if state.config.dev {
            let banner = "!".repeat(78);
            eprintln!("{banner}");
            eprintln!(
                "!! mxfed serve --dev: LOCAL TESTING ONLY. Federation to and from loopback is"
            );
            eprintln!(
                "!! allowed, outbound TLS certificates are NOT checked, and the certificate is"
            );
            eprintln!("!! self-signed. Never expose this server.");
            eprintln!("{banner}");
        }
        let (tx, rx) = tokio::sync::watch::channel(false);
        let wait = move || {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|v| *v).await;
            }
        };
        // The outbound queues are restored from their rows before any listener opens: a PDU
        // queued by a request in between would otherwise be handed over first, then read back
        // with the backlog and sent again after it (out of order, twice).
        state.outbound.restore(&state);
        let mut tasks = Vec::new();
        for l in &state.config.listeners {
            let listener = std::net::TcpListener::bind(l.addr)
                .map_err(|e| format!("cannot listen on {}: {e}", l.addr))?;
            let local = listener.local_addr().map_err(|e| e.to_string())?;
            let tls = tls_config(&state, l)?;
            let scheme = if tls.is_some() { "https" } else { "http" };
            println!("mxfed: server name {}", state.server_name);
            println!("mxfed: listening on {scheme}://{local}");
            tasks.push(tokio::spawn(run(listener, app(state.clone()), tls, wait())));
        }
        // Once listening: the inviting servers may ask us for our keys meanwhile.
        super::fed::resume_auto_accepts(&state);
        let admin_listener = std::net::TcpListener::bind(state.config.admin.addr)
            .map_err(|e| format!("cannot listen on {} (admin): {e}", state.config.admin.addr))?;
        let admin_addr = admin_listener.local_addr().map_err(|e| e.to_string())?;
        let admin_json =
            serde_json::json!({ "url": format!("http://{admin_addr}"), "pid": std::process::id() });
        let admin_path = state.data_dir.join(ADMIN_FILE);
        std::fs::write(&admin_path, admin_json.to_string())
            .map_err(|e| format!("{}: {e}", admin_path.display()))?;
        tasks.push(tokio::spawn(run(
            admin_listener,
            super::metrics::admin_app(state.clone()),
            None,
            wait(),
        )));
        println!(
            "mxfed: admin API on http://{admin_addr} (token in {})",
            state.data_dir.join(TOKEN_FILE).display()
        );
        println!("mxfed: ready");
        shutdown_signal().await;
        log("shutting down");
        let _ = tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        if let Err(e) = state.db().flush_txns() {
            super::warn(&format!("transaction answers not written at shutdown: {e}"));
        }
        let _ = std::fs::remove_file(&admin_path);
        Ok(())
    })
}
