//! A real Radicale CalDAV server, one per test binary, for the CalDAV calendar's tests.
//!
//! `scripts/test.sh` installs Radicale 3 from PyPI into a venv (`ensure_radicale` in
//! `scripts/lib.sh`) and exports `CALLER_TEST_RADICALE`, the venv's python. The server listens
//! on a free loopback port with a temporary storage folder and HTTP Basic against a plain
//! htpasswd file holding [`USER`]:[`PASSWORD`]; rights are `owner_only`, so each test works
//! under `/{USER}/<its own collection>/`.
//!
//! The server outlives no test binary: it runs under a small python wrapper that exits (and
//! removes the storage folder) when its stdin closes, which happens when this process exits,
//! however it exits.

#![allow(dead_code, unreachable_pub)] // each test file uses a different part of the harness

use std::io::Write as _;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// The user the server knows.
pub const USER: &str = "alice";
/// Its password.
pub const PASSWORD: &str = "radicale-test-password";

/// Runs Radicale in-process and exits when stdin reaches end of file.
const WRAPPER: &str = r#"
import os, shutil, sys, threading
storage = sys.argv[2]
def watch():
    sys.stdin.read()
    shutil.rmtree(storage, ignore_errors=True)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
from radicale.__main__ import run
sys.argv = ["radicale", "--config", sys.argv[1]]
run()
"#;

/// The running server.
pub struct Radicale {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    // Kept open for the life of the process: closing it stops the server.
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

static SERVER: tokio::sync::OnceCell<Radicale> = tokio::sync::OnceCell::const_new();

/// Returns the binary's server, starting it on first use.
///
/// # Panics
///
/// When `CALLER_TEST_RADICALE` is unset or the server does not start.
pub async fn server() -> &'static Radicale {
    SERVER.get_or_init(start).await
}

async fn start() -> Radicale {
    let python = std::env::var_os("CALLER_TEST_RADICALE").unwrap_or_else(|| {
        panic!(
            "CALLER_TEST_RADICALE is not set: run the tests through scripts/test.sh, or \
             `source scripts/lib.sh && ensure_radicale` in the shell that runs cargo (it \
             installs Radicale 3 from PyPI and exports the venv's python; Debian's 3.1.8 \
             answers free-busy wrongly)"
        )
    });
    let port = crate::common::free_port();
    let dir = tempfile::tempdir().unwrap().keep();
    let storage = dir.join("storage");
    let users = dir.join("users");
    std::fs::write(&users, format!("{USER}:{PASSWORD}\n")).unwrap();
    let config = dir.join("config");
    std::fs::write(
        &config,
        format!(
            "[server]\nhosts = 127.0.0.1:{port}\n\
             [auth]\ntype = htpasswd\nhtpasswd_filename = {}\nhtpasswd_encryption = plain\n\
             [rights]\ntype = owner_only\n\
             [storage]\nfilesystem_folder = {}\n\
             [logging]\nlevel = warning\n",
            users.display(),
            storage.display()
        ),
    )
    .unwrap();
    #[allow(clippy::zombie_processes)] // NOTE: exits when this process's stdin pipe closes.
    let mut child = Command::new(&python)
        .arg("-c")
        .arg(WRAPPER)
        .arg(&config)
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        // Radicale's own log (failed logins, 412s the tests provoke) only with TEST_LOG.
        .stderr(if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start radicale with {}: {e}", python.display()));
    let mut stdin = child.stdin.take().unwrap();
    stdin.flush().unwrap();
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Radicale {
                base: format!("http://127.0.0.1:{port}"),
                _stdin: Mutex::new(stdin),
                _child: Mutex::new(child),
            };
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("radicale exited with {status} before listening (is it installed in the venv?)");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("radicale did not listen on {port}");
}

impl Radicale {
    /// Creates the collection `/{USER}/{name}/` and returns its URL.
    pub async fn calendar(&self, name: &str) -> String {
        let url = format!("{}/{USER}/{name}/", self.base);
        let response = client()
            .request(reqwest::Method::from_bytes(b"MKCALENDAR").unwrap(), &url)
            .basic_auth(USER, Some(PASSWORD))
            .header("Content-Type", "application/xml; charset=utf-8")
            .body(caller::booking::caldav::mkcalendar())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201, "MKCALENDAR {url}");
        url
    }

    /// Puts an event in `collection` as another client of the calendar would, returning the
    /// status.
    pub async fn put_event(&self, collection: &str, uid: &str, ics: &str) -> u16 {
        client()
            .put(format!("{collection}{uid}.ics"))
            .basic_auth(USER, Some(PASSWORD))
            .header("Content-Type", "text/calendar; charset=utf-8")
            .header("If-None-Match", "*")
            .body(ics.to_owned())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Returns the text of resource `{collection}{uid}.ics`, `None` when it does not exist.
    pub async fn get_event(&self, collection: &str, uid: &str) -> Option<String> {
        let response = client()
            .get(format!("{collection}{uid}.ics"))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .unwrap();
        if response.status().as_u16() == 404 {
            return None;
        }
        assert!(
            response.status().is_success(),
            "GET {uid}: {}",
            response.status()
        );
        Some(response.text().await.unwrap())
    }
}

fn client() -> reqwest::Client {
    caller::providers::http::client()
}
