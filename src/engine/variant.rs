//! Keyed variants: the query parameters and request headers a rule puts in the key
//! ([`Rule::key_query`](crate::Rule::key_query), [`Rule::key_headers`](crate::Rule::key_headers)).
//!
//! A request that carries keyed input is a variant of its key: it is stored, coalesced and
//! remembered as missing under `.origin-pull-variants/<key>/v-<hash>` (the hash of the
//! normalised input), and the inner service is asked for that key, so each variant is a hit
//! of its own and no client's input decides what another is served. A request without keyed
//! input is the plain key. The keyed input is sent to the origin.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Mutex;

use http::{HeaderMap, HeaderValue, Uri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};

use crate::rule::Rule;

/// Where variants are stored. The prefix is reserved: a request for a key under it is never
/// pulled (its miss stays the inner response), so no client can write a variant's key by
/// naming it.
pub(crate) const VARIANTS_PREFIX: &str = ".origin-pull-variants";

/// Whether `key` lies under the reserved variants prefix.
pub(crate) fn reserved(key: &str) -> bool {
    key.starts_with(VARIANTS_PREFIX) && key.split('/').next() == Some(VARIANTS_PREFIX)
}

/// Keys whose variants are counted at most (past it, one counted key is forgotten for each
/// new one).
const MAX_COUNTED_KEYS: usize = 100_000;

/// Query characters left as they are when the keyed parameters are re-encoded.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A request's variant of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Variant {
    /// Where it is stored, filled and remembered.
    pub(crate) key: String,
    /// Its hash, for counting the variants of a key.
    hash: u64,
    /// The keyed query parameters for the origin, normalised.
    pub(crate) query: Option<String>,
    /// The keyed headers for the origin, normalised.
    pub(crate) headers: HeaderMap,
}

/// The variant `uri` and `headers` make of `key` under `rule`, or `None` when the request
/// carries none of the rule's keyed input (the plain key).
pub(crate) fn of(
    rule: &Rule,
    key: &str,
    uri: &Uri,
    headers: Option<&HeaderMap>,
) -> Option<Variant> {
    if rule.key_query.is_empty() && rule.key_headers.is_empty() || reserved(key) {
        return None;
    }
    let mut pairs: Vec<(String, String)> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(name);
            rule.key_query
                .contains(&name)
                .then(|| (name, decode(value)))
        })
        .collect();
    pairs.sort();
    let mut out = HeaderMap::new();
    let mut signature = String::new();
    for (name, value) in &pairs {
        let _ = writeln!(signature, "q {name}={value}");
    }
    for name in &rule.key_headers {
        let Some(value) = headers.and_then(|h| h.get(name)) else {
            continue;
        };
        // Header values compare case-insensitively and without surrounding blanks (as the
        // ones keyed are meant to be: `Accept-Language`, a tenant, a version).
        let Ok(normal) = value.to_str().map(|v| v.trim().to_ascii_lowercase()) else {
            continue;
        };
        let _ = writeln!(signature, "h {name}={normal}");
        if let Ok(v) = HeaderValue::from_str(&normal) {
            out.insert(name.clone(), v);
        }
    }
    if signature.is_empty() {
        return None;
    }
    let digest = Sha256::digest(signature.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let hash = u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8]));
    let query = (!pairs.is_empty()).then(|| {
        pairs
            .iter()
            .map(|(n, v)| {
                format!(
                    "{}={}",
                    utf8_percent_encode(n, QUERY),
                    utf8_percent_encode(v, QUERY)
                )
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    Some(Variant {
        key: format!("{VARIANTS_PREFIX}/{key}/v-{hex}"),
        hash,
        query,
        headers: out,
    })
}

fn decode(text: &str) -> String {
    percent_decode_str(&text.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// How many variants each key has had, so a rule's `max_variants` can hold.
#[derive(Debug, Default)]
pub(crate) struct Counted {
    seen: Mutex<HashMap<String, HashSet<u64>>>,
}

impl Counted {
    /// Whether `variant` of `key` may be stored: it was seen before, or `key` has fewer
    /// than `max` variants.
    pub(crate) fn admit(&self, key: &str, variant: &Variant, max: usize) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_COUNTED_KEYS && !seen.contains_key(key) {
            if let Some(forget) = seen.keys().next().cloned() {
                seen.remove(&forget);
            }
        }
        let hashes = seen.entry(key.to_owned()).or_default();
        if hashes.contains(&variant.hash) {
            return true;
        }
        if hashes.len() >= max {
            return false;
        }
        hashes.insert(variant.hash);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HttpOrigin, Rule};

    fn rule() -> Rule {
        Rule::new(HttpOrigin::new("http://127.0.0.1:9/").unwrap())
            .key_query(["lang", "v"])
            .key_headers(["accept-language"])
            .unwrap()
    }

    fn of_request(query: &str, lang: Option<&str>) -> Option<Variant> {
        let uri: Uri = format!("/a.png?{query}").parse().unwrap();
        let mut headers = HeaderMap::new();
        if let Some(lang) = lang {
            headers.insert("accept-language", HeaderValue::from_str(lang).unwrap());
        }
        of(&rule(), "a.png", &uri, Some(&headers))
    }

    #[test]
    fn spellings_of_one_input_are_one_variant() {
        let a = of_request("v=1&lang=fr", None).unwrap();
        assert_eq!(of_request("lang=fr&v=1", None).unwrap(), a, "any order");
        assert_eq!(
            of_request("lang=%66r&v=1&other=x", None).unwrap(),
            a,
            "decoded; others ignored"
        );
        assert_eq!(a.query.as_deref(), Some("lang=fr&v=1"));
        let h = of_request("", Some(" FR-ca ")).unwrap();
        assert_eq!(
            of_request("", Some("fr-CA")).unwrap(),
            h,
            "trimmed, any case"
        );
        assert!(h.key.starts_with(".origin-pull-variants/a.png/v-"));
        assert_ne!(a.key, h.key);
    }

    #[test]
    fn no_keyed_input_is_the_plain_key_and_the_prefix_is_reserved() {
        assert!(of_request("other=1", None).is_none());
        let uri: Uri = "/x?v=1".parse().unwrap();
        assert!(of(&rule(), ".origin-pull-variants/a.png/v-00", &uri, None).is_none());
        assert!(reserved(".origin-pull-variants/a"));
        assert!(!reserved("a/.origin-pull-variants"));
    }

    #[test]
    fn max_variants_holds_whatever_else_is_counted() {
        let counted = Counted::default();
        let v = |q: &str| of_request(q, None).unwrap();
        assert!(counted.admit("a.png", &v("v=1"), 2));
        assert!(counted.admit("a.png", &v("v=2"), 2));
        assert!(!counted.admit("a.png", &v("v=3"), 2));
        assert!(
            counted.admit("a.png", &v("v=1"), 2),
            "a variant seen before"
        );
    }
}
