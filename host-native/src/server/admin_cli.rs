//! `mxfed admin`: talks to the running server's admin API (its URL in `DATA_DIR/admin.json`, its
//! token in `DATA_DIR/admin.token`).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::serve::{ADMIN_FILE, DEFAULT_DATA_DIR, TOKEN_FILE};

/// `mxfed admin` arguments.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The running server's data directory (default: ./mxfed-data).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Local users.
    #[command(subcommand)]
    User(UserCommand),
    /// Rooms.
    #[command(subcommand)]
    Room(RoomCommand),
    /// A user's invites (JSONL).
    Invites {
        /// The local user.
        #[arg(long = "as")]
        user: String,
    },
    /// Invites.
    #[command(subcommand)]
    Invite(InviteCommand),
    /// Queries another server (JSON answer as received).
    #[command(subcommand)]
    Query(QueryCommand),
    /// The typing and receipt EDUs received for a room (JSONL).
    Edus {
        /// The room ID.
        room: String,
    },
    /// The server's name and counts (JSON).
    Status,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Creates a local user; prints its user ID.
    Create {
        /// The local part (a-z, 0-9 and . _ = - / +) or full user ID (255 bytes at most).
        name: String,
        /// The display name.
        #[arg(long)]
        display_name: Option<String>,
        /// Accept invites automatically.
        #[arg(long)]
        auto_accept: bool,
    },
    /// Turns automatic acceptance of invites on or off.
    AutoAccept {
        /// The local part (or full user ID).
        name: String,
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        setting: String,
    },
}

#[derive(Debug, Subcommand)]
enum QueryCommand {
    /// A user's profile, from the user's server (/query/profile).
    Profile {
        /// The user ID.
        user_id: String,
        /// Only this field (displayname or avatar_url).
        #[arg(long)]
        field: Option<String>,
    },
    /// The room a room alias names, from the alias's server (/query/directory).
    Directory {
        /// The room alias (#name:server).
        room_alias: String,
    },
}

#[derive(Debug, Subcommand)]
enum InviteCommand {
    /// Accepts an invite (joins through the inviting server); prints the join's event ID.
    Accept {
        /// The room ID.
        room: String,
        /// The local user.
        #[arg(long = "as")]
        user: String,
    },
}

#[derive(Debug, Subcommand)]
enum RoomCommand {
    /// Creates a room; prints its room ID.
    Create {
        /// The creating local user.
        #[arg(long = "as")]
        user: String,
        /// The room version (default 12).
        #[arg(long)]
        version: Option<String>,
    },
    /// Invites a user (local or remote); prints the invite's event ID.
    Invite {
        /// The room ID.
        room: String,
        /// The invited user ID.
        user_id: String,
        /// The inviting local user.
        #[arg(long = "as")]
        user: String,
    },
    /// Joins a room through a resident server; prints the join's event ID.
    Join {
        /// The room ID.
        room: String,
        /// A server in the room (repeatable).
        #[arg(long)]
        via: Vec<String>,
        /// The joining local user.
        #[arg(long = "as")]
        user: String,
    },
    /// Sends a text message; prints its event ID.
    Send {
        /// The room ID.
        room: String,
        /// The text.
        text: String,
        /// The sending local user.
        #[arg(long = "as")]
        user: String,
    },
    /// Sends a state event; prints its event ID.
    StateSet {
        /// The room ID.
        room: String,
        /// The event type.
        #[arg(value_name = "TYPE")]
        kind: String,
        /// The state key.
        state_key: String,
        /// The content, a JSON object.
        json: String,
        /// The sending local user.
        #[arg(long = "as")]
        user: String,
    },
    /// Redacts an event; prints the redaction's event ID.
    Redact {
        /// The room ID.
        room: String,
        /// The event to redact.
        event_id: String,
        /// The redacting local user.
        #[arg(long = "as")]
        user: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Leaves a room (or rejects its invite); prints the leave's event ID.
    Leave {
        /// The room ID.
        room: String,
        /// The leaving local user.
        #[arg(long = "as")]
        user: String,
    },
    /// The room's accepted PDUs in stored order (JSONL).
    Timeline {
        /// The room ID.
        room: String,
        /// Only the last N events.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// The room's current state (JSON).
    State {
        /// The room ID.
        room: String,
    },
    /// Every room this server knows (JSON).
    List,
    /// Sends an m.typing EDU to the room's other servers; prints them (JSON).
    Typing {
        /// The room ID.
        room: String,
        /// The typing local user.
        #[arg(long = "as")]
        user: String,
        /// Send "stopped typing" after this many milliseconds.
        #[arg(long, value_name = "MS", conflicts_with = "stop")]
        timeout: Option<u64>,
        /// Say the user stopped typing.
        #[arg(long)]
        stop: bool,
    },
    /// Sends an m.receipt EDU (m.read) for an event to the room's other servers; prints them (JSON).
    Receipt {
        /// The room ID.
        room: String,
        /// The event read.
        event_id: String,
        /// The reading local user.
        #[arg(long = "as")]
        user: String,
    },
    /// Waits until an event is in the room, or a user has joined (exit 1 on timeout).
    Wait {
        /// The room ID.
        room: String,
        /// The event to wait for.
        #[arg(long)]
        event: Option<String>,
        /// The user to wait for as joined.
        #[arg(long)]
        joined: Option<String>,
        /// Seconds to wait at most.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
}

/// What went wrong, for the CLI's error line.
#[derive(Debug)]
pub struct AdminError {
    /// A stable code.
    pub code: &'static str,
    /// One line.
    pub message: String,
    /// Exit status.
    pub exit: u8,
}

fn err(code: &'static str, message: impl std::fmt::Display) -> AdminError {
    AdminError {
        code,
        message: message.to_string(),
        exit: 2,
    }
}

fn connection(data_dir: &Path) -> Result<(String, String), AdminError> {
    let info = std::fs::read_to_string(data_dir.join(ADMIN_FILE)).map_err(|e| {
        err(
            "admin_not_running",
            format!(
                "no running server for {} ({}: {e})",
                data_dir.display(),
                data_dir.join(ADMIN_FILE).display()
            ),
        )
    })?;
    let url = serde_json::from_str::<serde_json::Value>(&info)
        .ok()
        .and_then(|v| v.get("url").and_then(|u| u.as_str()).map(str::to_owned))
        .ok_or_else(|| err("admin_bad_file", format!("{ADMIN_FILE} has no url")))?;
    let token = std::fs::read_to_string(data_dir.join(TOKEN_FILE))
        .map_err(|e| {
            err(
                "admin_no_token",
                format!("{}: {e}", data_dir.join(TOKEN_FILE).display()),
            )
        })?
        .trim()
        .to_owned();
    Ok((url, token))
}

fn enc(s: &str) -> String {
    super::client::encode_segment(s)
}

/// Runs `mxfed admin …`; returns what to print.
///
/// # Errors
/// An [`AdminError`] for the one-line error.
pub fn run(args: AdminArgs) -> Result<String, AdminError> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let (url, token) = connection(&data_dir)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| err("admin_runtime", e))?;
    rt.block_on(dispatch(&url, &token, args.command))
}

async fn call(
    url: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(u16, String), AdminError> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .map_err(|e| err("admin_client", e))?;
    let mut req = client
        .request(method, format!("{url}{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.map_err(|e| {
        err(
            "admin_unreachable",
            format!("cannot reach the server at {url}: {e}"),
        )
    })?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| err("admin_unreachable", e))?;
    Ok((status, text))
}

fn check(status: u16, text: String) -> Result<String, AdminError> {
    if status == 200 {
        return Ok(text);
    }
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let errcode = v
        .get("errcode")
        .and_then(|e| e.as_str())
        .unwrap_or("M_UNKNOWN");
    let msg = v.get("error").and_then(|e| e.as_str()).unwrap_or(&text);
    Err(AdminError {
        code: "admin_request_failed",
        message: format!("HTTP {status} {errcode}: {msg}"),
        exit: if status == 408 { 1 } else { 2 },
    })
}

fn field(text: &str, k: &str) -> Result<String, AdminError> {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get(k).and_then(|x| x.as_str()).map(str::to_owned))
        .ok_or_else(|| err("admin_bad_answer", format!("answer has no {k}: {text}")))
}

fn trim_nl(s: String) -> String {
    s.trim_end_matches('\n').to_owned()
}

async fn dispatch(url: &str, token: &str, cmd: AdminCommand) -> Result<String, AdminError> {
    use reqwest::Method as M;
    use serde_json::json;
    let post = |path: String, body: serde_json::Value| async move {
        let (s, t) = call(url, token, M::POST, &path, Some(body)).await?;
        check(s, t)
    };
    let get = |path: String| async move {
        let (s, t) = call(url, token, M::GET, &path, None).await?;
        check(s, t)
    };
    match cmd {
        AdminCommand::User(UserCommand::Create {
            name,
            display_name,
            auto_accept,
        }) => {
            let t = post(
                "/admin/v1/users".into(),
                json!({"name": name, "display_name": display_name, "auto_accept": auto_accept}),
            )
            .await?;
            field(&t, "user_id")
        }
        AdminCommand::User(UserCommand::AutoAccept { name, setting }) => {
            post(
                format!("/admin/v1/users/{}/auto_accept", enc(&name)),
                json!({"enabled": setting == "on"}),
            )
            .await
        }
        AdminCommand::Room(RoomCommand::Create { user, version }) => {
            let t = post(
                "/admin/v1/rooms".into(),
                json!({"as": user, "version": version}),
            )
            .await?;
            field(&t, "room_id")
        }
        AdminCommand::Room(RoomCommand::Invite {
            room,
            user_id,
            user,
        }) => {
            let t = post(
                format!("/admin/v1/rooms/{}/invite", enc(&room)),
                json!({"as": user, "user_id": user_id}),
            )
            .await?;
            field(&t, "event_id")
        }
        AdminCommand::Room(RoomCommand::Join { room, via, user }) => {
            let t = post(
                format!("/admin/v1/rooms/{}/join", enc(&room)),
                json!({"as": user, "via": via}),
            )
            .await?;
            field(&t, "event_id")
        }
        AdminCommand::Room(RoomCommand::Send { room, text, user }) => {
            let t = post(
                format!("/admin/v1/rooms/{}/send", enc(&room)),
                json!({"as": user, "text": text}),
            )
            .await?;
            field(&t, "event_id")
        }
        AdminCommand::Room(RoomCommand::StateSet {
            room,
            kind,
            state_key,
            json: content,
            user,
        }) => {
            let content: serde_json::Value = serde_json::from_str(&content)
                .map_err(|e| err("bad_json", format!("JSON content: {e}")))?;
            if !content.is_object() {
                return Err(err("bad_json", "the content must be a JSON object"));
            }
            let t = post(
                format!("/admin/v1/rooms/{}/state", enc(&room)),
                json!({"as": user, "type": kind, "state_key": state_key, "content": content}),
            )
            .await?;
            field(&t, "event_id")
        }
        AdminCommand::Room(RoomCommand::Redact {
            room,
            event_id,
            user,
            reason,
        }) => {
            let t = post(
                format!("/admin/v1/rooms/{}/redact", enc(&room)),
                json!({"as": user, "event_id": event_id, "reason": reason}),
            )
            .await?;
            field(&t, "event_id")
        }
        AdminCommand::Room(RoomCommand::Leave { room, user }) => {
            let t = post(
                format!("/admin/v1/rooms/{}/leave", enc(&room)),
                json!({"as": user}),
            )
            .await?;
            field(&t, "event_id")
        }
        AdminCommand::Room(RoomCommand::Timeline { room, limit }) => {
            let query = limit.map_or_else(String::new, |n| format!("?limit={n}"));
            get(format!("/admin/v1/rooms/{}/timeline{query}", enc(&room)))
                .await
                .map(trim_nl)
        }
        AdminCommand::Room(RoomCommand::State { room }) => {
            get(format!("/admin/v1/rooms/{}/state", enc(&room))).await
        }
        AdminCommand::Room(RoomCommand::List) => get("/admin/v1/rooms".into()).await,
        AdminCommand::Room(RoomCommand::Typing {
            room,
            user,
            timeout,
            stop,
        }) => {
            post(
                format!("/admin/v1/rooms/{}/typing", enc(&room)),
                json!({"as": user, "typing": !stop, "timeout_ms": timeout}),
            )
            .await
        }
        AdminCommand::Room(RoomCommand::Receipt {
            room,
            event_id,
            user,
        }) => {
            post(
                format!("/admin/v1/rooms/{}/receipt", enc(&room)),
                json!({"as": user, "event_id": event_id}),
            )
            .await
        }
        AdminCommand::Room(RoomCommand::Wait {
            room,
            event,
            joined,
            timeout,
        }) => {
            let mut q = format!("timeout_ms={}", timeout.saturating_mul(1000));
            if let Some(e) = event {
                q.push_str(&format!("&event_id={}", enc(&e)));
            }
            if let Some(u) = joined {
                q.push_str(&format!("&joined={}", enc(&u)));
            }
            get(format!("/admin/v1/rooms/{}/wait?{q}", enc(&room))).await
        }
        AdminCommand::Invites { user } => get(format!("/admin/v1/invites?as={}", enc(&user)))
            .await
            .map(trim_nl),
        AdminCommand::Invite(InviteCommand::Accept { room, user }) => {
            let t = post(
                format!("/admin/v1/invites/{}/accept", enc(&room)),
                json!({"as": user}),
            )
            .await?;
            field(&t, "event_id")
        }
        AdminCommand::Edus { room } => get(format!("/admin/v1/rooms/{}/edus", enc(&room)))
            .await
            .map(trim_nl),
        AdminCommand::Query(QueryCommand::Profile { user_id, field }) => {
            let mut q = format!("user_id={}", enc(&user_id));
            if let Some(f) = field {
                q.push_str(&format!("&field={}", enc(&f)));
            }
            get(format!("/admin/v1/query/profile?{q}")).await
        }
        AdminCommand::Query(QueryCommand::Directory { room_alias }) => {
            get(format!(
                "/admin/v1/query/directory?room_alias={}",
                enc(&room_alias)
            ))
            .await
        }
        AdminCommand::Status => get("/admin/v1/status".into()).await,
    }
}
