//! A small real HTTP/1.1 server on a free loopback port, for the `rest` sink's tests: it records
//! every request (method, path, headers, body) and answers with scripted status codes, or drops
//! the connection without answering.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// In a script: read the request, then close the connection without answering (a server that
/// crashes or restarts mid-request).
pub const DROP: u16 = 0;

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Request {
    /// `POST`, `GET`...
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body (chunked bodies decoded).
    pub body: String,
    /// The status it was answered with; [`DROP`] when the connection was closed instead.
    pub status: u16,
}

impl Request {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Request>,
    /// Statuses to answer next, in order; 200 when empty.
    script: VecDeque<u16>,
    /// How long each request waits before it is recorded and answered (a slow server).
    delay: Duration,
}

/// The server; it stops when dropped.
pub struct HttpServer {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl HttpServer {
    /// Starts a server on a free port.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let addr = listener.local_addr().expect("its address").to_string();
        listener.set_nonblocking(true).expect("non-blocking accept");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopping) = (Arc::clone(&state), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let shared = Arc::clone(&shared);
                        std::thread::spawn(move || serve(stream, &shared));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Self { addr, state, stop }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests with these statuses (then 200 again); [`DROP`] closes the
    /// connection after reading the request, without an answer.
    pub fn script(&self, statuses: &[u16]) {
        if let Ok(mut state) = self.state.lock() {
            state.script.extend(statuses);
        }
    }

    /// Makes every request wait `delay` before it is recorded and answered: a slow server.
    pub fn slow_down(&self, delay: Duration) {
        if let Ok(mut state) = self.state.lock() {
            state.delay = delay;
        }
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state
            .lock()
            .map(|s| s.requests.clone())
            .unwrap_or_default()
    }

    /// The bodies of the requests answered 2xx, in order.
    pub fn delivered(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .map(|r| r.body)
            .collect()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Serves one connection (keep-alive: requests until the client closes it).
fn serve(stream: TcpStream, state: &Mutex<State>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
            return;
        };
        let (method, path) = (method.to_string(), path.to_string());
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let mut size = String::new();
                if reader.read_line(&mut size).unwrap_or(0) == 0 {
                    return;
                }
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0u8; n + 2];
                if reader.read_exact(&mut chunk).is_err() {
                    return;
                }
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body.resize(n, 0);
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        }
        let delay = state.lock().map(|s| s.delay).unwrap_or_default();
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let status = {
            let Ok(mut state) = state.lock() else { return };
            let status = state.script.pop_front().unwrap_or(200);
            state.requests.push(Request {
                method,
                path,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
                status,
            });
            status
        };
        if status == DROP {
            return;
        }
        let text = format!("status {status}");
        let answer = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        );
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
