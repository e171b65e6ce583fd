//! Reading and parsing HTTP/1.1 message heads and `Content-Length` bodies, for both sides.

use std::io;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest request or status line plus headers either side reads (16 KiB).
pub(super) const MAX_HEAD_BYTES: usize = 16 * 1024;
const READ_CHUNK: usize = 4096;
const BLANK_LINE: &[u8] = b"\r\n\r\n";

#[derive(Debug, Error)]
pub(super) enum WireError {
    #[error("the connection closed before a message started")]
    ClosedBeforeStart,
    #[error("the connection closed in the middle of a message")]
    Truncated,
    #[error("the message head is larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("the body of {length} bytes is larger than the limit of {limit} bytes")]
    BodyTooLarge { length: u64, limit: usize },
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    #[error("only HTTP/1.0 and HTTP/1.1 are supported")]
    Version,
    #[error("transfer encodings are not supported; send a Content-Length")]
    TransferEncoding,
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A parsed head: the first line and the header fields, borrowed from the read buffer.
#[derive(Debug)]
pub(super) struct Head<'a> {
    pub start_line: &'a str,
    headers: Vec<(&'a str, &'a str)>,
}

/// The parts of a request line.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct RequestLine<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
}

/// Read until the blank line that ends a head. `buf` must start empty; on success it holds the head
/// and possibly the first bytes of the body, and the returned length is where the body starts.
pub(super) async fn read_head<R>(reader: &mut R, buf: &mut Vec<u8>) -> Result<usize, WireError>
where
    R: AsyncRead + Unpin,
{
    let mut searched = 0;
    loop {
        if let Some(at) = find(&buf[searched..], BLANK_LINE) {
            let head_len = searched + at + BLANK_LINE.len();
            if head_len > MAX_HEAD_BYTES {
                return Err(WireError::HeadTooLarge);
            }
            return Ok(head_len);
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Err(WireError::HeadTooLarge);
        }
        searched = buf.len().saturating_sub(BLANK_LINE.len() - 1);
        buf.reserve(READ_CHUNK);
        if reader.read_buf(buf).await? == 0 {
            return Err(if buf.is_empty() {
                WireError::ClosedBeforeStart
            } else {
                WireError::Truncated
            });
        }
    }
}

/// Read a body of exactly `length` bytes, starting with whatever followed the head in `buf`.
/// Bytes beyond the body (a pipelined request) are dropped: we close after one exchange.
pub(super) async fn read_body<R>(
    reader: &mut R,
    mut buf: Vec<u8>,
    head_len: usize,
    length: usize,
) -> Result<Vec<u8>, WireError>
where
    R: AsyncRead + Unpin,
{
    let mut body = buf.split_off(head_len);
    body.truncate(length);
    body.reserve_exact(length - body.len());
    while body.len() < length {
        let missing = (length - body.len()) as u64;
        if (&mut *reader).take(missing).read_buf(&mut body).await? == 0 {
            return Err(WireError::Truncated);
        }
    }
    Ok(body)
}

/// Read a body that ends when the peer closes, refusing more than `limit` bytes.
pub(super) async fn read_body_to_end<R>(
    reader: &mut R,
    mut buf: Vec<u8>,
    head_len: usize,
    limit: usize,
) -> Result<Vec<u8>, WireError>
where
    R: AsyncRead + Unpin,
{
    let mut body = buf.split_off(head_len);
    loop {
        if body.len() > limit {
            return Err(WireError::BodyTooLarge {
                length: body.len() as u64,
                limit,
            });
        }
        body.reserve(READ_CHUNK);
        // One byte more than the limit is enough to know it is too large.
        let room = (limit + 1 - body.len()) as u64;
        if (&mut *reader).take(room).read_buf(&mut body).await? == 0 {
            return Ok(body);
        }
    }
}

/// Parse a head as returned by [`read_head`] (including its blank line).
pub(super) fn parse_head(bytes: &[u8]) -> Result<Head<'_>, WireError> {
    let text = std::str::from_utf8(bytes).map_err(|_| WireError::Malformed("head is not UTF-8"))?;
    let text = text
        .strip_suffix("\r\n\r\n")
        .ok_or(WireError::Malformed("head does not end with a blank line"))?;
    let mut lines = text.split("\r\n");
    let start_line = lines.next().unwrap_or_default();
    if start_line.is_empty() {
        return Err(WireError::Malformed("empty first line"));
    }
    if has_control(start_line) {
        return Err(WireError::Malformed("control character in the first line"));
    }
    let mut headers = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            return Err(WireError::Malformed(
                "folded header lines are not supported",
            ));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(WireError::Malformed("header line without a colon"))?;
        if !is_token(name) {
            return Err(WireError::Malformed("invalid header name"));
        }
        let value = value.trim_matches([' ', '\t']);
        if has_control(value) {
            return Err(WireError::Malformed("control character in a header value"));
        }
        headers.push((name, value));
    }
    Ok(Head {
        start_line,
        headers,
    })
}

impl Head<'_> {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// The body length from `Content-Length`, if given; repeated fields must agree.
    pub fn content_length(&self) -> Result<Option<u64>, WireError> {
        let mut length = None;
        for (_, value) in self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(WireError::Malformed("Content-Length is not a number"));
            }
            let parsed: u64 = value
                .parse()
                .map_err(|_| WireError::Malformed("Content-Length is too large"))?;
            if length.is_some_and(|l| l != parsed) {
                return Err(WireError::Malformed("conflicting Content-Length fields"));
            }
            length = Some(parsed);
        }
        Ok(length)
    }

    /// We only speak `Content-Length` bodies.
    pub fn reject_transfer_encoding(&self) -> Result<(), WireError> {
        match self.header("transfer-encoding") {
            Some(_) => Err(WireError::TransferEncoding),
            None => Ok(()),
        }
    }
}

/// `METHOD /path?query HTTP/1.1`
pub(super) fn parse_request_line(line: &str) -> Result<RequestLine<'_>, WireError> {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(WireError::Malformed(
            "request line is not `METHOD target version`",
        ));
    };
    if !is_token(method) {
        return Err(WireError::Malformed("invalid method"));
    }
    check_version(version)?;
    if !target.starts_with('/') {
        return Err(WireError::Malformed("request target must start with /"));
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    Ok(RequestLine {
        method,
        path,
        query,
    })
}

/// `HTTP/1.1 200 OK` → 200
pub(super) fn parse_status_line(line: &str) -> Result<u16, WireError> {
    let (version, rest) = line
        .split_once(' ')
        .ok_or(WireError::Malformed("status line without a status"))?;
    check_version(version)?;
    let (code, _reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(WireError::Malformed("status is not three digits"));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| WireError::Malformed("status is not three digits"))?;
    if status < 100 {
        return Err(WireError::Malformed("status below 100"));
    }
    Ok(status)
}

fn check_version(version: &str) -> Result<(), WireError> {
    match version {
        "HTTP/1.1" | "HTTP/1.0" => Ok(()),
        v if v.starts_with("HTTP/") => Err(WireError::Version),
        _ => Err(WireError::Malformed("unknown protocol version")),
    }
}

/// An RFC 9110 token: methods and header names.
pub(super) fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A request target our client may send: starts with `/`, no spaces or control characters.
pub(super) fn is_origin_target(text: &str) -> bool {
    text.starts_with('/') && !text.bytes().any(|b| b == b' ' || b.is_ascii_control())
}

fn has_control(text: &str) -> bool {
    text.bytes().any(|b| b != b'\t' && b.is_ascii_control())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        let ok = [
            (
                "GET /status HTTP/1.1",
                RequestLine {
                    method: "GET",
                    path: "/status",
                    query: None,
                },
            ),
            (
                "PUT /desired?force=1&x HTTP/1.0",
                RequestLine {
                    method: "PUT",
                    path: "/desired",
                    query: Some("force=1&x"),
                },
            ),
            (
                "GET /? HTTP/1.1",
                RequestLine {
                    method: "GET",
                    path: "/",
                    query: Some(""),
                },
            ),
        ];
        for (line, want) in ok {
            assert_eq!(parse_request_line(line).ok(), Some(want), "{line}");
        }
        let malformed = [
            "GET",
            "GET /",
            "GET  / HTTP/1.1",
            "GET / HTTP/1.1 extra",
            "GET status HTTP/1.1",
            "G(T / HTTP/1.1",
            "GET / FTP/1.1",
            "GET http://host/ HTTP/1.1",
        ];
        for line in malformed {
            assert!(
                matches!(parse_request_line(line), Err(WireError::Malformed(_))),
                "{line}"
            );
        }
        assert!(matches!(
            parse_request_line("GET / HTTP/2.0"),
            Err(WireError::Version)
        ));
    }

    #[test]
    fn status_lines() {
        let table = [
            ("HTTP/1.1 200 OK", Some(200)),
            ("HTTP/1.0 404 Not Found", Some(404)),
            ("HTTP/1.1 599", Some(599)),
            ("HTTP/1.1 204 ", Some(204)),
            ("HTTP/1.1 20 OK", None),
            ("HTTP/1.1 2000 OK", None),
            ("HTTP/1.1 abc OK", None),
            ("HTTP/1.1 099 Low", None),
            ("HTTP/1.1", None),
            ("SPDY/3 200 OK", None),
        ];
        for (line, want) in table {
            assert_eq!(parse_status_line(line).ok(), want, "{line}");
        }
    }

    #[test]
    fn heads_and_headers() {
        let head = parse_head(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length:  12 \r\n\r\n")
            .expect("valid head");
        assert_eq!(head.start_line, "GET / HTTP/1.1");
        assert_eq!(head.header("host"), Some("x"));
        assert_eq!(head.header("CONTENT-LENGTH"), Some("12"));
        assert_eq!(head.content_length().ok(), Some(Some(12)));
        assert!(head.reject_transfer_encoding().is_ok());

        let malformed: [&[u8]; 6] = [
            b"\r\n\r\n",
            b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\x01c\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: \xff\r\n\r\n",
        ];
        for bytes in malformed {
            assert!(
                matches!(parse_head(bytes), Err(WireError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn content_length_rules() {
        let table: [(&[u8], Option<Option<u64>>); 6] = [
            (b"GET / HTTP/1.1\r\n\r\n", Some(None)),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                Some(Some(0)),
            ),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n",
                Some(Some(5)),
            ),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                None,
            ),
            (b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", None),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                None,
            ),
        ];
        for (bytes, want) in table {
            let head = parse_head(bytes).expect("valid head");
            assert_eq!(
                head.content_length().ok(),
                want,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        let chunked = parse_head(b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
            .expect("valid head");
        assert!(matches!(
            chunked.reject_transfer_encoding(),
            Err(WireError::TransferEncoding)
        ));
    }

    #[tokio::test]
    async fn head_and_body_across_small_reads() {
        let message = b"PUT /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        // A reader that hands out three bytes at a time exercises the blank-line search across
        // read boundaries.
        let mut reader = tokio_test_reader(message, 3);
        let mut buf = Vec::new();
        let head_len = read_head(&mut reader, &mut buf).await.expect("head");
        assert_eq!(&buf[..head_len], &message[..message.len() - 5]);
        let body = read_body(&mut reader, buf, head_len, 5)
            .await
            .expect("body");
        assert_eq!(body, b"hello");
    }

    #[tokio::test]
    async fn truncated_and_oversized_heads() {
        let mut buf = Vec::new();
        let mut empty: &[u8] = b"";
        assert!(matches!(
            read_head(&mut empty, &mut buf).await,
            Err(WireError::ClosedBeforeStart)
        ));
        let mut buf = Vec::new();
        let mut partial: &[u8] = b"GET / HTTP/1.1\r\n";
        assert!(matches!(
            read_head(&mut partial, &mut buf).await,
            Err(WireError::Truncated)
        ));
        let huge = vec![b'a'; MAX_HEAD_BYTES + 10];
        let mut buf = Vec::new();
        assert!(matches!(
            read_head(&mut huge.as_slice(), &mut buf).await,
            Err(WireError::HeadTooLarge)
        ));
    }

    #[tokio::test]
    async fn body_to_end_is_capped() {
        let mut rest: &[u8] = b"6789";
        let buf = b"HEAD12345".to_vec();
        let body = read_body_to_end(&mut rest, buf, 4, 9).await.expect("fits");
        assert_eq!(body, b"123456789");
        let mut rest: &[u8] = b"6789";
        let buf = b"HEAD12345".to_vec();
        assert!(matches!(
            read_body_to_end(&mut rest, buf, 4, 8).await,
            Err(WireError::BodyTooLarge { .. })
        ));
    }

    /// An in-memory reader that returns at most `step` bytes per read.
    fn tokio_test_reader(data: &'static [u8], step: usize) -> impl AsyncRead + Unpin {
        let (mut writer, reader) = tokio::io::duplex(step);
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for chunk in data.chunks(step) {
                if writer.write_all(chunk).await.is_err() {
                    return;
                }
            }
        });
        reader
    }
}
