//! A real Redis server (Debian's `redis-server`) on a free loopback port, for the `redis` sink's
//! tests, and a minimal RESP client to check what it holds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server process with no persistence; killed on drop.
pub struct RedisServer {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    password: Option<String>,
    _dir: tempfile::TempDir,
}

/// Where redis-server is, if installed (`apt-get install -y redis-server`).
pub fn redis_server() -> Option<PathBuf> {
    [
        "/usr/bin/redis-server",
        "/usr/sbin/redis-server",
        "/usr/local/bin/redis-server",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// A reply: a status, integer or bulk string as text, an array, nil, or an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`, `:1`, `$3 abc`.
    Text(String),
    /// `*n`.
    Array(Vec<Reply>),
    /// `$-1`.
    Nil,
    /// `-ERR ...`.
    Error(String),
}

impl Reply {
    /// The text of a text reply.
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::Text(t) => Some(t),
            _ => None,
        }
    }
}

impl RedisServer {
    /// Starts a server (with `password`, if given), or returns `None` (after saying why) when
    /// redis-server is not installed and this is not CI. Under `CI=true` that is a failure.
    pub fn start(password: Option<&str>) -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Self::start_on(port, password)
    }

    /// Starts a server on `port` (see [`Self::start`]).
    pub fn start_on(port: u16, password: Option<&str>) -> Option<Self> {
        let Some(program) = redis_server() else {
            assert!(
                std::env::var("CI").is_err(),
                "redis-server is not installed (apt-get install -y redis-server); CI must install it"
            );
            eprintln!("SKIPPED: redis-server is not installed (apt-get install -y redis-server)");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("oort-redis-")
            .tempdir()
            .expect("a temporary folder");
        let mut cmd = Command::new(program);
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(pw) = password {
            cmd.args(["--requirepass", pw]);
        }
        let child = cmd.spawn().expect("starting redis-server");
        let server = Self {
            child,
            port,
            password: password.map(str::to_string),
            _dir: dir,
        };
        let started = Instant::now();
        while server.command(&["PING"]).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "redis-server did not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs one command on a fresh connection (authenticated when the server has a password).
    pub fn command(&self, args: &[&str]) -> std::io::Result<Reply> {
        self.command_in(0, args)
    }

    /// Runs one command in database `db`.
    pub fn command_in(&self, db: u32, args: &[&str]) -> std::io::Result<Reply> {
        let stream = TcpStream::connect(self.addr())?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut conn = BufReader::new(stream);
        if let Some(pw) = &self.password {
            send(conn.get_mut(), &["AUTH", pw])?;
            read(&mut conn)?;
        }
        if db != 0 {
            send(conn.get_mut(), &["SELECT", &db.to_string()])?;
            read(&mut conn)?;
        }
        send(conn.get_mut(), args)?;
        read(&mut conn)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send(stream: &mut TcpStream, args: &[&str]) -> std::io::Result<()> {
    let mut out = format!("*{}\r\n", args.len());
    for arg in args {
        out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(out.as_bytes())
}

fn read(conn: &mut BufReader<TcpStream>) -> std::io::Result<Reply> {
    let mut line = String::new();
    if conn.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed",
        ));
    }
    let line = line.trim_end();
    let (kind, rest) = line.split_at(line.len().min(1));
    Ok(match kind {
        "+" | ":" => Reply::Text(rest.to_string()),
        "-" => Reply::Error(rest.to_string()),
        "$" => {
            let n: i64 = rest.parse().unwrap_or(-1);
            if n < 0 {
                Reply::Nil
            } else {
                let mut data = vec![0u8; n as usize + 2];
                conn.read_exact(&mut data)?;
                data.truncate(n as usize);
                Reply::Text(String::from_utf8_lossy(&data).into_owned())
            }
        }
        "*" => {
            let n: i64 = rest.parse().unwrap_or(0);
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                items.push(read(conn)?);
            }
            Reply::Array(items)
        }
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not RESP: {line}"),
            ));
        }
    })
}
