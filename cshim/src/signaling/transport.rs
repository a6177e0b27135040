//! Opening the signaling WebSocket: TCP, optional HTTP CONNECT proxy, TLS (verified by
//! default, custom CA, client certificate, or insecure), then the WebSocket handshake.
//! Several URLs are raced as the official SDKs do: shuffled, in parallel, first wins, the
//! losers are closed.
use base64::Engine;
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use super::tls::Tls;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::WebSocketStream;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type Ws = WebSocketStream<Box<dyn Io>>;

#[derive(Debug, Clone, Default)]
pub struct Proxy {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub agent: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct TransportOptions {
    pub insecure: bool,
    pub ca_cert: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub proxy: Option<Proxy>,
    pub user_agent: Option<String>,
}

/// Why opening failed: a URL that can never work, or a failed attempt.
#[derive(Debug)]
pub enum OpenError {
    InvalidUrl(String),
    Failed(String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::InvalidUrl(m) | OpenError::Failed(m) => f.write_str(m),
        }
    }
}

fn failed(what: &str, e: impl std::fmt::Display) -> OpenError {
    OpenError::Failed(format!("{what}: {e}"))
}

pub fn parse_ws_url(raw: &str) -> Result<url::Url, OpenError> {
    let u = url::Url::parse(raw).map_err(|e| OpenError::InvalidUrl(format!("invalid signaling URL {raw:?}: {e}")))?;
    if u.scheme() != "ws" && u.scheme() != "wss" {
        return Err(OpenError::InvalidUrl(format!("signaling URL {raw:?} must use ws:// or wss://")));
    }
    if u.host_str().is_none() {
        return Err(OpenError::InvalidUrl(format!("signaling URL {raw:?} has no host")));
    }
    Ok(u)
}

/// CONNECT through an HTTP(S) proxy; returns the tunnel.
async fn proxy_tunnel(proxy: &Proxy, target: &str, tls: &Tls) -> Result<Box<dyn Io>, OpenError> {
    let purl = url::Url::parse(&proxy.url).map_err(|e| OpenError::InvalidUrl(format!("invalid proxy_url: {e}")))?;
    let phost = purl.host_str().ok_or_else(|| OpenError::InvalidUrl("proxy_url has no host".into()))?.to_string();
    let pport = purl.port_or_known_default().unwrap_or(8080);
    let tcp = TcpStream::connect((phost.as_str(), pport)).await.map_err(|e| failed("proxy connect", e))?;
    let _ = tcp.set_nodelay(true);
    let mut stream: Box<dyn Io> = Box::new(tcp);
    if purl.scheme() == "https" {
        stream = tls.wrap(stream, &phost).await?;
    }
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(user) = &proxy.username {
        let cred = format!("{}:{}", user, proxy.password.as_deref().unwrap_or(""));
        req += &format!("Proxy-Authorization: Basic {}\r\n", base64::engine::general_purpose::STANDARD.encode(cred));
    }
    if let Some(agent) = &proxy.agent {
        req += &format!("User-Agent: {agent}\r\n");
    }
    req += "\r\n";
    stream.write_all(req.as_bytes()).await.map_err(|e| failed("proxy write", e))?;
    // Read the response head byte-wise through a BufReader, then keep the reader's buffer:
    // a proxy sends nothing after the head until we speak, so nothing is lost.
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).await.map_err(|e| failed("proxy read", e))?;
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).await.map_err(|e| failed("proxy read", e))?;
        if n == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let code = status.split_whitespace().nth(1).unwrap_or("");
    if code != "200" {
        return Err(OpenError::Failed(format!("proxy refused CONNECT: {}", status.trim())));
    }
    Ok(Box::new(reader))
}

/// Signaling is a few messages per second at most: tungstenite's 128 KiB default read
/// buffer per connection was ~20 % of a recvonly connection's memory (heaptrack, 200
/// connections). The buffer grows for a larger message (an offer is ~5-15 KB).
const WS_READ_BUFFER: usize = 8 * 1024;

fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(WS_READ_BUFFER)
}

/// Opens one signaling WebSocket.
pub async fn open(raw_url: &str, opts: &TransportOptions) -> Result<Ws, OpenError> {
    let url = parse_ws_url(raw_url)?;
    let host = url.host_str().unwrap_or_default().trim_matches(|c| c == '[' || c == ']').to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let secure = url.scheme() == "wss";
    let tls = if secure || opts.proxy.as_ref().is_some_and(|p| p.url.starts_with("https")) {
        Some(Tls::new(opts)?)
    } else {
        None
    };
    let stream: Box<dyn Io> = match &opts.proxy {
        Some(proxy) => {
            let tls_for_proxy = match &tls {
                Some(t) => t,
                None => &Tls::new(opts)?,
            };
            proxy_tunnel(proxy, &format!("{}:{}", url.host_str().unwrap_or_default(), port), tls_for_proxy).await?
        }
        None => {
            let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(|e| failed("connect", e))?;
            let _ = tcp.set_nodelay(true);
            Box::new(tcp)
        }
    };
    let stream = match &tls {
        Some(tls) if secure => tls.wrap(stream, &host).await?,
        _ => stream,
    };
    let mut request = raw_url.into_client_request().map_err(|e| OpenError::InvalidUrl(format!("bad request: {e}")))?;
    if let Some(ua) = &opts.user_agent {
        let v = HeaderValue::from_str(ua).map_err(|_| OpenError::InvalidUrl("user_agent is not a valid header value".into()))?;
        request.headers_mut().insert("User-Agent", v);
    }
    let (ws, _resp) = tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config()))
        .await
        .map_err(|e| failed("WebSocket handshake", e))?;
    Ok(ws)
}

/// Races every URL (shuffled unless `keep_order`), each bounded by `timeout`. Returns the
/// winner and its URL; sockets that open later are closed in the background.
pub async fn race(urls: &[String], opts: &TransportOptions, timeout: Duration, keep_order: bool) -> Result<(Ws, String), OpenError> {
    let mut order: Vec<String> = urls.to_vec();
    if !keep_order {
        use rand::seq::SliceRandom;
        order.shuffle(&mut rand::rng());
    }
    let invalid: Vec<String> = order
        .iter()
        .filter_map(|u| parse_ws_url(u).err().map(|e| e.to_string()))
        .collect();
    if invalid.len() == order.len() {
        return Err(OpenError::InvalidUrl(invalid.join("; ")));
    }
    let mut attempts: FuturesUnordered<_> = order
        .into_iter()
        .map(|u| {
            let opts = opts.clone();
            async move {
                let r = match tokio::time::timeout(timeout, open(&u, &opts)).await {
                    Ok(r) => r,
                    Err(_) => Err(OpenError::Failed(format!("{u}: timed out after {:?}", timeout))),
                };
                (u, r)
            }
        })
        .collect();
    let mut errors = Vec::new();
    while let Some((u, r)) = attempts.next().await {
        match r {
            Ok(ws) => {
                if !attempts.is_empty() {
                    tokio::spawn(async move {
                        let drain = async {
                            while let Some((_, r)) = attempts.next().await {
                                if let Ok(mut loser) = r {
                                    let _ = loser.close(None).await;
                                }
                            }
                        };
                        let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
                    });
                }
                return Ok((ws, u));
            }
            Err(e) => errors.push(format!("{u}: {e}")),
        }
    }
    Err(OpenError::Failed(errors.join("; ")))
}
