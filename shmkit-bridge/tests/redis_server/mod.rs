//! A `redis-server` of a test's own on a free loopback port, in a
//! temporary directory, killed and removed on drop (shared by the bridge's
//! tests and the CLI's).
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port: bind port 0, read it, let it go. Another process
/// could take it in between; then the server fails to start and its start
/// says so.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` of our own; killed and its directory removed on drop.
pub struct RedisServer {
    child: Child,
    dir: PathBuf,
    pub url: String,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// A server on `port` (from [`free_port`]).
    pub fn start_on(port: u16) -> Self {
        let dir =
            std::env::temp_dir().join(format!("shmkit-test-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let url = format!("redis://127.0.0.1:{port}/");
        let mut s = RedisServer { child, dir, url };
        // Ready when it answers PING (a wait for a condition, bounded).
        let client = redis::Client::open(s.url.as_str()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = client.get_connection()
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                break;
            }
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("redis-server exited at start ({st}); port taken?");
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url.as_str())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
