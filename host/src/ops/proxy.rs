//! PROXY protocol v1 (text) and v2 (binary) headers, read at accept on
//! listeners with `proxy_protocol = true` (HAProxy's specification; parsed by
//! the `ppp` crate). The header's source address becomes the client address
//! everywhere: auth, the defender, per-address caps, the passive peer check,
//! PORT/EPRT checks, logs and metrics.
//!
//! Only connections from `trusted_proxies` may send a header; a connection
//! from anywhere else, or without a valid header in time, is closed.
//!
//! The header is peeked, then exactly its bytes are consumed, so nothing the
//! client sends after it is read here.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use ppp::{HeaderResult, PartialResult, v1, v2};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::NetList;
use super::metrics::ProxyFailure;

/// `proxy_protocol` and `trusted_proxies` of one listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxySettings {
    pub enabled: bool,
    pub trusted: NetList,
}

/// Longest header accepted: a v1 line is at most 107 bytes; v2 headers carry
/// TLVs (cloud load balancers add a few hundred bytes).
const MAX_HEADER: usize = 4096;

/// What the header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The proxy relays a client: its address and the address it connected to.
    Client {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// The proxy speaks for itself (v2 LOCAL, v1 UNKNOWN: health checks).
    Proxy,
}

/// Why a connection was refused.
#[derive(Debug)]
pub struct Refused {
    pub reason: ProxyFailure,
    pub detail: String,
}

fn refused(reason: ProxyFailure, detail: impl Into<String>) -> Refused {
    Refused {
        reason,
        detail: detail.into(),
    }
}

/// Checks that `peer` may send a header and reads it from `stream`, within
/// `limit`.
pub async fn accept(
    stream: &mut TcpStream,
    peer: SocketAddr,
    settings: &ProxySettings,
    limit: Duration,
) -> Result<Origin, Refused> {
    if !settings.trusted.contains(peer.ip()) {
        return Err(refused(
            ProxyFailure::untrusted,
            format!("{} is not in trusted_proxies", peer.ip()),
        ));
    }
    match tokio::time::timeout(limit, read_header(stream)).await {
        Ok(result) => result,
        Err(_) => Err(refused(ProxyFailure::timeout, "no PROXY header in time")),
    }
}

async fn read_header(stream: &mut TcpStream) -> Result<Origin, Refused> {
    let mut buf = vec![0u8; MAX_HEADER];
    let mut waited = Duration::from_millis(1);
    loop {
        let n = stream
            .peek(&mut buf)
            .await
            .map_err(|e| refused(ProxyFailure::garbled, e.to_string()))?;
        if n == 0 {
            return Err(refused(
                ProxyFailure::garbled,
                "closed before a PROXY header",
            ));
        }
        let seen = &buf[..n];
        if !could_be_header(seen) {
            return Err(refused(ProxyFailure::garbled, "no PROXY header"));
        }
        // Decide the version by the first bytes: ppp's combined parser
        // retries a broken v2 header as v1 and calls that "incomplete".
        let parsed: HeaderResult<'_> = if seen.starts_with(V1_PREFIX) {
            v1::Header::try_from(seen).into()
        } else {
            v2::Header::try_from(seen).into()
        };
        if parsed.is_incomplete() {
            if seen.starts_with(V1_PREFIX) && (seen.windows(2).any(|w| w == b"\r\n") || n > 107) {
                // A whole v1 line that still does not parse.
                return Err(refused(ProxyFailure::garbled, "bad PROXY v1 header"));
            }
            if n == buf.len() {
                return Err(refused(ProxyFailure::garbled, "PROXY header too long"));
            }
            // Peeking again returns at once with the same bytes: give the
            // rest of the header a moment to arrive (it nearly always comes
            // in one segment).
            tokio::time::sleep(waited).await;
            waited = (waited * 2).min(Duration::from_millis(50));
            continue;
        }
        let (length, origin) = interpret(parsed)?;
        consume(stream, length)
            .await
            .map_err(|e| refused(ProxyFailure::garbled, e.to_string()))?;
        return Ok(origin);
    }
}

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// Whether `seen` can be the start of a v1 or v2 header (ppp treats any
/// missing prefix as "more bytes needed").
fn could_be_header(seen: &[u8]) -> bool {
    let starts = |prefix: &[u8]| {
        let n = seen.len().min(prefix.len());
        seen[..n] == prefix[..n]
    };
    starts(V1_PREFIX) || starts(V2_SIGNATURE)
}

/// The header's length and meaning.
fn interpret(parsed: HeaderResult<'_>) -> Result<(usize, Origin), Refused> {
    let garbled = |e: &dyn std::fmt::Display| {
        refused(ProxyFailure::garbled, format!("bad PROXY header: {e}"))
    };
    match parsed {
        HeaderResult::V1(Ok(header)) => {
            let origin = match header.addresses {
                v1::Addresses::Tcp4(a) => Origin::Client {
                    source: SocketAddr::from((a.source_address, a.source_port)),
                    destination: SocketAddr::from((a.destination_address, a.destination_port)),
                },
                v1::Addresses::Tcp6(a) => Origin::Client {
                    source: SocketAddr::from((a.source_address, a.source_port)),
                    destination: SocketAddr::from((a.destination_address, a.destination_port)),
                },
                v1::Addresses::Unknown => Origin::Proxy,
            };
            Ok((header.header.len(), origin))
        }
        HeaderResult::V2(Ok(header)) => {
            let origin = match (header.command, header.addresses) {
                (v2::Command::Local, _) => Origin::Proxy,
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => Origin::Client {
                    source: SocketAddr::from((a.source_address, a.source_port)),
                    destination: SocketAddr::from((a.destination_address, a.destination_port)),
                },
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => Origin::Client {
                    source: SocketAddr::from((a.source_address, a.source_port)),
                    destination: SocketAddr::from((a.destination_address, a.destination_port)),
                },
                (v2::Command::Proxy, _) => {
                    return Err(refused(
                        ProxyFailure::garbled,
                        "PROXY v2 header without an IP source address",
                    ));
                }
            };
            Ok((header.len(), origin))
        }
        HeaderResult::V1(Err(e)) => Err(garbled(&e)),
        HeaderResult::V2(Err(e)) => Err(garbled(&e)),
    }
}

async fn consume(stream: &mut TcpStream, length: usize) -> io::Result<()> {
    let mut header = vec![0u8; length];
    stream.read_exact(&mut header).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    fn trusting_loopback() -> ProxySettings {
        ProxySettings {
            enabled: true,
            trusted: NetList::new(vec!["127.0.0.0/8".parse().unwrap()]),
        }
    }

    /// Sends `bytes` (in two pieces, to exercise partial headers) and then
    /// `after`; returns what `accept` made of it and the next bytes read.
    async fn exchange(
        settings: &ProxySettings,
        pieces: Vec<Vec<u8>>,
    ) -> (Result<Origin, Refused>, Vec<u8>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            for piece in pieces {
                stream.write_all(&piece).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stream.shutdown().await.unwrap();
            stream
        });
        let (mut stream, peer) = listener.accept().await.unwrap();
        let result = accept(&mut stream, peer, settings, Duration::from_secs(2)).await;
        let mut rest = Vec::new();
        if result.is_ok() {
            stream.read_to_end(&mut rest).await.unwrap();
        }
        drop(client.await);
        (result, rest)
    }

    #[tokio::test]
    async fn v1_header_in_two_pieces() {
        let (result, rest) = exchange(
            &trusting_loopback(),
            vec![
                b"PROXY TCP4 203.0.113.9 192.0.2.1 5".to_vec(),
                b"1000 21\r\nUSER x\r\n".to_vec(),
            ],
        )
        .await;
        assert_eq!(
            result.unwrap(),
            Origin::Client {
                source: "203.0.113.9:51000".parse().unwrap(),
                destination: "192.0.2.1:21".parse().unwrap()
            }
        );
        assert_eq!(rest, b"USER x\r\n", "bytes after the header are left");
    }

    #[tokio::test]
    async fn v2_header_and_local_command() {
        let source: SocketAddr = "[2001:db8::7]:4000".parse().unwrap();
        let destination: SocketAddr = "[2001:db8::1]:21".parse().unwrap();
        let header = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (source, destination),
        )
        .write_tlv(v2::Type::NoOp, b"pad")
        .unwrap()
        .build()
        .unwrap();
        let (result, rest) = exchange(
            &trusting_loopback(),
            vec![header[..10].to_vec(), [&header[10..], b"hi"].concat()],
        )
        .await;
        assert_eq!(
            result.unwrap(),
            Origin::Client {
                source,
                destination
            }
        );
        assert_eq!(rest, b"hi");

        let local = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Local,
            v2::Protocol::Unspecified,
            v2::Addresses::Unspecified,
        )
        .build()
        .unwrap();
        let (result, _) = exchange(&trusting_loopback(), vec![local]).await;
        assert_eq!(result.unwrap(), Origin::Proxy);
    }

    #[tokio::test]
    async fn untrusted_garbled_and_missing_are_refused() {
        let nobody = ProxySettings {
            enabled: true,
            trusted: NetList::new(vec!["10.0.0.0/8".parse().unwrap()]),
        };
        let (result, _) = exchange(&nobody, vec![b"PROXY UNKNOWN\r\n".to_vec()]).await;
        assert_eq!(result.unwrap_err().reason, ProxyFailure::untrusted);

        let (result, _) = exchange(
            &trusting_loopback(),
            vec![b"PROXY TCP4 1.2.3.4 nonsense\r\n".to_vec()],
        )
        .await;
        assert_eq!(result.unwrap_err().reason, ProxyFailure::garbled);

        let (result, _) =
            exchange(&trusting_loopback(), vec![b"USER anonymous\r\n".to_vec()]).await;
        assert_eq!(result.unwrap_err().reason, ProxyFailure::garbled);

        let (result, _) = exchange(&trusting_loopback(), vec![]).await;
        assert_eq!(result.unwrap_err().reason, ProxyFailure::garbled, "closed");
    }
}
