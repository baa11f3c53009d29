//! Command definitions and their translation to core calls. No protocol logic lives here.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use mxfed_core::acl::ServerAcl;
use mxfed_core::canonical::{self, Int, Object, ParseOptions, Value};
use mxfed_core::discovery;
use mxfed_core::keys::{KeyId, SigningKey, VerifyKey};
use mxfed_core::server_keys::{self, KeyRing, ServerKeys};
use mxfed_core::{event, identifiers, pdu, room, signing, xmatrix, Millis, RoomVersion, Timestamp};

use crate::error::{CliError, EXIT_FAILED};

/// mxfed: Matrix federation signing, hashing and validation.
#[derive(Debug, Parser)]
#[command(name = "mxfed", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the canonical JSON of the input (numbers like 1e10 become integers when exact).
    Canonical {
        /// Print nothing; exit 0 if the input is canonical JSON already, 1 if not (JSON that
        /// does not parse is bad input, exit 2). Floats and integers outside ±(2^53 − 1) are
        /// never canonical.
        #[arg(long)]
        check: bool,
        /// Input file, or - for stdin.
        file: Option<PathBuf>,
    },
    /// Signing keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Sign a JSON object as a server.
    Sign {
        #[command(flatten)]
        signer: Signer,
        /// Input file, or - for stdin.
        file: Option<PathBuf>,
    },
    /// Verify a server's signature on a JSON object. Exit 1 if it does not verify.
    Verify {
        /// The server whose signature is checked.
        #[arg(long)]
        server_name: String,
        /// A verify key, KEYID=BASE64 (repeatable).
        #[arg(long = "public-key", required = true)]
        public_keys: Vec<String>,
        /// Input file, or - for stdin.
        file: Option<PathBuf>,
    },
    /// Event hashing, signing, IDs, redaction and checks.
    #[command(subcommand)]
    Event(EventCommand),
    /// Request authentication (Authorization: X-Matrix).
    #[command(subcommand)]
    Request(RequestCommand),
    /// Server key responses (/_matrix/key/v2/server).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Whole rooms.
    #[command(subcommand)]
    Room(RoomCommand),
    /// Server ACLs (m.room.server_acl).
    #[command(subcommand)]
    Acl(AclCommand),
    /// Server discovery: where to connect for a server name.
    #[command(subcommand)]
    Discover(DiscoverCommand),
    /// History visibility: what another server may see of a room's past.
    #[command(subcommand)]
    History(HistoryCommand),
    /// Run the federation server (creates ./mxfed-data on first run).
    Serve(mxfed_native::server::serve::ServeArgs),
    /// Talk to the running server (users, rooms, invites, timelines).
    Admin(mxfed_native::server::admin_cli::AdminArgs),
}

#[derive(Debug, Subcommand)]
enum RoomCommand {
    /// Validate a whole room's PDUs (JSONL, any order) with full auth; one verdict per line, then
    /// the resolved current state as the last line.
    Replay {
        #[command(flatten)]
        event: EventArgs,
        /// /_matrix/key/v2/server responses (one JSON object per file, or JSONL).
        #[arg(long, num_args = 1.., required = true)]
        keys: Vec<PathBuf>,
    },
    /// The resident server's decision on a join to a restricted room (made of the PDUs, JSONL,
    /// received as `room replay` does): print {"via": USER}, the local user to name in
    /// join_authorised_via_users_server, or {"via": null} when no authorisation is needed. Exit 1
    /// with the refusal's code (restricted_not_allowed, restricted_unable_to_authorise,
    /// restricted_unable_to_grant).
    RestrictedJoin {
        #[command(flatten)]
        event: EventArgs,
        /// /_matrix/key/v2/server responses (one JSON object per file, or JSONL).
        #[arg(long, num_args = 1.., required = true)]
        keys: Vec<PathBuf>,
        /// The resident server: its users are those whose ID ends in :SERVER_NAME.
        #[arg(long)]
        server_name: String,
        /// The user asking to join.
        #[arg(long)]
        user: String,
        /// An allowed room this server knows, and whether the user is joined to it:
        /// ROOM_ID=true or ROOM_ID=false (repeat it; rooms not given are unknown).
        #[arg(long = "joined-to")]
        joined_to: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AclCommand {
    /// Check server names against an ACL; one {"allowed","server_name"} line per name. Exit 1
    /// if any is denied.
    Check {
        /// The ACL event's content (JSON object), or - for stdin.
        #[arg(long)]
        acl: PathBuf,
        /// Server names, with or without a port.
        #[arg(required = true)]
        server_names: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum HistoryCommand {
    /// Whether a server may see an event: print {"history_visibility","may_see"}, the
    /// visibility as understood (unknown or missing values are shared, as Synapse).
    MaySee {
        /// The `history_visibility` value in force after the event; leave it out when the room
        /// has no m.room.history_visibility event.
        #[arg(long, allow_hyphen_values = true)]
        visibility: Option<String>,
        /// The memberships after the event of the server's users (join, invite, leave, ...).
        memberships: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum DiscoverCommand {
    /// Print the next discovery step: without --well-known, connect or fetch the well-known
    /// document; with it, connect or look up SRV records.
    Plan {
        /// The server name to resolve.
        server_name: String,
        /// The well-known answer's body (an empty file when the fetch failed or was not 200),
        /// or - for stdin.
        #[arg(long)]
        well_known: Option<PathBuf>,
    },
    /// Pick the SRV record to connect to from a JSON list of {priority, weight, port, target};
    /// print {"host","port"}, or null when none is usable.
    PickSrv {
        /// The records (JSON file), or - for stdin.
        file: Option<PathBuf>,
    },
    /// Every target of an SRV answer (a JSON list of {priority, weight, port, target}) in the
    /// order to try them: {"action":"connect","targets":[...]}, {"action":"unavailable"} (only
    /// "." targets) or {"action":"next"} (no record).
    SrvTargets {
        /// The records (JSON file), or - for stdin.
        file: Option<PathBuf>,
    },
    /// Print how long to use a valid well-known answer, in milliseconds, from its headers:
    /// max-age or no-store, else Expires, else 24 hours; at least 5 minutes, at most 48 hours.
    WellKnownLifetime {
        /// The Cache-Control header value (several headers joined with commas).
        #[arg(long, allow_hyphen_values = true)]
        cache_control: Option<String>,
        /// The (last) Expires header value.
        #[arg(long, allow_hyphen_values = true)]
        expires: Option<String>,
        /// When the answer arrived, in milliseconds since the epoch (default: the clock).
        #[arg(long)]
        now: Option<u64>,
    },
}

#[derive(Debug, Args)]
struct RequestArgs {
    /// The HTTP method.
    #[arg(long)]
    method: String,
    /// Path and query exactly as on the request line.
    #[arg(long)]
    uri: String,
    /// The JSON request body, if the request has one.
    #[arg(long)]
    content: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum RequestCommand {
    /// Print the Authorization header value (one line per key in the key file).
    Sign {
        /// Synapse signing.key file.
        #[arg(long)]
        key: PathBuf,
        /// Our server name.
        #[arg(long)]
        origin: String,
        /// The server the request is for.
        #[arg(long)]
        destination: String,
        #[command(flatten)]
        request: RequestArgs,
    },
    /// Verify Authorization header values; exit 0 with the origin, or 1 with the reason.
    Verify {
        /// Our server name (the request's destination).
        #[arg(long)]
        destination: String,
        /// /_matrix/key/v2/server responses (one JSON object per file, or JSONL).
        #[arg(long, num_args = 1.., required = true)]
        keys: Vec<PathBuf>,
        #[command(flatten)]
        request: RequestArgs,
        /// A header value, with or without the X-Matrix scheme word (repeatable).
        #[arg(long = "header", required = true)]
        headers: Vec<String>,
        /// "Now" in milliseconds since the epoch (default: the clock), for reproducible expiry.
        #[arg(long)]
        now: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Print our signed /_matrix/key/v2/server response.
    Server {
        /// Synapse signing.key file (every key is published and signs).
        #[arg(long)]
        key: PathBuf,
        /// Our server name.
        #[arg(long)]
        server_name: String,
        /// How long the response is valid: a number with ms, s, m, h or d (e.g. 7d).
        #[arg(long)]
        valid_for: String,
        /// "Now" in milliseconds since the epoch (default: the clock).
        #[arg(long)]
        now: Option<u64>,
    },
    /// Check a key response is well-formed and self-signed; print a summary.
    Verify {
        /// The response, or - for stdin.
        file: Option<PathBuf>,
        /// Also require it to be for this server.
        #[arg(long)]
        server_name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Generate a Synapse-compatible signing.key.
    Generate {
        /// The server the key is for.
        #[arg(long)]
        server_name: String,
        /// Write here instead of stdout (never overwrites an existing file).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the verify keys of a signing.key as {"ed25519:<v>": "<base64>"}.
    Public {
        /// The signing.key file.
        #[arg(long)]
        key: PathBuf,
    },
}

#[derive(Debug, Args)]
struct Signer {
    /// Synapse signing.key file (every key in it signs).
    #[arg(long)]
    key: PathBuf,
    /// The signing server's name.
    #[arg(long)]
    server_name: String,
}

#[derive(Debug, Args)]
struct EventArgs {
    /// Room version (1-12).
    #[arg(long)]
    room_version: String,
    /// Input file, or - for stdin.
    file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum EventCommand {
    /// Print {"content_hash": …, "reference_hash": …} (unpadded base64 SHA-256).
    Hash(EventArgs),
    /// Add the content hash and this server's signature; print the signed event.
    Sign {
        #[command(flatten)]
        event: EventArgs,
        #[command(flatten)]
        signer: Signer,
    },
    /// Print the event ID.
    Id(EventArgs),
    /// Print the room ID a room version 12+ create event defines.
    RoomId(EventArgs),
    /// Print the redacted event.
    Redact(EventArgs),
    /// Check PDUs (JSONL, one per line): format, signatures, content hash (and with --auth the
    /// authorization rules). One verdict per line.
    Check {
        #[command(flatten)]
        event: EventArgs,
        /// /_matrix/key/v2/server responses (one JSON object per file, or JSONL).
        #[arg(long, num_args = 1.., required = true)]
        keys: Vec<PathBuf>,
        /// Full checks: run the lines, in order, through the room pipeline (auth rules against
        /// the auth events, the state before each event and the current state).
        #[arg(long)]
        auth: bool,
    },
    /// Complete a resident server's make_join, make_leave or make_knock answer into our signed
    /// membership event, after checking its template is the event asked for; print
    /// {"event_id", "room_version", "event"} (the event to send with send_*). Signed with the
    /// first key of the key file.
    FromTemplate {
        /// join, leave or knock.
        #[arg(long)]
        membership: String,
        /// The room asked about.
        #[arg(long)]
        room: String,
        /// Our user whose membership it is.
        #[arg(long)]
        user: String,
        /// origin_server_ts in ms since the epoch (default: now).
        #[arg(long)]
        now: Option<u64>,
        /// A JSON object of content keys to add (a display name); the template's own are kept.
        #[arg(long)]
        content: Option<String>,
        /// Room versions 1–2: the event ID's local part (default: drawn at random).
        #[arg(long)]
        event_id_localpart: Option<String>,
        #[command(flatten)]
        signer: Signer,
        /// The make_* answer ({"room_version", "event"}), or - for stdin.
        file: Option<PathBuf>,
    },
}

fn read_input(file: Option<&Path>) -> Result<Vec<u8>, CliError> {
    match file {
        None => read_stdin(),
        Some(p) if p.as_os_str() == "-" => read_stdin(),
        Some(p) => read_file(p),
    }
}

fn read_stdin() -> Result<Vec<u8>, CliError> {
    let mut buf = Vec::new();
    io::stdin()
        .read_to_end(&mut buf)
        .map_err(|e| CliError::bad_input("io", format!("reading stdin: {e}")))?;
    Ok(buf)
}

fn read_file(p: &Path) -> Result<Vec<u8>, CliError> {
    fs::read(p).map_err(|e| CliError::bad_input("io", format!("reading {}: {e}", p.display())))
}

fn write_out(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(|e| CliError::bad_input("io", format!("writing stdout: {e}")))
}

/// The non-blank lines of a JSONL input.
fn lines(input: &[u8]) -> impl Iterator<Item = &[u8]> {
    input
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
}

fn load_signing_keys(path: &Path) -> Result<Vec<SigningKey>, CliError> {
    let text = String::from_utf8(read_file(path)?)
        .map_err(|_| CliError::bad_input("bad_key_file", "signing key file is not UTF-8"))?;
    Ok(SigningKey::parse_synapse(&text)?)
}

fn room_version(id: &str) -> Result<&'static RoomVersion, CliError> {
    Ok(RoomVersion::get(id)?)
}

fn read_event(args: &EventArgs) -> Result<(Object, &'static RoomVersion), CliError> {
    let v = room_version(&args.room_version)?;
    let ev = pdu::parse_pdu(&read_input(args.file.as_deref())?, v)?;
    Ok((ev, v))
}

/// Runs a command; the returned value is the exit status.
pub fn run(cli: Cli) -> Result<u8, CliError> {
    match cli.command {
        Command::Serve(args) => {
            mxfed_native::server::serve::serve(&args)
                .map_err(|e| CliError::bad_input("serve", e))?;
        }
        Command::Admin(args) => {
            let out = mxfed_native::server::admin_cli::run(args).map_err(|e| CliError {
                code: e.code,
                message: e.message.replace('\n', " "),
                exit: e.exit,
            })?;
            if !out.is_empty() {
                println!("{out}");
            }
        }
        Command::Canonical { check: false, file } => {
            write_out(&canonical::canonicalize(&read_input(file.as_deref())?)?)?;
        }
        Command::Canonical { check: true, file } => check_canonical(&read_input(file.as_deref())?)?,
        Command::Key(KeyCommand::Generate { server_name, out }) => {
            identifiers::validate_server_name(&server_name)?;
            let mut entropy = [0u8; 36];
            getrandom::getrandom(&mut entropy)
                .map_err(|e| CliError::bad_input("entropy", format!("no OS randomness: {e}")))?;
            let key = SigningKey::generate(&entropy);
            let line = key.to_synapse_line();
            match out {
                None => print!("{line}"),
                Some(path) => {
                    // create_new: never overwrite (and so lose) an existing key.
                    let mut f = fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .map_err(|e| {
                            CliError::bad_input("io", format!("creating {}: {e}", path.display()))
                        })?;
                    f.write_all(line.as_bytes()).map_err(|e| {
                        CliError::bad_input("io", format!("writing {}: {e}", path.display()))
                    })?;
                    eprintln!(
                        "mxfed: wrote {} for {server_name} to {}",
                        key.key_id(),
                        path.display()
                    );
                }
            }
        }
        Command::Key(KeyCommand::Public { key }) => {
            let mut o = Object::new();
            for k in load_signing_keys(&key)? {
                o.insert(k.key_id().as_str(), k.verify_key().to_base64());
            }
            write_out(o.to_canonical_string().as_bytes())?;
        }
        Command::Sign { signer, file } => {
            let keys = load_signing_keys(&signer.key)?;
            identifiers::validate_server_name(&signer.server_name)?;
            let mut obj =
                canonical::parse_object(&read_input(file.as_deref())?, &ParseOptions::NORMALIZE)?;
            for k in &keys {
                signing::sign_json(&mut obj, &signer.server_name, k)?;
            }
            write_out(obj.to_canonical_string().as_bytes())?;
        }
        Command::Verify {
            server_name,
            public_keys,
            file,
        } => {
            let mut keys = BTreeMap::new();
            for pk in &public_keys {
                let (id, b64) = pk.split_once('=').ok_or_else(|| {
                    CliError::bad_input("bad_public_key_arg", "--public-key takes KEYID=BASE64")
                })?;
                keys.insert(KeyId::parse(id)?, VerifyKey::from_base64(b64)?);
            }
            let obj =
                canonical::parse_object(&read_input(file.as_deref())?, &ParseOptions::NORMALIZE)?;
            match signing::verify_json(&obj, &server_name, &keys) {
                Ok(ids) => {
                    let ids: Vec<Value> = ids.iter().map(|i| Value::from(i.as_str())).collect();
                    let mut o = Object::new();
                    o.insert("verified", Value::Array(ids));
                    write_out(o.to_canonical_string().as_bytes())?;
                }
                Err(e @ signing::SignatureError::Malformed { .. }) => return Err(e.into()),
                Err(e) => return Err(CliError::failed(e.code(), &e)),
            }
        }
        Command::Event(cmd) => return run_event(cmd),
        Command::Request(cmd) => return run_request(cmd),
        Command::Keys(cmd) => return run_keys(cmd),
        Command::Acl(cmd) => return run_acl(cmd),
        Command::Discover(cmd) => run_discover(cmd)?,
        Command::History(HistoryCommand::MaySee {
            visibility,
            memberships,
        }) => {
            let memberships: Vec<&str> = memberships.iter().map(String::as_str).collect();
            let o = room::server_may_see_json(visibility.as_deref(), &memberships);
            write_out(o.to_canonical_string().as_bytes())?;
        }
        Command::Room(RoomCommand::Replay { event: args, keys }) => {
            let v = room_version(&args.room_version)?;
            let (keys, file) = split_keys_and_input(keys, args.file);
            let ring = load_key_ring(&keys)?;
            let input = read_input(file.as_deref())?;
            let pdus: Vec<&[u8]> = lines(&input).collect();
            let (verdicts, state) = mxfed_core::room::replay(&pdus, v, &ring);
            let mut out = Vec::with_capacity(input.len() / 2);
            let mut all_ok = true;
            for verdict in &verdicts {
                all_ok &= verdict.get_str("verdict") == Some("accepted");
                canonical::encode_object_into(verdict, &mut out);
                out.push(b'\n');
            }
            canonical::encode_object_into(&mxfed_core::room::state_to_json(&state), &mut out);
            out.push(b'\n');
            io::stdout()
                .lock()
                .write_all(&out)
                .map_err(|e| CliError::bad_input("io", format!("writing stdout: {e}")))?;
            return Ok(if all_ok { 0 } else { EXIT_FAILED });
        }
        Command::Room(RoomCommand::RestrictedJoin {
            event: args,
            keys,
            server_name,
            user,
            joined_to,
        }) => {
            let v = room_version(&args.room_version)?;
            identifiers::validate_server_name(&server_name)?;
            identifiers::user_server_name(&user)?;
            let mut known = BTreeMap::new();
            for arg in &joined_to {
                let joined = match arg.rsplit_once('=') {
                    Some((room, "true")) if !room.is_empty() => (room, true),
                    Some((room, "false")) if !room.is_empty() => (room, false),
                    _ => {
                        return Err(CliError::bad_input(
                            "bad_joined_to_arg",
                            format!("--joined-to takes ROOM_ID=true or ROOM_ID=false, not {arg:?}"),
                        ))
                    }
                };
                known.insert(joined.0.to_owned(), joined.1);
            }
            let (keys, file) = split_keys_and_input(keys, args.file);
            let ring = load_key_ring(&keys)?;
            let input = read_input(file.as_deref())?;
            let pdus: Vec<&[u8]> = lines(&input).collect();
            let mut room = room::Room::new(v);
            room.receive_pdus(&pdus, &ring);
            match room.restricted_join_for(&user, &server_name, &known) {
                Ok(d) => write_out(
                    room::restricted_join_json(&d)
                        .to_canonical_string()
                        .as_bytes(),
                )?,
                Err(e) => return Err(CliError::failed(e.code(), e)),
            }
        }
    }
    Ok(0)
}

fn run_event(cmd: EventCommand) -> Result<u8, CliError> {
    match cmd {
        EventCommand::Hash(args) => {
            let (ev, v) = read_event(&args)?;
            let mut o = Object::new();
            o.insert(
                "content_hash",
                mxfed_core::base64::encode(event::content_hash(&ev)),
            );
            o.insert(
                "reference_hash",
                mxfed_core::base64::encode(event::reference_hash(&ev, v)),
            );
            write_out(o.to_canonical_string().as_bytes())?;
        }
        EventCommand::Sign {
            event: args,
            signer,
        } => {
            let keys = load_signing_keys(&signer.key)?;
            identifiers::validate_server_name(&signer.server_name)?;
            let (mut ev, v) = read_event(&args)?;
            for k in &keys {
                event::hash_and_sign_event(&mut ev, v, &signer.server_name, k)?;
            }
            write_out(ev.to_canonical_string().as_bytes())?;
        }
        EventCommand::FromTemplate {
            membership,
            room,
            user,
            now,
            content,
            event_id_localpart,
            signer,
            file,
        } => {
            identifiers::validate_server_name(&signer.server_name)?;
            let keys = load_signing_keys(&signer.key)?;
            let key = keys
                .first()
                .ok_or_else(|| CliError::bad_input("bad_key_file", "no signing key in the file"))?;
            let answer =
                canonical::parse_object(&read_input(file.as_deref())?, &ParseOptions::LEGACY)?;
            let content = content
                .map(|c| canonical::parse_object(c.as_bytes(), &ParseOptions::LEGACY))
                .transpose()?;
            let local = match event_id_localpart {
                Some(l) => l,
                None => mxfed_native::server::random_token(18)
                    .map_err(|e| CliError::bad_input("entropy", e.to_string()))?,
            };
            let req = event::MembershipRequest {
                room_id: &room,
                user_id: &user,
                membership: &membership,
                origin: &signer.server_name,
                content: content.as_ref(),
                now: clock_now(now)?,
                event_id_localpart: Some(&local),
            };
            let (built, v) = event::membership_from_template(&answer, &req, key)?;
            let out = event::membership_json(built, v);
            write_out(out.to_canonical_string().as_bytes())?;
        }
        EventCommand::Id(args) => {
            let (ev, v) = read_event(&args)?;
            write_out(event::event_id(&ev, v)?.as_bytes())?;
        }
        EventCommand::RoomId(args) => {
            let (ev, v) = read_event(&args)?;
            write_out(event::room_id_from_create(&ev, v)?.as_bytes())?;
        }
        EventCommand::Redact(args) => {
            let (ev, v) = read_event(&args)?;
            write_out(event::redact(&ev, v).to_canonical_string().as_bytes())?;
        }
        EventCommand::Check {
            event: args,
            keys,
            auth,
        } => {
            let v = room_version(&args.room_version)?;
            let (keys, file) = split_keys_and_input(keys, args.file);
            let ring = load_key_ring(&keys)?;
            let input = read_input(file.as_deref())?;
            let mut all_ok = true;
            let mut out = Vec::with_capacity(input.len() / 2);
            let mut room = mxfed_core::room::Room::new(v);
            let all: Vec<&[u8]> = lines(&input).collect();
            // Batch signature verification across every line; the same verdicts as one by one.
            for check in pdu::check_pdus(&all, v, &ring) {
                let verdict = if auth {
                    let verdict = room.receive(&check);
                    all_ok &= verdict == mxfed_core::room::RoomVerdict::Accepted;
                    mxfed_core::room::verdict_json(&check, &verdict)
                } else {
                    all_ok &= check.verdict == pdu::Verdict::Accepted;
                    check.to_json()
                };
                canonical::encode_object_into(&verdict, &mut out);
                out.push(b'\n');
            }
            io::stdout()
                .lock()
                .write_all(&out)
                .map_err(|e| CliError::bad_input("io", format!("writing stdout: {e}")))?;
            return Ok(if all_ok { 0 } else { EXIT_FAILED });
        }
    }
    Ok(0)
}

/// Loads key responses (one object per file, or JSONL), each verified as self-signed.
/// `--keys FILE... [FILE]`: the key list swallows a trailing input file, so when no input was
/// recognised and the last `--keys` file holds no key response, it is the input.
fn split_keys_and_input(
    mut keys: Vec<PathBuf>,
    file: Option<PathBuf>,
) -> (Vec<PathBuf>, Option<PathBuf>) {
    if file.is_some() || keys.len() < 2 {
        return (keys, file);
    }
    let last_is_keys = keys.last().and_then(|p| fs::read(p).ok()).is_some_and(|b| {
        let first = lines(&b).next().unwrap_or_default();
        let whole = canonical::parse_object(&b, &ParseOptions::LEGACY);
        let obj = whole.or_else(|_| canonical::parse_object(first, &ParseOptions::LEGACY));
        obj.is_ok_and(|o| o.contains_key("verify_keys"))
    });
    if last_is_keys {
        (keys, None)
    } else {
        let input = keys.pop();
        (keys, input)
    }
}

fn load_key_ring(paths: &[PathBuf]) -> Result<KeyRing, CliError> {
    let mut ring = KeyRing::new();
    for path in paths {
        let bytes = read_file(path)?;
        let whole = canonical::parse_object(&bytes, &ParseOptions::STRICT);
        let objects = match whole {
            Ok(o) => vec![o],
            Err(_) => bytes
                .split(|b| *b == b'\n')
                .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                .map(|l| canonical::parse_object(l, &ParseOptions::STRICT))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| CliError::bad_input(e.code(), format!("{}: {e}", path.display())))?,
        };
        for o in &objects {
            let keys = ServerKeys::from_response(o)
                .map_err(|e| CliError::bad_input(e.code(), format!("{}: {e}", path.display())))?;
            ring.add(&keys);
        }
    }
    Ok(ring)
}

fn clock_now(now: Option<u64>) -> Result<Timestamp, CliError> {
    match now {
        Some(ms) => Ok(Timestamp(ms)),
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| Timestamp(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
            .map_err(|_| CliError::bad_input("clock", "the system clock is before 1970")),
    }
}

fn parse_duration(s: &str) -> Result<Millis, CliError> {
    let bad = || {
        CliError::bad_input(
            "bad_duration",
            format!("bad duration {s:?}: use e.g. 7d, 24h, 3600s, 500ms"),
        )
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let factor = match unit {
        "ms" => 1,
        "s" | "" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(factor).map(Millis).ok_or_else(bad)
}

/// `canonical --check`: nothing when `input` is canonical JSON, else a failure saying where it
/// first differs from its canonical form.
fn check_canonical(input: &[u8]) -> Result<(), CliError> {
    if canonical::is_canonical(input) {
        return Ok(());
    }
    // The rules the check uses (those of request bodies), so only JSON that does not parse at
    // all is bad input.
    let value = canonical::parse(input, &ParseOptions::LEGACY)?;
    let encoded = canonical::to_vec(&value);
    let why = match input.iter().zip(&encoded).position(|(a, b)| a != b) {
        Some(at) => format!("not canonical JSON: differs from its canonical form at byte {at}"),
        None if input.len() != encoded.len() => format!(
            "not canonical JSON: differs from its canonical form at byte {}",
            input.len().min(encoded.len())
        ),
        None => "not canonical JSON: holds a float or an integer outside ±(2^53 − 1)".to_owned(),
    };
    Err(CliError::failed("json_not_canonical", why))
}

fn run_request(cmd: RequestCommand) -> Result<u8, CliError> {
    match cmd {
        RequestCommand::Sign {
            key,
            origin,
            destination,
            request,
        } => {
            identifiers::validate_server_name(&origin)?;
            identifiers::validate_server_name(&destination)?;
            let keys = load_signing_keys(&key)?;
            let req = xmatrix::Request {
                method: &request.method,
                uri: &request.uri,
                origin: &origin,
                destination: &destination,
                content: None,
            };
            let body = match &request.content {
                Some(p) => Some(read_input(Some(p))?),
                None => None,
            };
            let headers = req.sign_body(body.as_deref(), &keys)?;
            let lines: Vec<String> = headers.iter().map(|h| h.to_header_value()).collect();
            write_out(lines.join("\n").as_bytes())?;
        }
        RequestCommand::Verify {
            destination,
            keys,
            request,
            headers,
            now,
        } => {
            let ring = load_key_ring(&keys)?;
            let raw = match &request.content {
                Some(p) => Some(read_input(Some(p))?),
                None => None,
            };
            let content = raw
                .as_deref()
                .map(|b| xmatrix::RequestBody::parse_request(&request.method, &request.uri, b))
                .transpose()?;
            let parsed = headers
                .iter()
                .map(|h| xmatrix::XMatrix::parse(h))
                .collect::<Result<Vec<_>, _>>()?;
            match xmatrix::verify_request_body(
                &parsed,
                &destination,
                &request.method,
                &request.uri,
                content.as_ref(),
                &ring,
                clock_now(now)?,
            ) {
                Ok(auth) => {
                    let mut o = Object::new();
                    o.insert("origin", auth.origin.as_str());
                    let ids: Vec<Value> = auth
                        .key_ids
                        .iter()
                        .map(|k| Value::from(k.as_str()))
                        .collect();
                    o.insert("verified", Value::Array(ids));
                    write_out(o.to_canonical_string().as_bytes())?;
                }
                Err(e) => return Err(CliError::failed(e.code(), &e)),
            }
        }
    }
    Ok(0)
}

fn run_keys(cmd: KeysCommand) -> Result<u8, CliError> {
    match cmd {
        KeysCommand::Server {
            key,
            server_name,
            valid_for,
            now,
        } => {
            identifiers::validate_server_name(&server_name)?;
            let keys = load_signing_keys(&key)?;
            let until = clock_now(now)?.saturating_add(parse_duration(&valid_for)?);
            let until = Int::new(until.as_i64())
                .ok_or_else(|| CliError::bad_input("bad_duration", "validity beyond 2^53 ms"))?;
            let o = server_keys::build_server_keys(&server_name, &keys, &[], until)?;
            write_out(o.to_canonical_string().as_bytes())?;
        }
        KeysCommand::Verify { file, server_name } => {
            let o = canonical::parse_object(&read_input(file.as_deref())?, &ParseOptions::STRICT)?;
            let keys = match ServerKeys::from_response(&o) {
                Ok(k) => k,
                Err(e @ server_keys::ServerKeysError::NotSelfSigned(_)) => {
                    return Err(CliError::failed(e.code(), &e))
                }
                Err(e) => return Err(e.into()),
            };
            if let Some(want) = server_name {
                if keys.server_name != want {
                    let e = server_keys::ServerKeysError::WrongServer {
                        expected: want,
                        got: keys.server_name,
                    };
                    return Err(CliError::failed(e.code(), &e));
                }
            }
            let mut summary = Object::new();
            summary.insert("server_name", keys.server_name.as_str());
            summary.insert(
                "valid_until_ts",
                Value::Int(Int::saturating(keys.valid_until_ts)),
            );
            let mut ks = Object::new();
            for (id, e) in &keys.keys {
                let mut k = Object::new();
                k.insert("key", e.key.to_base64());
                if let Some(t) = e.expired_ts {
                    k.insert("expired_ts", Int::saturating(t));
                }
                ks.insert(id.as_str(), k);
            }
            summary.insert("keys", ks);
            write_out(summary.to_canonical_string().as_bytes())?;
        }
    }
    Ok(0)
}

fn run_acl(cmd: AclCommand) -> Result<u8, CliError> {
    match cmd {
        AclCommand::Check { acl, server_names } => {
            let content = canonical::parse_object(&read_input(Some(&acl))?, &ParseOptions::LEGACY)?;
            let acl = ServerAcl::from_content(&content);
            // Every name is checked before anything is printed: bad input prints nothing.
            let verdicts = server_names
                .iter()
                .map(|name| acl.check(name).map(|allowed| (name, allowed)))
                .collect::<Result<Vec<_>, _>>()?;
            let mut out = Vec::new();
            for (name, allowed) in &verdicts {
                let mut o = Object::new();
                o.insert("allowed", *allowed);
                o.insert("server_name", name.as_str());
                canonical::encode_object_into(&o, &mut out);
                out.push(b'\n');
            }
            io::stdout()
                .lock()
                .write_all(&out)
                .map_err(|e| CliError::bad_input("io", format!("writing stdout: {e}")))?;
            let all_allowed = verdicts.iter().all(|(_, allowed)| *allowed);
            Ok(if all_allowed { 0 } else { EXIT_FAILED })
        }
    }
}

fn run_discover(cmd: DiscoverCommand) -> Result<(), CliError> {
    match cmd {
        DiscoverCommand::Plan {
            server_name,
            well_known,
        } => {
            let body = well_known.map(|p| read_input(Some(&p))).transpose()?;
            let plan = discovery::plan_json(&server_name, body.as_deref())?;
            write_out(plan.to_canonical_string().as_bytes())
        }
        DiscoverCommand::PickSrv { file } => {
            let target = discovery::pick_srv_json(&read_input(file.as_deref())?)?;
            write_out(&canonical::to_vec(&target))
        }
        DiscoverCommand::SrvTargets { file } => {
            let answer = discovery::srv_targets_json(&read_input(file.as_deref())?)?;
            write_out(answer.to_canonical_string().as_bytes())
        }
        DiscoverCommand::WellKnownLifetime {
            cache_control,
            expires,
            now,
        } => {
            let lifetime = discovery::well_known_lifetime(
                cache_control.as_deref(),
                expires.as_deref(),
                clock_now(now)?,
            );
            write_out(lifetime.0.to_string().as_bytes())
        }
    }
}
