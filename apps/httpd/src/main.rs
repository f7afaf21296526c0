//! httpd: a small HTTP/1.1 server on port 80 of the network interface.
//!
//! `/` is a static page (`hello from ringbolt`), `/stats` the server's and the interface's
//! counters; `GET` and `HEAD` only. Connections are kept alive (HTTP/1.1's default, or
//! HTTP/1.0's `Connection: keep-alive`) until the client closes, asks to close, or is idle for
//! [`IDLE`]; each connection has its own task. The address comes from the kernel command line
//! (`ip=192.0.2.2/24 gw=192.0.2.1`, or a DHCP lease); once listening, httpd prints
//! `httpd: listening on <ip>:80`. No interface, or one without an address, is an error and
//! exit status 1; otherwise httpd serves until the VM is stopped.
//!
//! Arguments: `backlog=N` sockets listen at once ([`BACKLOG`] by default: as many
//! connections as may arrive together, e.g. a load generator opening them all at once), and
//! `access-log` prints `httpd: <method> <path> <status>` for each request (off by default: a
//! console line per request would throttle the server under load).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::Cell;
use core::time::Duration;

use ringbolt::net::{NetError, TcpListener, TcpStream};
use ringbolt::{ExitCode, println};

const PORT: u16 = 80;
/// Sockets listening at once, unless `backlog=N` says otherwise.
const BACKLOG: usize = 64;
/// The page at `/`.
const PAGE: &str = "hello from ringbolt\n";
/// The longest request head (request line and headers) we take.
const MAX_HEAD: usize = 8192;
/// How long a kept-alive connection may sit without a request.
const IDLE: Duration = Duration::from_secs(30);

/// The server's own counters.
#[derive(Debug, Default)]
struct Counters {
    connections: Cell<u64>,
    requests: Cell<u64>,
}

async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            println!("httpd: error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let interfaces = ringbolt::net::interfaces().await;
    let interface = interfaces.first().ok_or("no network interface")?;
    let (ip, _) = interface
        .ipv4
        .ok_or_else(|| format!("{} has no address (ip=A.B.C.D/N or DHCP)", interface.name))?;
    let args = ringbolt::env::args();
    let backlog = args
        .parse("backlog")
        .unwrap_or(Ok(BACKLOG))
        .map_err(|e| format!("backlog=: {e}"))?;
    let access_log = args.flag("access-log");
    let listener = TcpListener::bind_with_backlog(PORT, backlog)
        .await
        .map_err(|e| format!("listening on port {PORT}: {e}"))?;
    println!("httpd: listening on {ip}:{PORT}");
    let counters = Rc::new(Counters::default());
    loop {
        let stream = listener
            .accept()
            .await
            .map_err(|e| format!("accepting: {e}"))?;
        counters.connections.set(counters.connections.get() + 1);
        drop(ringbolt::task::spawn(serve(
            stream,
            counters.clone(),
            access_log,
        )));
    }
}

/// Answers requests on one connection until it should close.
async fn serve(mut stream: TcpStream, counters: Rc<Counters>, access_log: bool) {
    let mut buffered = Vec::new();
    loop {
        let head = match ringbolt::time::timeout(IDLE, read_head(&mut stream, &mut buffered)).await
        {
            Ok(Ok(Some(head))) => head,
            // Closed, idle, or broken: nothing more to answer.
            Ok(Ok(None) | Err(_)) | Err(_) => return,
        };
        counters.requests.set(counters.requests.get() + 1);
        let request = Request::parse(&head);
        let response = respond(&request, &counters);
        let keep_alive = request.as_ref().is_ok_and(|r| r.keep_alive);
        if let Ok(request) = &request
            && access_log
        {
            println!(
                "httpd: {} {} {}",
                request.method, request.path, response.status
            );
        }
        if response
            .write(
                &mut stream,
                keep_alive,
                request.as_ref().is_ok_and(|r| r.method == "HEAD"),
            )
            .await
            .is_err()
            || !keep_alive
        {
            return;
        }
        // A body we do not read would be taken for the next request.
        if let Ok(request) = request
            && request.content_length > 0
            && skip(&mut stream, &mut buffered, request.content_length)
                .await
                .is_err()
        {
            return;
        }
    }
}

/// Reads until `buffered` holds a whole request head, which is taken out of it (what follows
/// stays). `None`: the client closed, or sent a head longer than [`MAX_HEAD`].
async fn read_head(
    stream: &mut TcpStream,
    buffered: &mut Vec<u8>,
) -> Result<Option<Vec<u8>>, NetError> {
    let mut chunk = [0; 1024];
    loop {
        if let Some(end) = buffered.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buffered.split_off(end + 4);
            return Ok(Some(core::mem::replace(buffered, rest)));
        }
        if buffered.len() > MAX_HEAD {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buffered.extend_from_slice(&chunk[..n]);
    }
}

/// Reads and drops `len` bytes of body, the first of them from `buffered`.
async fn skip(stream: &mut TcpStream, buffered: &mut Vec<u8>, len: usize) -> Result<(), NetError> {
    let from_buffer = len.min(buffered.len());
    buffered.drain(..from_buffer);
    let mut left = len - from_buffer;
    let mut chunk = [0; 1024];
    while left > 0 {
        let n = stream.read(&mut chunk[..left.min(1024)]).await?;
        if n == 0 {
            return Err(NetError::Closed);
        }
        left -= n;
    }
    Ok(())
}

/// The parts of a request httpd looks at.
#[derive(Debug)]
struct Request<'a> {
    method: &'a str,
    path: &'a str,
    keep_alive: bool,
    content_length: usize,
}

impl<'a> Request<'a> {
    /// Parses a request head; `Err` is the status to answer a malformed one with.
    fn parse(head: &'a [u8]) -> Result<Self, u16> {
        let head = core::str::from_utf8(head).map_err(|_| 400u16)?;
        let mut lines = head.split("\r\n");
        let mut words = lines.next().unwrap_or_default().split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(400);
        };
        let mut keep_alive = match version {
            "HTTP/1.1" => true,
            "HTTP/1.0" => false,
            _ => return Err(505),
        };
        let mut content_length = 0;
        for line in lines.take_while(|line| !line.is_empty()) {
            let (name, value) = line.split_once(':').ok_or(400u16)?;
            let value = value.trim();
            if name.eq_ignore_ascii_case("connection") {
                if value.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if value.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            } else if name.eq_ignore_ascii_case("content-length") {
                content_length = value.parse().map_err(|_| 400u16)?;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                // Chunked bodies are not taken.
                return Err(501);
            }
        }
        // The query does not choose the page.
        let path = target.split('?').next().unwrap_or(target);
        Ok(Request {
            method,
            path,
            keep_alive,
            content_length,
        })
    }
}

/// A response: status and plain-text body.
struct Response {
    status: u16,
    body: String,
}

impl Response {
    fn new(status: u16, body: impl Into<String>) -> Self {
        Response {
            status,
            body: body.into(),
        }
    }

    /// Sends it; without the body for `HEAD`.
    async fn write(
        &self,
        stream: &mut TcpStream,
        keep_alive: bool,
        head_only: bool,
    ) -> Result<(), NetError> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            501 => "Not Implemented",
            505 => "HTTP Version Not Supported",
            _ => "Error",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nServer: ringbolt-httpd\r\nContent-Type: text/plain; \
             charset=utf-8\r\nContent-Length: {}\r\nConnection: {}\r\n",
            self.status,
            self.body.len(),
            if keep_alive { "keep-alive" } else { "close" }
        );
        if self.status == 405 {
            out.push_str("Allow: GET, HEAD\r\n");
        }
        out.push_str("\r\n");
        if !head_only {
            out.push_str(&self.body);
        }
        stream.write_all(out.as_bytes()).await
    }
}

/// What to answer `request` with.
fn respond(request: &Result<Request<'_>, u16>, counters: &Counters) -> Response {
    let request = match request {
        Ok(request) => request,
        Err(status) => return Response::new(*status, "malformed request\n"),
    };
    if request.method != "GET" && request.method != "HEAD" {
        return Response::new(405, "only GET and HEAD\n");
    }
    match request.path {
        "/" => Response::new(200, PAGE),
        "/stats" => Response::new(200, stats(counters)),
        _ => Response::new(404, "not found\n"),
    }
}

/// `/stats`: one `name value` line per counter.
fn stats(counters: &Counters) -> String {
    let mut text = format!(
        "requests {}\nconnections {}\nuptime_ms {}\n",
        counters.requests.get(),
        counters.connections.get(),
        ringbolt::time::uptime().as_millis()
    );
    if let Some(net) = ringbolt::net::stats() {
        text.push_str(&format!(
            "rx_frames {}\nrx_bytes {}\ntx_frames {}\ntx_bytes {}\nrx_errors {}\ntx_errors {}\n\
             tcp_accepted {}\ntcp_open {}\n",
            net.rx_frames,
            net.rx_bytes,
            net.tx_frames,
            net.tx_bytes,
            net.rx_errors,
            net.tx_errors,
            net.tcp_accepted,
            net.tcp_open
        ));
    }
    text
}

ringbolt::main!(main);
