//! The HTTP/2 request to an audio streaming gateway: one POST per stream whose body is the
//! stream's Opus (framing.rs) as it comes, and whose response is newline-delimited JSON.
//! `http://` is h2c with prior knowledge, `https://` is h2 over TLS (ALPN h2) on the same
//! OpenSSL as the rest of the library. A failed or ended request is made again after a
//! back-off, for as long as the stream runs.
use super::{Config, Shared, State};
use crate::signaling::transport::Io;
use bytes::{Buf, Bytes};
use futures_util::future::poll_fn;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

/// A response line longer than this is dropped (and reported), not buffered.
pub const MAX_LINE: usize = 1 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A request that lasted this long was a working one: the back-off starts over after it.
const STEADY: Duration = Duration::from_secs(10);
/// How long a stopped stream waits for the gateway's last results (its response to the end
/// of the audio: the final of the last utterance).
const FINISH_TIMEOUT: Duration = Duration::from_secs(2);

const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How one request ended.
enum End {
    /// stop() was called: the body was ended cleanly.
    Stopped,
    /// The gateway ended its response (or the request failed): make another.
    Retry(String),
}

/// Runs requests until stopped or until the track goes (the tap, which holds the body's
/// sender, is dropped with it); `body` is the stream's queue of chunks.
pub async fn run(cfg: Config, shared: std::sync::Arc<Shared>, mut body: mpsc::Receiver<Bytes>, mut stop: watch::Receiver<bool>) {
    let mut backoff = cfg.retry_interval;
    loop {
        if body.is_closed() && body.is_empty() {
            break; // the track went
        }
        let began = tokio::time::Instant::now();
        match request(&cfg, &shared, &mut body, &mut stop).await {
            End::Stopped => break,
            End::Retry(why) => {
                // Only a request that went on for a while starts the back-off over: a
                // gateway that answers 200, one error line and ends would otherwise be
                // asked again every half second for the whole session.
                if began.elapsed() >= STEADY {
                    backoff = cfg.retry_interval;
                }
                log::warn!("audio stream {}: {why}; again in {} ms", shared.id, backoff.as_millis());
                shared.emit_state(State::Retrying, &why);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF.max(cfg.retry_interval));
    }
    super::forget(shared.id);
    shared.emit_state(State::Stopped, "");
}

async fn connect(cfg: &Config) -> Result<Box<dyn Io>, String> {
    // Sora reaches gateways over IPv4 only: resolve and keep the IPv4 addresses.
    let addrs = tokio::net::lookup_host((cfg.host.as_str(), cfg.port))
        .await
        .map_err(|e| format!("cannot resolve {}: {e}", cfg.host))?;
    let v4: Vec<_> = addrs.filter(|a| a.is_ipv4()).collect();
    if v4.is_empty() {
        return Err(format!("{} has no IPv4 address", cfg.host));
    }
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&v4[..]))
        .await
        .map_err(|_| format!("connecting to {}:{} timed out", cfg.host, cfg.port))?
        .map_err(|e| format!("cannot connect to {}:{}: {e}", cfg.host, cfg.port))?;
    let _ = tcp.set_nodelay(true);
    match &cfg.tls {
        None => Ok(Box::new(tcp)),
        Some(tls) => tls.wrap(Box::new(tcp), &cfg.host).await.map_err(|e| e.to_string()),
    }
}

/// One request: connect, send the headers, then pump the body until stopped or until the
/// response ends or fails.
async fn request(cfg: &Config, shared: &std::sync::Arc<Shared>, body: &mut mpsc::Receiver<Bytes>, stop: &mut watch::Receiver<bool>) -> End {
    // TCP, TLS and the HTTP/2 preface together within CONNECT_TIMEOUT: a gateway that
    // accepts and then says nothing must not hold the stream before PINGs start.
    let opened = async {
        let io = connect(cfg).await?;
        h2::client::handshake(io).await.map_err(|e| format!("HTTP/2 handshake: {e}"))
    };
    let (client, mut connection) = tokio::select! {
        r = tokio::time::timeout(CONNECT_TIMEOUT, opened) => match r {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => return End::Retry(e),
            Err(_) => return End::Retry(format!("no HTTP/2 connection to {}:{} within {} s", cfg.host, cfg.port, CONNECT_TIMEOUT.as_secs())),
        },
        _ = stop.changed() => return End::Stopped,
    };
    let pings = connection.ping_pong().expect("the first ping_pong() of a connection");
    let mut conn_task = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let liveness = tokio::spawn(keep_alive(pings, cfg.keepalive));
    let end = exchange(cfg, shared, client, body, stop, liveness).await;
    if matches!(end, End::Stopped) {
        // Every handle to the connection is gone: it ends once it has written what is
        // queued (the end of the body) and the gateway has closed the stream.
        let _ = tokio::time::timeout(FINISH_TIMEOUT, &mut conn_task.0).await;
    }
    end
}

/// PINGs the gateway every `interval`; returns why it stopped answering. A gateway that
/// does not answer within twice the interval is taken for dead (a hung process, a
/// half-open connection): the request is made again. Flow control alone would leave such
/// a request open forever, dropping the audio.
async fn keep_alive(mut pings: h2::PingPong, interval: Duration) -> String {
    let timeout = interval * 2;
    loop {
        tokio::time::sleep(interval).await;
        match tokio::time::timeout(timeout, pings.ping(h2::Ping::opaque())).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return format!("HTTP/2 connection: {e}"),
            Err(_) => return format!("the gateway did not answer a PING within {} ms", timeout.as_millis()),
        }
    }
}

async fn exchange(
    cfg: &Config,
    shared: &std::sync::Arc<Shared>,
    client: h2::client::SendRequest<Bytes>,
    body: &mut mpsc::Receiver<Bytes>,
    stop: &mut watch::Receiver<bool>,
    liveness: tokio::task::JoinHandle<String>,
) -> End {
    let liveness = AbortOnDrop(liveness);
    let mut req = http::Request::post(cfg.uri.clone());
    for (k, v) in &cfg.headers {
        req = req.header(k, v);
    }
    let req = match req.body(()) {
        Ok(r) => r,
        Err(e) => return End::Retry(format!("request: {e}")),
    };
    let mut client = match client.ready().await {
        Ok(c) => c,
        Err(e) => return End::Retry(format!("HTTP/2: {e}")),
    };
    let (response, mut send) = match client.send_request(req, false) {
        Ok(x) => x,
        Err(e) => return End::Retry(format!("HTTP/2 request: {e}")),
    };
    let reader = AbortOnDrop(tokio::spawn(read_response(response, shared.clone())));
    // Whichever ends first of the response and the liveness check says why.
    let reader_done = async {
        tokio::select! {
            r = &mut { reader }.0 => r.unwrap_or_else(|e| format!("response reader: {e}")),
            r = &mut { liveness }.0 => r.unwrap_or_else(|e| format!("keep-alive: {e}")),
        }
    };
    tokio::pin!(reader_done);
    let mut pending: Option<Bytes> = None;
    let mut stalled = false;
    loop {
        if let Some(chunk) = pending.take() {
            if send.capacity() >= chunk.len() {
                let len = chunk.len();
                if let Err(e) = send.send_data(chunk, false) {
                    return End::Retry(format!("sending audio: {e}"));
                }
                shared.on_sent(len);
                stalled = false;
                continue;
            }
            pending = Some(chunk);
            // Flow control: the gateway has not taken what was sent. Wait (meanwhile the
            // queue fills and the tap counts what it cannot queue as dropped).
            tokio::select! {
                cap = poll_fn(|cx| send.poll_capacity(cx)) => match cap {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return End::Retry(format!("sending audio: {e}")),
                    None => return End::Retry("the gateway closed the request body".into()),
                },
                _ = tokio::time::sleep(Duration::from_secs(2)), if !stalled => {
                    stalled = true;
                    shared.emit_state(State::Warning, "the gateway is not reading the audio: dropping what does not fit");
                }
                why = &mut reader_done => return End::Retry(why),
                _ = stop.changed() => return finish(send, reader_done).await,
            }
        } else {
            tokio::select! {
                chunk = body.recv() => match chunk {
                    Some(c) => {
                        send.reserve_capacity(c.len());
                        pending = Some(c);
                    }
                    None => return finish(send, reader_done).await,
                },
                why = &mut reader_done => return End::Retry(why),
                _ = stop.changed() => return finish(send, reader_done).await,
            }
        }
    }
}

/// A task that is aborted when its handle goes (a request that ends takes its reader and
/// keep-alive with it).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Ends the request body (the gateway sees the end of the audio) and lets the response
/// run for up to FINISH_TIMEOUT, so that what the gateway says about the last audio still
/// arrives.
async fn finish(mut send: h2::SendStream<Bytes>, response: impl std::future::Future<Output = String>) -> End {
    let _ = send.send_data(Bytes::new(), true);
    let _ = tokio::time::timeout(FINISH_TIMEOUT, response).await;
    End::Stopped
}

/// Reads the response: a 200 whose body is JSON lines, each handed out as a result. Returns
/// why it ended.
async fn read_response(response: h2::client::ResponseFuture, shared: std::sync::Arc<Shared>) -> String {
    let resp = match response.await {
        Ok(r) => r,
        Err(e) => return format!("no response: {e}"),
    };
    if resp.status() != http::StatusCode::OK {
        return format!("the gateway answered {}", resp.status());
    }
    shared.on_answered();
    let mut body = resp.into_body();
    let mut lines = Lines::default();
    loop {
        match body.data().await {
            None => {
                lines.finish(&*shared);
                return "the gateway ended its response".into();
            }
            Some(Err(e)) => return format!("reading the response: {e}"),
            Some(Ok(mut data)) => {
                let n = data.len();
                let _ = body.flow_control().release_capacity(n);
                while data.has_remaining() {
                    let chunk = data.chunk();
                    let len = chunk.len();
                    lines.feed(chunk, &*shared);
                    data.advance(len);
                }
            }
        }
    }
}

/// Splits the response body into lines; each complete line that is a JSON object is a
/// result, anything else is reported and skipped.
#[derive(Default)]
pub struct Lines {
    buf: Vec<u8>,
    /// Dropping the rest of a line that grew over MAX_LINE.
    skipping: bool,
}

impl Lines {
    pub fn feed(&mut self, mut data: &[u8], out: &impl LineSink) {
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            if !self.skipping {
                self.buf.extend_from_slice(&data[..nl]);
                let line = std::mem::take(&mut self.buf);
                deliver(&line, out);
            }
            self.skipping = false;
            self.buf.clear();
            data = &data[nl + 1..];
        }
        if self.skipping {
            return;
        }
        if self.buf.len() + data.len() > MAX_LINE {
            self.buf.clear();
            self.skipping = true;
            out.warning(&format!("a result line over {MAX_LINE} bytes was dropped"));
            return;
        }
        self.buf.extend_from_slice(data);
    }

    /// The body ended: a last line without a newline still counts.
    pub fn finish(&mut self, out: &impl LineSink) {
        if !self.skipping && !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            deliver(&line, out);
        }
    }
}

fn deliver(line: &[u8], out: &impl LineSink) {
    let trimmed = line.strip_suffix(b"\r").unwrap_or(line);
    if trimmed.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    match std::str::from_utf8(trimmed) {
        Ok(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) if v.is_object() => out.result(text.trim()),
            Ok(_) => out.warning("a result line that is not a JSON object was dropped"),
            Err(e) => out.warning(&format!("a result line that is not JSON was dropped ({e})")),
        },
        Err(_) => out.warning("a result line that is not UTF-8 was dropped"),
    }
}

/// Where [`Lines`] hands out what it found.
pub trait LineSink {
    fn result(&self, line: &str);
    fn warning(&self, what: &str);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Got(RefCell<Vec<String>>, RefCell<Vec<String>>);
    impl LineSink for Got {
        fn result(&self, line: &str) {
            self.0.borrow_mut().push(line.into());
        }
        fn warning(&self, what: &str) {
            self.1.borrow_mut().push(what.into());
        }
    }

    #[test]
    fn lines_split_across_chunks_and_bad_lines_are_reported() {
        let got = Got::default();
        let mut l = Lines::default();
        l.feed(b"{\"type\":\"test\",", &got);
        l.feed(b"\"message\":\"a\"}\n\n[1]\nnot json\n\xff\xfe\n{\"x\":1}\r\n{\"last\"", &got);
        l.feed(b":true}", &got);
        l.finish(&got);
        assert_eq!(*got.0.borrow(), vec![r#"{"type":"test","message":"a"}"#, r#"{"x":1}"#, r#"{"last":true}"#]);
        let w = got.1.borrow();
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("not a JSON object") && w[1].contains("not JSON") && w[2].contains("UTF-8"));
    }

    #[test]
    fn a_huge_line_is_dropped_and_the_next_one_kept() {
        let got = Got::default();
        let mut l = Lines::default();
        let big = vec![b'a'; 64 * 1024];
        for _ in 0..(10 * 1024 * 1024 / big.len()) {
            l.feed(&big, &got);
        }
        assert!(l.buf.len() <= MAX_LINE);
        l.feed(b"tail\n{\"ok\":1}\n", &got);
        assert_eq!(*got.0.borrow(), vec![r#"{"ok":1}"#]);
        assert_eq!(got.1.borrow().len(), 1);
    }
}
