//! The gateway URL's query (`v`, `encoding`, `compress`) and the
//! compression Discord applies to what it writes.
//!
//! Transport compression runs one context for the whole connection: every
//! frame is a binary message flushed so the client can read it at once,
//! and only with the context built from all earlier frames.
//! `compress=zlib-stream` ends each frame with a sync flush (`00 00 ff ff`);
//! `compress=zstd-stream` with a zstd flush (one zstd frame for the whole
//! connection, never ended). Payload compression (IDENTIFY's
//! `compress: true`) makes each dispatch a complete zlib stream of its own.

use std::io::Write;

use flate2::{Compress, Compression, FlushCompress, Status};

use crate::payloads::API_VERSION;

/// Close codes for a query Discord would refuse.
const INVALID_API_VERSION: u16 = 4012;
const DECODE_ERROR: u16 = 4002;

/// What the query asked of the connection.
pub(crate) enum Transport {
    Plain,
    ZlibStream(Box<Compress>),
    /// The encoder writes into its `Vec`, drained after each frame's flush.
    ZstdStream(Box<zstd::stream::write::Encoder<'static, Vec<u8>>>),
}

impl Transport {
    /// Reads `v`, `encoding` and `compress` from the upgrade's query. `Err`
    /// is the close code the connection gets at once: 4012 for a `v` other
    /// than 10; 4002 for an encoding other than `json` (the simulator does
    /// not speak ETF) or an unknown `compress`. A missing `v` or `encoding`
    /// is taken as 10 and `json`.
    pub(crate) fn from_query(query: Option<&str>) -> Result<Self, u16> {
        let mut transport = Self::Plain;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "v" if value != API_VERSION.to_string() => return Err(INVALID_API_VERSION),
                "encoding" if value != "json" => return Err(DECODE_ERROR),
                "compress" => match value {
                    "zlib-stream" => {
                        transport =
                            Self::ZlibStream(Box::new(Compress::new(Compression::default(), true)));
                    }
                    "zstd-stream" => {
                        let encoder = zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)
                            .map_err(|_| DECODE_ERROR)?;
                        transport = Self::ZstdStream(Box::new(encoder));
                    }
                    _ => return Err(DECODE_ERROR),
                },
                _ => {}
            }
        }
        Ok(transport)
    }

    /// The `compress` the query asked for; `None` for plain text frames.
    pub(crate) fn compress(&self) -> Option<&'static str> {
        match self {
            Self::Plain => None,
            Self::ZlibStream(_) => Some("zlib-stream"),
            Self::ZstdStream(_) => Some("zstd-stream"),
        }
    }

    /// The frame's bytes as they go on the wire: `None` for a text frame
    /// (no transport compression), else the binary frame's bytes.
    pub(crate) fn encode(&mut self, text: &str) -> Option<Vec<u8>> {
        match self {
            Self::Plain => None,
            Self::ZlibStream(context) => Some(sync_flush(context, text.as_bytes())),
            Self::ZstdStream(encoder) => {
                // Writing to a Vec cannot fail; a failing encoder sends an
                // empty frame the client cannot read, as a broken stream would.
                let _ = encoder.write_all(text.as_bytes());
                let _ = encoder.flush();
                Some(std::mem::take(encoder.get_mut()))
            }
        }
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Plain => "Plain",
            Self::ZlibStream(_) => "ZlibStream",
            Self::ZstdStream(_) => "ZstdStream",
        })
    }
}

/// zstd's default level: what a server trading CPU for bandwidth would pick.
const ZSTD_LEVEL: i32 = 3;

/// Compresses `input` on the connection's context and flushes it so the
/// client can inflate this frame with what it already has.
fn sync_flush(context: &mut Compress, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    let mut consumed = 0;
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(256));
        }
        let before = context.total_in();
        let status = context.compress_vec(&input[consumed..], &mut out, FlushCompress::Sync);
        consumed += usize::try_from(context.total_in() - before).unwrap_or(usize::MAX);
        // The flush is complete once all input is taken and the output
        // buffer was not filled.
        let done = consumed >= input.len() && out.len() < out.capacity();
        if done || !matches!(status, Ok(Status::Ok | Status::BufError)) {
            return out;
        }
    }
}

/// A dispatch as a zlib stream of its own (IDENTIFY's `compress: true`), made on the
/// connection's context, reset for each: a fresh one would allocate and clear its ~256 KB
/// of state for every dispatch, which cost the simulator three quarters of its rate.
pub(crate) fn zlib_payload(context: &mut Compress, text: &str) -> Vec<u8> {
    context.reset();
    let input = text.as_bytes();
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(256));
        }
        let consumed = usize::try_from(context.total_in()).unwrap_or(usize::MAX);
        match context.compress_vec(&input[consumed..], &mut out, FlushCompress::Finish) {
            Ok(Status::Ok | Status::BufError) => {}
            Ok(Status::StreamEnd) | Err(_) => return out,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use flate2::{Decompress, FlushDecompress};

    use super::*;

    #[test]
    fn the_query_is_judged_as_discord_would() {
        assert!(matches!(Transport::from_query(None), Ok(Transport::Plain)));
        assert!(matches!(
            Transport::from_query(Some("v=10&encoding=json")),
            Ok(Transport::Plain)
        ));
        assert!(matches!(
            Transport::from_query(Some("v=10&encoding=json&compress=zlib-stream")),
            Ok(Transport::ZlibStream(_))
        ));
        assert_eq!(Transport::from_query(Some("v=9")).unwrap_err(), 4012);
        assert_eq!(
            Transport::from_query(Some("v=10&encoding=etf")).unwrap_err(),
            4002
        );
        assert_eq!(
            Transport::from_query(Some("v=10&compress=gzip")).unwrap_err(),
            4002
        );
        assert!(matches!(
            Transport::from_query(Some("compress=zstd-stream")),
            Ok(Transport::ZstdStream(_))
        ));
    }

    #[test]
    fn zstd_stream_frames_decode_in_order_on_one_context() {
        use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};
        let mut transport = Transport::from_query(Some("compress=zstd-stream")).unwrap();
        let frames = [
            "first frame",
            "second frame, longer than the first",
            "third",
        ];
        let mut decoder = Decoder::new().unwrap();
        for frame in frames {
            let bytes = transport.encode(frame).unwrap();
            let mut out = vec![0; 4096];
            let mut input = InBuffer::around(&bytes);
            let mut output = OutBuffer::around(&mut out[..]);
            while input.pos() < bytes.len() {
                decoder.run(&mut input, &mut output).unwrap();
            }
            let written = output.pos();
            assert_eq!(&out[..written], frame.as_bytes());
        }
    }

    #[test]
    fn zlib_stream_frames_inflate_only_in_order_on_one_context() {
        let mut transport = Transport::from_query(Some("compress=zlib-stream")).unwrap();
        let frames = [
            "first frame",
            "second frame, longer than the first",
            "third",
        ];
        let wire: Vec<Vec<u8>> = frames
            .iter()
            .map(|f| transport.encode(f).unwrap())
            .collect();
        let mut inflate = Decompress::new(true);
        for (frame, bytes) in frames.iter().zip(&wire) {
            assert!(bytes.ends_with(&[0, 0, 0xff, 0xff]), "sync flush suffix");
            let mut out = Vec::with_capacity(1024);
            inflate
                .decompress_vec(bytes, &mut out, FlushDecompress::Sync)
                .unwrap();
            assert_eq!(out, frame.as_bytes());
        }
        // The second frame alone, on a fresh context, is not a zlib stream.
        let mut fresh = Decompress::new(true);
        let mut out = Vec::with_capacity(1024);
        assert!(
            fresh
                .decompress_vec(&wire[1], &mut out, FlushDecompress::Sync)
                .is_err()
        );
    }

    #[test]
    fn a_compressed_payload_is_a_whole_zlib_stream() {
        let mut context = Compress::new(Compression::default(), true);
        let long = format!(r#"{{"op":0,"d":"{}"}}"#, "x".repeat(100_000));
        // Each payload on the reused context is a whole stream of its own.
        for payload in [r#"{"op":0}"#, long.as_str(), r#"{"op":11}"#] {
            let bytes = zlib_payload(&mut context, payload);
            let mut text = String::new();
            flate2::read::ZlibDecoder::new(&bytes[..])
                .read_to_string(&mut text)
                .unwrap();
            assert_eq!(text, payload);
        }
    }
}
