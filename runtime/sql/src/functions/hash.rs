//! Hashing functions: MD5, the SHA family and CRC-32, returned as lower-case hexadecimal text.
//!
//! Strings are hashed as their UTF-8 bytes, `bytea` as its raw bytes, numbers and booleans as
//! their SQL text. A `NULL` argument gives `NULL`.

use std::fmt::Write;

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::args::{any_nil, bytes};
use super::{FnCtx, FnError, ScalarDef};
use crate::value::Value;

type R = Result<Value, FnError>;

const fn def(name: &'static str, call: super::ScalarFn, doc: &'static str) -> ScalarDef {
    ScalarDef::new("hashing", name, 1, Some(1), call, doc)
}

#[rustfmt::skip]
pub(super) const DEFS: &[ScalarDef] = &[
    def("crc32", crc32, "crc32(x): the CRC-32 (IEEE) checksum of x in hexadecimal, without leading zeros"),
    def("md5", md5, "md5(x): the MD5 digest of x in hexadecimal"),
    def("sha1", sha1, "sha1(x): the SHA-1 digest of x in hexadecimal"),
    def("sha256", sha256, "sha256(x): the SHA-256 digest of x in hexadecimal"),
    def("sha384", sha384, "sha384(x): the SHA-384 digest of x in hexadecimal"),
    def("sha512", sha512, "sha512(x): the SHA-512 digest of x in hexadecimal"),
];

fn hex(digest: &[u8]) -> String {
    let mut out = String::with_capacity(digest.len() * 2);
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn hash_with<D: Digest>(f: &str, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let input = bytes(f, args, 0)?;
    Ok(Value::from(hex(&D::digest(&input))))
}

fn md5(_: &FnCtx<'_>, args: &[Value]) -> R {
    hash_with::<Md5>("md5", args)
}

fn sha1(_: &FnCtx<'_>, args: &[Value]) -> R {
    hash_with::<Sha1>("sha1", args)
}

fn sha256(_: &FnCtx<'_>, args: &[Value]) -> R {
    hash_with::<Sha256>("sha256", args)
}

fn sha384(_: &FnCtx<'_>, args: &[Value]) -> R {
    hash_with::<Sha384>("sha384", args)
}

fn sha512(_: &FnCtx<'_>, args: &[Value]) -> R {
    hash_with::<Sha512>("sha512", args)
}

fn crc32(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let input = bytes("crc32", args, 0)?;
    Ok(Value::from(format!("{:x}", crc32fast::hash(&input))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: &[Value]) -> R {
        let meta = Value::Null;
        let ctx = FnCtx {
            now_ms: 0,
            meta: &meta,
            timestamp_ms: 0,
        };
        let def = DEFS.iter().find(|d| d.name == name).expect("function");
        (def.call)(&ctx, args)
    }

    fn s(x: &str) -> Value {
        Value::from(x)
    }

    #[test]
    fn digests_of_known_inputs() {
        assert_eq!(
            call("md5", &[s("abc")]),
            Ok(s("900150983cd24fb0d6963f7d28e17f72"))
        );
        assert_eq!(
            call("sha1", &[s("abc")]),
            Ok(s("a9993e364706816aba3e25717850c26c9cd0d89d"))
        );
        assert_eq!(
            call("sha256", &[s("abc")]),
            Ok(s(
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            ))
        );
        assert_eq!(
            call("sha384", &[s("abc")]),
            Ok(s(
                "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"
            ))
        );
        assert_eq!(
            call("sha512", &[s("abc")]),
            Ok(s(
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
            ))
        );
        assert_eq!(call("crc32", &[s("abc")]), Ok(s("352441c2")));
    }

    #[test]
    fn crc32_drops_leading_zeros() {
        // CRC-32 of "a" is 0xe8b7be43; of the single byte 0x1f it has a leading zero nibble.
        assert_eq!(call("crc32", &[s("a")]), Ok(s("e8b7be43")));
        let short = format!("{:x}", crc32fast::hash(b"\x1f"));
        assert_eq!(
            call("crc32", &[Value::Bytes((&b"\x1f"[..]).into())]),
            Ok(s(&short))
        );
        assert!(!short.starts_with('0'));
    }

    #[test]
    fn inputs_other_than_strings() {
        assert_eq!(call("md5", &[Value::Int(1)]), call("md5", &[s("1")]));
        assert_eq!(
            call("sha256", &[Value::Bytes((&b"abc"[..]).into())]),
            call("sha256", &[s("abc")])
        );
        assert_eq!(
            call("md5", &[s("")]),
            Ok(s("d41d8cd98f00b204e9800998ecf8427e"))
        );
        for f in ["md5", "sha1", "sha256", "sha384", "sha512", "crc32"] {
            assert_eq!(call(f, &[Value::Null]), Ok(Value::Null), "{f}");
            assert!(
                call(f, &[Value::array(vec![Value::Int(1)])]).is_err(),
                "{f}"
            );
        }
    }
}
