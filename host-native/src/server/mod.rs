//! `mxfed serve`: a Matrix federation server that hosts its own (virtual) users, on axum with
//! SQLite storage. The host moves bytes, keeps time, stores and retries; every protocol decision
//! is a call into `mxfed-core` (X-Matrix, key cache policy, transactions, the outbound queue,
//! event building and the room pipeline).
//!
//! - [`app`] builds the federation [`axum::Router`] from an [`AppState`], so tests can call it
//!   without a socket; [`run`] serves it on an already-bound listener until `shutdown`.
//! - [`serve::serve`] is `mxfed serve`: first-run set-up, config, binding, start-up banner.
//! - [`admin`] is the admin API that `mxfed admin` ([`admin_cli`]) talks to.

pub mod acl;
pub mod admin;
pub mod admin_cli;
pub mod checks;
pub mod client;
pub mod config;
pub mod conn;
pub mod error;
pub mod fed;
pub mod keys;
pub mod local;
pub mod metrics;
pub mod outbound;
pub mod ratelimit;
pub mod rooms;
pub mod serve;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use mxfed_core::inbound::TxnDedup;
use mxfed_core::keys::SigningKey;
use mxfed_core::room::Room;
use mxfed_core::server_keys::KeyCache;
use mxfed_core::state_res::StateMap;
use mxfed_core::Timestamp;

pub use self::config::Config;
use self::error::ApiError;

/// Runs `f`, which may block (on a lock, the disk), from async code: on a multi-threaded tokio
/// runtime through `block_in_place`, so the worker's other tasks move to another thread
/// meanwhile instead of waiting; elsewhere (no runtime, a current-thread one) it just runs.
pub fn may_block<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// The wall clock, in milliseconds since the epoch (the host's job: the core takes time as data).
pub fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    Timestamp(ms)
}

/// One log line on stderr.
pub fn log(msg: &str) {
    tracing::info!("{msg}");
}

/// `d` from now, as a deadline for tokio's timers. A duration the clock cannot add (a
/// configured or requested wait of `u64::MAX` seconds) waits about 30 years instead, as
/// tokio's own `sleep` does: no duration makes a deadline panic.
pub fn deadline_in(d: std::time::Duration) -> tokio::time::Instant {
    const FAR: std::time::Duration = std::time::Duration::from_secs(86_400 * 365 * 30);
    let now = tokio::time::Instant::now();
    now.checked_add(d.min(FAR)).unwrap_or(now)
}

/// A log line about something that went wrong but was handled (a peer's failure, a refused
/// event, a failed write that is retried).
pub fn warn(msg: &str) {
    tracing::warn!("{msg}");
}

/// Installs the log subscriber of `mxfed serve`: `[log]` format and level, `MXFED_LOG` in place
/// of the level when set. Once per process: a second server in the same process (tests) keeps
/// the first one's.
///
/// # Errors
/// A level that is not a valid filter.
pub fn init_logging(cfg: &config::Log) -> Result<(), String> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let level = std::env::var("MXFED_LOG").unwrap_or_else(|_| cfg.level.clone());
    let filter: tracing_subscriber::filter::Targets = level
        .parse()
        .map_err(|e| format!("log level {level:?}: {e}"))?;
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match cfg.format {
        config::LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
        config::LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    // Already installed in this process: the first server's stays.
    drop(installed);
    Ok(())
}

/// Random bytes from the OS.
///
/// # Errors
/// When the OS has no entropy to give.
pub fn random<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).map_err(|e| ApiError::internal(format!("getrandom: {e}")))?;
    Ok(b)
}

/// A random token of URL-safe characters.
///
/// # Errors
/// When the OS has no entropy to give.
pub fn random_token(bytes: usize) -> Result<String, ApiError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let raw: [u8; 64] = random()?;
    Ok(raw
        .iter()
        .take(bytes.min(64))
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect())
}

/// Everything the handlers share.
pub struct AppState {
    /// Our server name.
    pub server_name: String,
    /// Our signing keys (the first signs).
    pub keys: Vec<SigningKey>,
    /// The configuration in force (flags applied).
    pub config: Config,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The database. Held only for short, synchronous sections (never across an await).
    pub store: Mutex<store::Store>,
    /// Answers to transactions waiting for the writer's next commit (`Store::put_txn_later`),
    /// put without the writer.
    pub txn_answers: store::PendingTxns,
    /// Read-only connections beside `store`'s: reads never wait for a commit's fsync.
    pub readers: store::Readers,
    /// Read-only connections for the admin API's long reads (whole timelines, EDUs, invites),
    /// so that two of them at once never leave a peer's `/event` or `/backfill` waiting.
    pub admin_readers: store::Readers,
    /// Every room we know, rebuilt from the database at start. Held briefly, never across I/O.
    pub rooms: Mutex<BTreeMap<String, Room>>,
    /// One lock per room ([`AppState::lock_room`]) serialising changes to it (receiving,
    /// creating events), which may wait on other servers; reads never take them, so two
    /// servers fetching from each other cannot deadlock, and a peer slow to fill a gap in one
    /// room holds up no other room.
    pub writers: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Rooms our users are joining through another server: the room's version and who is
    /// joining. From `send_join` until the join is stored the resident already sends us the
    /// room's events, which wait for the room's lock (taken by the join before `send_join`)
    /// instead of being ignored as events of a room we are not in (or do not know yet).
    pub joining: Mutex<BTreeMap<String, rooms::Joins>>,
    /// Serialises the group commits of our users' messages (`local`), so that messages waiting
    /// meanwhile go together into the next one.
    pub local_commit: tokio::sync::Mutex<()>,
    /// Other servers' keys and the policy of when to refetch them.
    pub key_cache: Mutex<KeyCache>,
    /// Transactions already answered, per origin.
    pub dedup: Mutex<TxnDedup>,
    /// Outbound federation requests.
    pub client: client::FedClient,
    /// One sending queue per destination.
    pub outbound: outbound::Outbound,
    /// Our users' messages waiting for a commit, to be stored together (group commit).
    pub sends: local::Sends,
    /// Other commits waiting for the writer, to be made together (`rooms::commit_blocking`).
    pub commits: rooms::Commits,
    /// Bearer token of the admin API.
    pub admin_token: String,
    /// Woken whenever events are stored, for the admin API's waits.
    pub changed: tokio::sync::Notify,
    /// Woken whenever an incoming transaction's processing ends (answered or abandoned): a
    /// retry of a transaction still being processed waits for its answer.
    pub txn_done: tokio::sync::Notify,
    /// Counters and histograms for `/metrics`.
    pub metrics: metrics::Metrics,
    /// Per-origin token buckets on federation requests (`[limits]`).
    pub limiter: ratelimit::RateLimiter,
    /// The current state last written to the database per room: a commit that leaves it as it
    /// was (a run of messages) does not rewrite it.
    pub written_state: Mutex<HashMap<String, Arc<StateMap>>>,
    /// The pending stops of the admin API's typing requests with a timeout.
    pub typing: admin::TypingTimers,
}

/// The right to change one room ([`AppState::lock_room`]). Dropping it releases the room and,
/// when no one else holds or waits for its lock, forgets the lock: room IDs come from other
/// servers' requests too (a `make_join` for a room we do not know), and must not pile up.
pub struct RoomGuard<'a> {
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    lock: Arc<tokio::sync::Mutex<()>>,
    room_id: String,
    writers: &'a Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Drop for RoomGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut w = self
            .writers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The map's and ours: anyone else waiting cloned it under this same mutex.
        if Arc::strong_count(&self.lock) == 2 {
            w.remove(&self.room_id);
        }
    }
}

impl AppState {
    /// Locks the database (a poisoned lock is recovered: the connection is still valid).
    pub fn db(&self) -> MutexGuard<'_, store::Store> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` on the database from async code without stalling the runtime: the writer may
    /// be held by a commit through its fsync, so on the (multi-threaded) runtime the worker
    /// hands its other tasks to another thread while `f` waits and runs ([`may_block`]). For
    /// rare writes made in a request (an invite, a user, fetched keys); the frequent ones run on
    /// blocking threads.
    pub fn write<T>(&self, f: impl FnOnce(&mut store::Store) -> T) -> T {
        may_block(|| f(&mut self.db()))
    }

    /// A read-only connection ([`store::Reader`]): for reads that need not see an uncommitted
    /// write of their own caller (none can: every write is committed before it returns).
    pub fn reads(&self) -> MutexGuard<'_, store::Reader> {
        self.readers.get()
    }

    /// A read-only connection of the admin API's own ([`AppState::admin_readers`]).
    pub fn admin_reads(&self) -> MutexGuard<'_, store::Reader> {
        self.admin_readers.get()
    }

    /// Waits for, and holds, the right to change `room_id` (see [`AppState::writers`]). Never
    /// taken while another room's is held, except by the local group commit, which takes its
    /// rooms' in sorted order.
    pub async fn lock_room(&self, room_id: &str) -> RoomGuard<'_> {
        let lock = {
            let mut w = self.writers_map();
            Arc::clone(w.entry(room_id.to_owned()).or_default())
        };
        RoomGuard {
            guard: Some(Arc::clone(&lock).lock_owned().await),
            lock,
            room_id: room_id.to_owned(),
            writers: &self.writers,
        }
    }

    fn writers_map(&self) -> MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
        self.writers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Rooms whose lock is held or waited for (the others are forgotten).
    pub fn locked_rooms(&self) -> Vec<String> {
        self.writers_map().keys().cloned().collect()
    }

    /// Locks the rooms.
    pub fn rooms(&self) -> MutexGuard<'_, BTreeMap<String, Room>> {
        self.rooms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Locks the key cache.
    pub fn key_cache(&self) -> MutexGuard<'_, KeyCache> {
        self.key_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Locks the transaction de-duplication window.
    pub fn dedup(&self) -> MutexGuard<'_, TxnDedup> {
        self.dedup
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a user ID is one of ours.
    pub fn is_local_user(&self, user_id: &str) -> bool {
        mxfed_core::identifiers::user_server_name(user_id).is_ok_and(|s| s == self.server_name)
    }

    /// Whether a user ID is one of ours that exists (created, not only of our server name).
    ///
    /// # Errors
    /// Database errors.
    pub fn has_local_user(&self, user_id: &str) -> rusqlite::Result<bool> {
        use store::Reads as _;
        Ok(self.is_local_user(user_id) && self.reads().user(user_id)?.is_some())
    }

    /// `@name:us` from a local part or a full user ID.
    pub fn user_id(&self, name: &str) -> String {
        if name.starts_with('@') {
            name.to_owned()
        } else {
            format!("@{name}:{}", self.server_name)
        }
    }
}

/// The federation router (`/.well-known/matrix/server`, `/_matrix/key/…`,
/// `/_matrix/federation/…`), with Matrix errors for unknown paths and methods.
pub fn app(state: Arc<AppState>) -> Router {
    fed::router(state)
}

/// Runs a request that may change something (any method but `GET` and `HEAD`) in a task of its
/// own. Hyper drops a handler when its client goes away (a timeout, a closed connection); a
/// handler dropped between two awaits would leave its work half done: an event taken into the
/// room but not sent on, a transaction not answered for its retry. Detached, it runs to the end
/// whether or not anyone still waits for the answer (Synapse likewise finishes such requests).
/// Reads are left cancellable: nothing is lost by stopping them.
pub async fn detached(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    ) {
        return next.run(req).await;
    }
    match tokio::spawn(next.run(req)).await {
        Ok(resp) => resp,
        Err(e) => error::ApiError::internal(format!("request task: {e}")).into_response(),
    }
}

/// Serves `router` on an already-bound listener (TLS when `tls` is given) until `shutdown`
/// resolves, then finishes the requests in flight (for up to 5 s). Connections get the
/// default [`conn::ConnLimits`].
///
/// # Errors
/// I/O errors of the listener.
pub async fn run(
    listener: std::net::TcpListener,
    router: Router,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_with(listener, router, tls, shutdown, conn::ConnLimits::default()).await
}

/// [`run`] with the connections' time limits given.
///
/// # Errors
/// I/O errors of the listener.
pub async fn run_with(
    listener: std::net::TcpListener,
    router: Router,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    limits: conn::ConnLimits,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    });
    // TCP_NODELAY: an answer written in pieces (HTTP/2 frames, TLS records) must not wait for
    // the peer's delayed ACK (40 ms stalls under load otherwise).
    let nodelay = axum_server::accept::NoDelayAcceptor::new();
    match tls {
        Some(tls) => {
            let tls = axum_server::tls_rustls::RustlsAcceptor::new(tls).acceptor(nodelay);
            let mut server = axum_server::from_tcp(listener)
                .acceptor(conn::FirstRequestAcceptor::new(tls, limits.first_request))
                .handle(handle);
            limits.apply(server.http_builder());
            server.serve(router.into_make_service()).await
        }
        None => {
            let mut server = axum_server::from_tcp(listener)
                .acceptor(conn::FirstRequestAcceptor::new(
                    nodelay,
                    limits.first_request,
                ))
                .handle(handle);
            limits.apply(server.http_builder());
            server.serve(router.into_make_service()).await
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::may_block;
    use std::time::Duration;

    /// A duration the clock cannot add gives a far deadline, not a panic.
    #[test]
    fn deadlines_never_overflow() {
        let year = Duration::from_secs(86_400 * 365);
        for d in [Duration::MAX, Duration::from_secs(u64::MAX), 1000 * year] {
            assert!(super::deadline_in(d) > tokio::time::Instant::now() + year);
        }
        let soon = super::deadline_in(Duration::from_secs(1));
        assert!(soon <= tokio::time::Instant::now() + Duration::from_secs(1));
    }

    /// On a runtime with one worker, a task that waits inside `may_block` for another task does
    /// not keep that task from running (blocking the worker plainly would wait forever).
    #[test]
    fn may_block_leaves_the_worker_to_other_tasks() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<u32>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<u32>();
        rt.spawn(async move {
            let got = may_block(|| rx.recv_timeout(Duration::from_secs(60)));
            let _ = done_tx.send(got.unwrap_or(0));
        });
        rt.spawn(async move {
            // Spawned after the waiter: it runs only if the waiter gave the worker up.
            tokio::task::yield_now().await;
            let _ = tx.send(7);
        });
        assert_eq!(done_rx.recv_timeout(Duration::from_secs(120)), Ok(7));
        // From a blocking thread, and with no runtime at all, it just runs.
        let on_blocking = rt.block_on(rt.spawn_blocking(|| may_block(|| 3)));
        assert!(matches!(on_blocking, Ok(3)));
        assert_eq!(may_block(|| 5), 5);
    }
}
