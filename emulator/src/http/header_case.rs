//! Exact header-name case on HTTP/1 responses.
//!
//! hyper writes HTTP/1 header names in lower case and offers no public way to keep a
//! response header's case, but some Management API clients look for `NextPageUri:`
//! case-sensitively in the raw response (Wazuh's regex, Filebeat's map lookup). This wrapper
//! sits between hyper and the socket and rewrites, inside a response head only, the names
//! listed in [`EXACT_NAMES`] to their real spelling. The replacement has the same length, so
//! byte counts and framing are untouched; bodies are never looked at (a write is treated as
//! a head only when it starts with `HTTP/1.`, and only up to the blank line). HTTP/2 frames
//! never start that way and pass through unchanged (HTTP/2 requires lower-case names).

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Header names written exactly as the real services write them: (as hyper writes it, real).
pub const EXACT_NAMES: &[(&[u8], &[u8])] = &[(b"\r\nnextpageuri:", b"\r\nNextPageUri:")];

/// An I/O stream whose outgoing HTTP/1 response heads get [`EXACT_NAMES`] restored.
#[derive(Debug)]
pub struct ExactHeaderCase<T> {
    inner: T,
}

impl<T> ExactHeaderCase<T> {
    pub fn new(inner: T) -> Self {
        ExactHeaderCase { inner }
    }
}

/// The head part of `buf` (up to and including the blank line, or all of it) when `buf`
/// starts an HTTP/1 response.
fn head_of(buf: &[u8]) -> Option<&[u8]> {
    if !buf.starts_with(b"HTTP/1.") {
        return None;
    }
    let end = memchr::memmem::find(buf, b"\r\n\r\n").map_or(buf.len(), |i| i + 4);
    Some(&buf[..end])
}

/// `buf` with the names restored, or `None` when nothing needs to change.
pub fn restore_case(buf: &[u8]) -> Option<Vec<u8>> {
    let head = head_of(buf)?;
    let mut out: Option<Vec<u8>> = None;
    for (lower, exact) in EXACT_NAMES {
        let hits: Vec<usize> = memchr::memmem::find_iter(head, lower).collect();
        if hits.is_empty() {
            continue;
        }
        let bytes = out.get_or_insert_with(|| buf.to_vec());
        for at in hits {
            bytes[at..at + exact.len()].copy_from_slice(exact);
        }
    }
    out
}

impl<T: AsyncRead + Unpin> AsyncRead for ExactHeaderCase<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ExactHeaderCase<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match restore_case(buf) {
            Some(fixed) => Pin::new(&mut self.inner).poll_write(cx, &fixed),
            None => Pin::new(&mut self.inner).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let fixed: Vec<Option<Vec<u8>>> = bufs.iter().map(|b| restore_case(b)).collect();
        if fixed.iter().all(Option::is_none) {
            return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        }
        let slices: Vec<IoSlice<'_>> = bufs
            .iter()
            .zip(&fixed)
            .map(|(b, f)| f.as_deref().map_or(IoSlice::new(b), IoSlice::new))
            .collect();
        Pin::new(&mut self.inner).poll_write_vectored(cx, &slices)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restores_only_inside_a_response_head() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nnextpageuri: https://x/?a=1\r\n\r\n[\"\\r\\nnextpageuri: kept\"]";
        let fixed = restore_case(head).expect("changed");
        assert_eq!(fixed.len(), head.len());
        let text = String::from_utf8(fixed).expect("utf-8");
        assert!(
            text.contains("\r\nNextPageUri: https://x/?a=1\r\n"),
            "{text}"
        );
        assert!(text.ends_with("[\"\\r\\nnextpageuri: kept\"]"));
        // A body write, an HTTP/2 frame, a head without the header: untouched.
        assert_eq!(restore_case(b"\r\nnextpageuri: x\r\n\r\n"), None);
        assert_eq!(restore_case(b"HTTP/1.1 200 OK\r\ndate: x\r\n\r\n"), None);
        // The name must start a line: a value that mentions it is not a header.
        assert_eq!(
            restore_case(b"HTTP/1.1 200 OK\r\nx-note: nextpageuri: y\r\n\r\n"),
            None
        );
        // In the body after the head's blank line: untouched.
        let body_only = b"HTTP/1.1 200 OK\r\n\r\n\r\nnextpageuri: body";
        assert_eq!(restore_case(body_only), None);
    }
}
