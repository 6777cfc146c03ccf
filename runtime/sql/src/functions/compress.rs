//! `compress` and `decompress`: a string or bytes through zlib, gzip, raw deflate or zstd, as
//! eKuiper's functions of the same names.
//!
//! Each call stands alone (eKuiper keeps one compressor per call site and refuses a method
//! other than its first); the output of `decompress` is bounded so that a small input cannot
//! make the rule hold an unbounded result.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::{DeflateDecoder, GzDecoder, ZlibDecoder};
use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
use ruzstd::decoding::StreamingDecoder;
use ruzstd::encoding::{CompressionLevel, compress_to_vec};

use super::args::{MAX_STRING_BYTES, any_nil, arg, fail, text};
use super::{FnCtx, FnError, ScalarDef};
use crate::value::Value;

type R = Result<Value, FnError>;

#[rustfmt::skip]
pub(super) const DEFS: &[ScalarDef] = &[
    ScalarDef::new("conversion", "compress", 2, Some(2), compress, "compress(x, method): the string or bytes x compressed with method zlib, gzip, flate or zstd, as bytes"),
    ScalarDef::new("conversion", "decompress", 2, Some(2), decompress, "decompress(x, method): the bytes x decompressed with method zlib, gzip, flate or zstd (at most 16 MiB)"),
];

/// The compression methods, by eKuiper's names.
#[derive(Clone, Copy)]
enum Method {
    Zlib,
    Gzip,
    Flate,
    Zstd,
}

fn method(name: &str) -> Option<Method> {
    match name {
        "zlib" => Some(Method::Zlib),
        "gzip" => Some(Method::Gzip),
        "flate" => Some(Method::Flate),
        "zstd" => Some(Method::Zstd),
        _ => None,
    }
}

/// The data argument: a string (its UTF-8) or bytes, as eKuiper takes it.
fn data<'a>(f: &str, args: &'a [Value]) -> Result<&'a [u8], FnError> {
    match arg(args, 0) {
        Value::String(s) => Ok(s.as_bytes()),
        Value::Bytes(b) => Ok(b),
        v => Err(fail(
            f,
            format!(
                "require string or bytea parameter, but got {}",
                crate::wording::go_value(v)
            ),
        )),
    }
}

fn compress(_: &FnCtx<'_>, args: &[Value]) -> R {
    const F: &str = "compress";
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let name = text(F, args, 1)?;
    let m = method(&name).ok_or_else(|| fail(F, format!("unsupported compressor: {name}")))?;
    let input = data(F, args)?;
    let written = match m {
        Method::Zlib => {
            let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
            e.write_all(input).and_then(|()| e.finish())
        }
        Method::Gzip => {
            let mut e = GzEncoder::new(Vec::new(), Compression::default());
            e.write_all(input).and_then(|()| e.finish())
        }
        Method::Flate => {
            let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
            e.write_all(input).and_then(|()| e.finish())
        }
        Method::Zstd => Ok(compress_to_vec(input, CompressionLevel::Fastest)),
    };
    written
        .map(|out| Value::Bytes(out.into()))
        .map_err(|e| fail(F, format!("failed to compress: {e}")))
}

fn decompress(_: &FnCtx<'_>, args: &[Value]) -> R {
    const F: &str = "decompress";
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let name = text(F, args, 1)?;
    let m = method(&name).ok_or_else(|| fail(F, format!("unsupported decompressor: {name}")))?;
    let input = data(F, args)?;
    let reader: Box<dyn Read + '_> = match m {
        Method::Zlib => Box::new(ZlibDecoder::new(input)),
        Method::Gzip => Box::new(GzDecoder::new(input)),
        Method::Flate => Box::new(DeflateDecoder::new(input)),
        Method::Zstd => Box::new(
            StreamingDecoder::new(input)
                .map_err(|e| fail(F, format!("failed to decompress: {e}")))?,
        ),
    };
    let mut out = Vec::new();
    // One byte past the limit tells a result that is too large from one that fits exactly.
    reader
        .take(MAX_STRING_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| fail(F, format!("failed to decompress: {e}")))?;
    if out.len() > MAX_STRING_BYTES {
        return Err(fail(
            F,
            format!("the result is larger than {} MiB", MAX_STRING_BYTES >> 20),
        ));
    }
    Ok(Value::Bytes(out.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(f: super::super::ScalarFn, args: &[Value]) -> R {
        let meta = Value::Null;
        let ctx = FnCtx {
            now_ms: 0,
            meta: &meta,
            timestamp_ms: 0,
        };
        f(&ctx, args)
    }

    #[test]
    fn every_method_round_trips() {
        for m in ["zlib", "gzip", "flate", "zstd"] {
            let packed = call(compress, &[Value::from("hello world"), Value::from(m)]).unwrap();
            assert!(matches!(packed, Value::Bytes(_)), "{m}");
            let back = call(decompress, &[packed, Value::from(m)]).unwrap();
            assert_eq!(back, Value::Bytes(b"hello world"[..].into()), "{m}");
        }
    }

    #[test]
    fn bad_methods_and_inputs_are_errors() {
        assert_eq!(
            call(compress, &[Value::from("x"), Value::from("bar")])
                .unwrap_err()
                .0,
            "compress: unsupported compressor: bar"
        );
        assert_eq!(
            call(decompress, &[Value::from("x"), Value::from("lz4")])
                .unwrap_err()
                .0,
            "decompress: unsupported decompressor: lz4"
        );
        let err = call(decompress, &[Value::from("not zlib"), Value::from("zlib")]).unwrap_err();
        assert!(
            err.0.starts_with("decompress: failed to decompress: "),
            "{}",
            err.0
        );
        assert_eq!(
            call(compress, &[Value::Null, Value::from("zlib")]),
            Ok(Value::Null)
        );
    }

    #[test]
    fn a_bomb_is_refused() {
        let zeros = vec![0u8; MAX_STRING_BYTES + 1];
        for m in ["zlib", "zstd"] {
            let packed = call(
                compress,
                &[Value::Bytes(zeros.clone().into()), Value::from(m)],
            );
            let err = call(decompress, &[packed.unwrap(), Value::from(m)]).unwrap_err();
            assert_eq!(err.0, "decompress: the result is larger than 16 MiB", "{m}");
        }
    }

    #[test]
    fn zstd_reads_frames_of_other_encoders() {
        // "hello" as the reference zstd command line writes it (with a checksum), so decompress
        // reads what eKuiper's and other encoders give, not only its own output.
        let frame: &[u8] = &[
            0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58, 0x29, 0x00, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
            0xa3, 0x6d, 0x9f, 0x88,
        ];
        let back = call(
            decompress,
            &[Value::Bytes(frame.into()), Value::from("zstd")],
        );
        assert_eq!(back, Ok(Value::Bytes(b"hello"[..].into())));
        let err = call(decompress, &[Value::from("not zstd"), Value::from("zstd")]).unwrap_err();
        assert!(
            err.0.starts_with("decompress: failed to decompress: "),
            "{}",
            err.0
        );
    }
}
