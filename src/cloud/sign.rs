//! Request signatures: V1 (HMAC-SHA1 over the canonical query) and V3 (`ACS3-HMAC-SHA256`).
//!
//! These are pure functions over already-collected parameters, shared by the client, which
//! signs, and the simulator, which verifies. Every intermediate string that can contain a
//! password is held in a [`Zeroizing`] buffer, and none of them is ever logged.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The V3 algorithm name, the first word of the `Authorization` header.
pub const V3_ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// Appends `s` percent-encoded per RFC 3986: every byte but `A-Z a-z 0-9 - _ . ~` becomes
/// `%XX`, so a space is `%20` and `*` is `%2A`.
pub fn percent_encode_into(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

/// `s` percent-encoded per RFC 3986 (see [`percent_encode_into`]).
pub fn percent_encode(s: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(s.len() * 3));
    percent_encode_into(&mut out, s);
    out
}

/// The canonical query both signatures use: the parameters sorted by name, each name and value
/// percent-encoded, joined as `k=v&k=v`. The same string is a valid form body.
pub fn canonical_query<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Zeroizing<String> {
    let mut sorted: Vec<(&str, &str)> = params.into_iter().collect();
    sorted.sort_unstable();
    let mut out = Zeroizing::new(String::new());
    for (i, (name, value)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        percent_encode_into(&mut out, name);
        out.push('=');
        percent_encode_into(&mut out, value);
    }
    out
}

/// The V1 signature of a request: base64 of HMAC-SHA1, keyed with `secret + "&"`, over
/// `METHOD&%2F&` followed by the percent-encoded canonical query. `params` holds every
/// parameter sent, wherever it travels, except `Signature` itself.
pub fn v1_signature<'a>(
    secret: &str,
    method: &str,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let query = canonical_query(params);
    let mut string_to_sign = Zeroizing::new(String::with_capacity(query.len() * 2));
    string_to_sign.push_str(method);
    string_to_sign.push_str("&%2F&");
    percent_encode_into(&mut string_to_sign, &query);

    let mut key = Zeroizing::new(String::with_capacity(secret.len() + 1));
    key.push_str(secret);
    key.push('&');
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key.as_bytes())
        .expect("HMAC accepts a key of any length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Lower-case hex of the SHA-256 of `data`: V3's `x-acs-content-sha256` and payload hash.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// What a V3 signature covers.
pub struct V3Input<'a> {
    pub method: &'a str,
    /// The request path, `/` for RPC-style APIs.
    pub path: &'a str,
    /// The query parameters, decoded.
    pub query: &'a [(&'a str, &'a str)],
    /// The signed headers, names in lower case. Their order does not matter.
    pub headers: &'a [(&'a str, &'a str)],
    /// Lower-case hex SHA-256 of the body, as sent in `x-acs-content-sha256`.
    pub payload_hash: &'a str,
}

/// A computed V3 signature.
pub struct V3Signature {
    /// `SignedHeaders`: the signed header names, sorted, joined by `;`.
    pub signed_headers: String,
    /// Lower-case hex of the HMAC-SHA256.
    pub signature: String,
}

impl V3Signature {
    /// The `Authorization` header value.
    pub fn authorization(&self, access_key_id: &str) -> String {
        format!(
            "{V3_ALGORITHM} Credential={access_key_id},SignedHeaders={},Signature={}",
            self.signed_headers, self.signature
        )
    }
}

/// Computes the V3 signature: HMAC-SHA256, keyed with the secret, over
/// `ACS3-HMAC-SHA256\n` + hex(SHA-256(canonical request)).
pub fn v3_signature(secret: &str, input: &V3Input<'_>) -> V3Signature {
    let mut headers: Vec<(&str, &str)> = input.headers.to_vec();
    headers.sort_unstable();
    let signed_headers = headers
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(";");

    let mut canonical = Zeroizing::new(String::new());
    canonical.push_str(input.method);
    canonical.push('\n');
    for segment in input.path.split('/').enumerate() {
        if segment.0 > 0 {
            canonical.push('/');
        }
        percent_encode_into(&mut canonical, segment.1);
    }
    canonical.push('\n');
    canonical.push_str(&canonical_query(input.query.iter().copied()));
    canonical.push('\n');
    for (name, value) in &headers {
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(value.trim());
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(&signed_headers);
    canonical.push('\n');
    canonical.push_str(input.payload_hash);

    let string_to_sign = format!("{V3_ALGORITHM}\n{}", sha256_hex(canonical.as_bytes()));
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts a key of any length");
    mac.update(string_to_sign.as_bytes());
    V3Signature {
        signed_headers,
        signature: hex::encode(mac.finalize().into_bytes()),
    }
}

/// Compares two signatures in time independent of where they differ.
pub fn signatures_match(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_per_rfc3986() {
        assert_eq!(*percent_encode("a b*c~d+e/f%"), "a%20b%2Ac~d%2Be%2Ff%25");
        assert_eq!(*percent_encode("дб"), "%D0%B4%D0%B1");
    }

    #[test]
    fn canonical_query_sorts_by_name() {
        let q = canonical_query([("b", "2"), ("a", "x y"), ("C", "3")]);
        assert_eq!(*q, "C=3&a=x%20y&b=2");
    }

    #[test]
    fn signature_comparison() {
        assert!(signatures_match("abc=", "abc="));
        assert!(!signatures_match("abc=", "abd="));
        assert!(!signatures_match("abc", "abc="));
    }
}
