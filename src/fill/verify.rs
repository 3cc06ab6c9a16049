//! Checksums verified while the bytes stream: `Content-MD5`, a SHA-256 header, an MD5 ETag.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use http::header::ETAG;
use md5::{Digest, Md5};
use sha2::Sha256;

use crate::Error;
use crate::rule::Checksum;

enum Hasher {
    Md5(Md5),
    Sha256(Sha256),
}

struct Check {
    name: String,
    expected: Vec<u8>,
    hasher: Hasher,
}

/// The checks that apply to one origin response (those whose header it sent).
pub(crate) struct Verifier {
    checks: Vec<Check>,
}

fn decode_digest(value: &str, len: usize) -> Option<Vec<u8>> {
    let value = value.trim();
    if value.len() == len * 2 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return (0..len)
            .map(|i| u8::from_str_radix(&value[2 * i..2 * i + 2], 16).ok())
            .collect();
    }
    STANDARD.decode(value).ok().filter(|d| d.len() == len)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Verifier {
    /// The checks in `wanted` that `headers` give a digest for; a digest that cannot be read
    /// is an error (the object cannot be verified, so it is not stored).
    pub(crate) fn new(key: &str, wanted: &[Checksum], headers: &HeaderMap) -> Result<Self, Error> {
        let mut checks = Vec::new();
        for checksum in wanted {
            let (name, value, len, hasher) = match checksum {
                Checksum::ContentMd5 => match headers.get("content-md5") {
                    Some(v) => ("Content-MD5".to_owned(), v, 16, Hasher::Md5(Md5::new())),
                    None => continue,
                },
                Checksum::Sha256Header(header) => match headers.get(header) {
                    Some(v) => (header.to_string(), v, 32, Hasher::Sha256(Sha256::new())),
                    None => continue,
                },
                Checksum::EtagMd5 => {
                    let Some(etag) = headers.get(ETAG).and_then(|v| v.to_str().ok()) else {
                        continue;
                    };
                    let inner = etag.trim_matches('"');
                    if etag.starts_with("W/")
                        || inner.len() != 32
                        || !inner.bytes().all(|b| b.is_ascii_hexdigit())
                    {
                        continue; // not an MD5-shaped ETag (multipart, weak, opaque)
                    }
                    let expected = decode_digest(inner, 16).unwrap_or_default();
                    checks.push(Check {
                        name: "ETag MD5".to_owned(),
                        expected,
                        hasher: Hasher::Md5(Md5::new()),
                    });
                    continue;
                }
            };
            let text = value.to_str().unwrap_or("");
            let Some(expected) = decode_digest(text, len) else {
                return Err(Error::BadChecksum {
                    key: key.to_owned(),
                    algorithm: name,
                    value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
                });
            };
            checks.push(Check {
                name,
                expected,
                hasher,
            });
        }
        Ok(Self { checks })
    }

    pub(crate) fn update(&mut self, chunk: &[u8]) {
        for check in &mut self.checks {
            match &mut check.hasher {
                Hasher::Md5(h) => h.update(chunk),
                Hasher::Sha256(h) => h.update(chunk),
            }
        }
    }

    pub(crate) fn finish(self, key: &str) -> Result<(), Error> {
        for check in self.checks {
            let actual = match check.hasher {
                Hasher::Md5(h) => h.finalize().to_vec(),
                Hasher::Sha256(h) => h.finalize().to_vec(),
            };
            if actual != check.expected {
                return Err(Error::ChecksumMismatch {
                    key: key.to_owned(),
                    algorithm: check.name,
                    expected: hex(&check.expected),
                    actual: hex(&actual),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn content_md5() {
        // md5("hello") = 5d41402abc4b2a76b9719d911017c592
        let ok = headers(&[("content-md5", "XUFAKrxLKna5cZ2REBfFkg==")]);
        let mut v = Verifier::new("k", &[Checksum::ContentMd5], &ok).unwrap();
        v.update(b"hel");
        v.update(b"lo");
        v.finish("k").unwrap();
        let mut v = Verifier::new("k", &[Checksum::ContentMd5], &ok).unwrap();
        v.update(b"hellO");
        assert!(matches!(v.finish("k"), Err(Error::ChecksumMismatch { .. })));
        let bad = headers(&[("content-md5", "not base64!")]);
        assert!(Verifier::new("k", &[Checksum::ContentMd5], &bad).is_err());
        // No header: nothing to check.
        let v = Verifier::new("k", &[Checksum::ContentMd5], &HeaderMap::new()).unwrap();
        v.finish("k").unwrap();
    }

    #[test]
    fn sha256_and_etag() {
        let sha = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let h = headers(&[
            ("x-amz-checksum-sha256", sha),
            ("etag", "\"5d41402abc4b2a76b9719d911017c592\""),
        ]);
        let wanted = [
            Checksum::Sha256Header(http::HeaderName::from_static("x-amz-checksum-sha256")),
            Checksum::EtagMd5,
        ];
        let mut v = Verifier::new("k", &wanted, &h).unwrap();
        v.update(b"hello");
        v.finish("k").unwrap();
        let multipart = headers(&[("etag", "\"5d41402abc4b2a76b9719d911017c592-2\"")]);
        let mut v = Verifier::new("k", &[Checksum::EtagMd5], &multipart).unwrap();
        v.update(b"anything");
        v.finish("k").unwrap();
    }
}
