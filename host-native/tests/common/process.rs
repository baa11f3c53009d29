//! `mxfed serve --dev` processes on loopback, driven with `mxfed admin`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Server {
    pub child: Child,
    pub data: PathBuf,
    pub port: u16,
    /// The rest of stderr, drained in a thread so the server never blocks on it.
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    pub fn start(data: &Path, port: u16) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mxfed"))
            .args(["serve", "--dev", "--data-dir"])
            .arg(data)
            .args(["--server-name", &format!("localhost:{port}")])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                panic!(
                    "server exited before ready: {seen}\n{}",
                    log.lock().unwrap()
                );
            }
            seen.push_str(&line);
            if line.trim() == "mxfed: ready" {
                break;
            }
        }
        assert!(
            seen.contains(&format!("server name localhost:{port}")),
            "{seen}"
        );
        std::thread::spawn(move || for _ in out.lines() {});
        Server {
            child,
            data: data.to_owned(),
            port,
            log,
        }
    }

    pub fn name(&self) -> String {
        format!("localhost:{}", self.port)
    }

    /// `mxfed admin` with these arguments against this server's data directory.
    pub fn admin_output(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_mxfed"))
            .arg("admin")
            .arg("--data-dir")
            .arg(&self.data)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs `mxfed admin`, which must succeed; returns its stdout without the trailing newline.
    pub fn admin(&self, args: &[&str]) -> String {
        let out = self.admin_output(args);
        assert!(
            out.status.success(),
            "mxfed admin {args:?}: {}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log.lock().unwrap()
        );
        String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
    }

    /// Creates a room as `creator` and makes its join rule public; returns the room ID.
    pub fn public_room(&self, creator: &str) -> String {
        let room = self.admin(&["room", "create", "--as", creator]);
        self.admin(&[
            "room",
            "state-set",
            &room,
            "m.room.join_rules",
            "",
            r#"{"join_rule":"public"}"#,
            "--as",
            creator,
        ]);
        room
    }

    pub fn wait_event(&self, room: &str, event: &str) {
        self.admin(&["room", "wait", room, "--event", event, "--timeout", "60"]);
    }

    /// A read-only connection to the server's database (it may be running: WAL lets both in).
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.data.join("mxfed.sqlite"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap()
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two servers under `dir` (`a` and `b`, each on a free port): `alice` created on A, and on B
/// `bob`, who accepts invites by himself. Returns them and Bob's user ID.
pub fn alice_and_bob(dir: &Path) -> (Server, Server, String) {
    let a = Server::start(&dir.join("a"), super::free_port());
    let b = Server::start(&dir.join("b"), super::free_port());
    a.admin(&["user", "create", "alice"]);
    let bob = b.admin(&["user", "create", "bob", "--auto-accept"]);
    (a, b, bob)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
