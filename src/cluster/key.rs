//! The store key: 32 random bytes, the same on every replica, that seal each password before it
//! is written to the PostgreSQL store and open it when read back (docs/configuration.md#store).
//!
//! Sealing is AES-256-GCM (ring) with a fresh random 96-bit nonce per value, and associated
//! data ([`Aad`]) that binds the ciphertext to its purpose, account, database user and version:
//! a row copied onto another account, user or version, or changed in any byte, does not open.
//! A sealed value is text, `v1:` followed by the standard base64 of nonce, ciphertext and tag.
//!
//! The key never leaves this type except through [`StoreKey::to_base64`] (for `pwrotd genkey`);
//! its bytes are zeroed when it is dropped, and neither its `Debug` output nor any
//! [`KeyError`] holds a byte of a key, a plaintext, or the text a key was parsed from.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::random;

/// The length of a store key, in bytes.
pub const KEY_LEN: usize = 32;

/// What a sealed value starts with: the format of everything after it.
pub const SEALED_PREFIX: &str = "v1:";

/// The domain tag that opens every associated data: a value sealed for another purpose of
/// another program, or another format of this one, never opens as one of ours.
const DOMAIN: &str = "pwrotd-store-v1";

/// The length of the AES-GCM tag at the end of each ciphertext.
const TAG_LEN: usize = 16;

/// The 32-byte key that seals passwords in the store.
#[derive(Clone)]
pub struct StoreKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreKey(<redacted>)")
    }
}

/// What a sealed value is bound to. Opening needs exactly the values it was sealed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aad<'a> {
    /// What the value is, for example `"password"`: a value sealed as one thing never opens as
    /// another.
    pub purpose: &'a str,
    /// The account's name.
    pub account: &'a str,
    /// The database user the password belongs to.
    pub username: &'a str,
    /// The version of the password.
    pub version: u64,
}

impl Aad<'_> {
    /// The bytes authenticated with the ciphertext: the domain tag and each string as a 4-byte
    /// big-endian length followed by its bytes, then the version as 8 big-endian bytes. No two
    /// different `Aad`s encode alike (`"ab" + "c"` is not `"a" + "bc"`).
    fn encode(&self) -> Vec<u8> {
        let parts = [DOMAIN, self.purpose, self.account, self.username];
        let len = parts.iter().map(|p| 4 + p.len()).sum::<usize>() + 8;
        let mut out = Vec::with_capacity(len);
        for part in parts {
            // A string over 4 GiB cannot be an account name; saturating keeps this total.
            let n = u32::try_from(part.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&n.to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out.extend_from_slice(&self.version.to_be_bytes());
        out
    }
}

/// Why a key could not be parsed or made, or a value not sealed or opened. No variant holds a
/// byte of a key, a plaintext or the input it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The input has none of the accepted lengths.
    #[error(
        "a store key is 32 bytes, written as 44 characters of standard base64 or 64 hex digits \
         (surrounding whitespace allowed), or as exactly 32 raw bytes; this is {given} bytes \
         ({trimmed} without surrounding whitespace); make one with `pwrotd genkey`"
    )]
    Length {
        /// The input's length in bytes.
        given: usize,
        /// Its length once surrounding whitespace is trimmed.
        trimmed: usize,
    },
    /// 44 characters that are not the standard base64 of 32 bytes.
    #[error(
        "44 characters, but not the standard (padded, `+/`) base64 of 32 bytes; make a key with \
         `pwrotd genkey`"
    )]
    Base64,
    /// 64 characters that are not all hex digits.
    #[error("64 characters, but not all hex digits")]
    Hex,
    /// 32 bytes that are all printable text: a passphrase, or a 16-byte key in hex, rather
    /// than 32 random bytes (which are all printable about once in 10^14 keys).
    #[error(
        "32 bytes of printable text, not 32 random bytes: a passphrase or a 16-byte key in hex \
         is not a store key; make one with `pwrotd genkey`"
    )]
    Text,
    /// The operating system's random source failed.
    #[error("the OS random source failed: {0}")]
    Random(String),
    /// The value could not be sealed.
    #[error("cannot seal the value: {0}")]
    Seal(&'static str),
    /// The value is not a sealed value of this format at all.
    #[error("not a sealed store value: {0}")]
    Malformed(&'static str),
    /// The value has the right form but fails authentication.
    #[error("does not decrypt: wrong store key, or the row was altered or moved")]
    DoesNotDecrypt,
}

impl StoreKey {
    /// A new key from the OS CSPRNG.
    pub fn generate() -> Result<StoreKey, KeyError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        random::fill(&mut *bytes).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(StoreKey { bytes })
    }

    /// A key as a key file holds it: exactly 32 raw bytes; or, with any surrounding whitespace
    /// (a trailing newline), 44 characters of standard base64 or 64 hex digits.
    pub fn parse(input: &[u8]) -> Result<StoreKey, KeyError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        if input.len() == KEY_LEN {
            if input.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
                return Err(KeyError::Text);
            }
            bytes.copy_from_slice(input);
            return Ok(StoreKey { bytes });
        }
        let text = input.trim_ascii();
        match text.len() {
            44 => {
                // Room for what 44 characters could decode to, so that a value of the wrong
                // length is reported as such rather than as a buffer too small.
                let mut decoded = Zeroizing::new([0u8; 33]);
                match STANDARD.decode_slice(text, &mut *decoded) {
                    Ok(KEY_LEN) => bytes.copy_from_slice(&decoded[..KEY_LEN]),
                    _ => return Err(KeyError::Base64),
                }
            }
            64 => hex::decode_to_slice(text, &mut *bytes).map_err(|_| KeyError::Hex)?,
            trimmed => {
                return Err(KeyError::Length {
                    given: input.len(),
                    trimmed,
                });
            }
        }
        Ok(StoreKey { bytes })
    }

    /// The key as standard base64 (44 characters), as `pwrotd genkey` prints it and
    /// [`StoreKey::parse`] reads it.
    /// A subkey for `label` (HMAC-SHA256 of the label under this key): the audit trail's
    /// HMAC key, the same on every replica, and no way back to this key.
    pub fn derive(&self, label: &[u8]) -> Zeroizing<Vec<u8>> {
        use hmac::Mac as _;
        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&self.bytes[..])
            .expect("HMAC takes any key length");
        mac.update(label);
        Zeroizing::new(mac.finalize().into_bytes().to_vec())
    }

    pub fn to_base64(&self) -> Zeroizing<String> {
        // A slice, not the array: passing the array would copy the key onto the stack.
        Zeroizing::new(STANDARD.encode(self.bytes.as_slice()))
    }

    /// The AEAD key. ring refuses only a key of the wrong length, which a `StoreKey` never is.
    fn aead(&self) -> Result<LessSafeKey, ring::error::Unspecified> {
        UnboundKey::new(&AES_256_GCM, &*self.bytes).map(LessSafeKey::new)
    }

    /// `plaintext` sealed for `aad`: `v1:` and the base64 of a fresh random nonce, the
    /// ciphertext and the tag. Fails only if the random source fails, or for a plaintext of
    /// gigabytes.
    pub fn seal(&self, aad: &Aad, plaintext: &[u8]) -> Result<String, KeyError> {
        let key = self
            .aead()
            .map_err(|_| KeyError::Seal("the key is unusable"))?;
        let mut nonce = [0u8; NONCE_LEN];
        random::fill(&mut nonce).map_err(|e| KeyError::Random(e.to_string()))?;
        // Room for the tag up front: growing the vector would leave a copy of the plaintext in
        // memory that is freed without being zeroed.
        let mut buffer = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
        buffer.extend_from_slice(plaintext);
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::from(aad.encode()),
            &mut *buffer,
        )
        .map_err(|_| KeyError::Seal("the value is too long"))?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + buffer.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&buffer);
        Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(sealed)))
    }

    /// The plaintext of a value [`StoreKey::seal`] made with this key and the same `aad`. A
    /// value sealed with another key or for another `aad`, or changed in any way, is
    /// [`KeyError::DoesNotDecrypt`]; one that is not a sealed value at all is
    /// [`KeyError::Malformed`].
    pub fn open(&self, aad: &Aad, sealed: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let body = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(KeyError::Malformed(
                "it does not start with \"v1:\" (written by a newer pwrotd, or not by pwrotd)",
            ))?;
        let mut data = Zeroizing::new(
            STANDARD
                .decode(body)
                .map_err(|_| KeyError::Malformed("what follows \"v1:\" is not base64"))?,
        );
        if data.len() < NONCE_LEN + TAG_LEN {
            return Err(KeyError::Malformed("too short to hold a nonce and a tag"));
        }
        let key = self.aead().map_err(|_| KeyError::DoesNotDecrypt)?;
        let (nonce, in_out) = data.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| KeyError::Malformed("too short to hold a nonce"))?;
        let plaintext = key
            .open_in_place(nonce, ring::aead::Aad::from(aad.encode()), in_out)
            .map_err(|_| KeyError::DoesNotDecrypt)?;
        Ok(Zeroizing::new(plaintext.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AAD: Aad<'static> = Aad {
        purpose: "password",
        account: "orders-app",
        username: "app",
        version: 7,
    };

    /// A fixed key whose bytes are not all printable.
    fn key() -> StoreKey {
        let bytes: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
        StoreKey::parse(&bytes).unwrap()
    }

    #[test]
    fn parses_base64_hex_and_raw() {
        let raw: Vec<u8> = (0u8..32).map(|i| 200 - i).collect();
        let b64 = STANDARD.encode(&raw);
        let hexed = hex::encode(&raw);
        let expected = StoreKey::parse(&raw).unwrap().to_base64();
        assert_eq!(*expected, b64);
        for text in [
            b64.clone(),
            format!("{b64}\n"),
            format!("  {b64}\r\n\n"),
            hexed.clone(),
            format!("{hexed}\n"),
            hexed.to_uppercase(),
        ] {
            let parsed = StoreKey::parse(text.as_bytes()).unwrap();
            assert_eq!(parsed.to_base64(), expected, "{text:?}");
        }
        let generated = StoreKey::generate().unwrap();
        let again = StoreKey::parse(generated.to_base64().as_bytes()).unwrap();
        assert_eq!(again.to_base64(), generated.to_base64());
    }

    #[test]
    fn refuses_bad_lengths_and_contents_without_echoing_them() {
        let raw: Vec<u8> = (0u8..32).map(|i| 200 - i).collect();
        let b64 = STANDARD.encode(&raw);
        let hexed = hex::encode(&raw);
        let cases: Vec<(Vec<u8>, KeyError)> = vec![
            (
                Vec::new(),
                KeyError::Length {
                    given: 0,
                    trimmed: 0,
                },
            ),
            (
                b"\n".to_vec(),
                KeyError::Length {
                    given: 1,
                    trimmed: 0,
                },
            ),
            (
                raw[..31].to_vec(),
                KeyError::Length {
                    given: 31,
                    trimmed: 31,
                },
            ),
            (
                [&raw[..], &[7]].concat(),
                KeyError::Length {
                    given: 33,
                    trimmed: 33,
                },
            ),
            (
                b64.as_bytes()[..43].to_vec(),
                KeyError::Length {
                    given: 43,
                    trimmed: 43,
                },
            ),
            (
                hexed.as_bytes()[..62].to_vec(),
                KeyError::Length {
                    given: 62,
                    trimmed: 62,
                },
            ),
            (
                STANDARD.encode([1u8; 16]).into_bytes(),
                KeyError::Length {
                    given: 24,
                    trimmed: 24,
                },
            ),
            // 33 bytes in base64, 44 characters with no padding.
            (STANDARD.encode([1u8; 33]).into_bytes(), KeyError::Base64),
            (b64.replace('=', "!").into_bytes(), KeyError::Base64),
            // URL-safe base64 is not accepted: the key's text has one spelling.
            (
                STANDARD
                    .encode([0xfb, 0xef, 0xff].repeat(11).split_at(32).0)
                    .replace('+', "-")
                    .replace('/', "_")
                    .into_bytes(),
                KeyError::Base64,
            ),
            (hexed.replacen('c', "g", 1).into_bytes(), KeyError::Hex),
            // A 16-byte key in hex, and a passphrase, are 32 printable bytes.
            (hex::encode([9u8; 16]).into_bytes(), KeyError::Text),
            (b"correct horse battery staple 123".to_vec(), KeyError::Text),
        ];
        for (input, expected) in cases {
            let err = StoreKey::parse(&input).unwrap_err();
            assert_eq!(err, expected, "{input:?}");
            let shown = format!("{err} {err:?}");
            let text = String::from_utf8_lossy(&input);
            assert!(
                text.trim().len() < 8 || !shown.contains(text.trim()),
                "{shown}"
            );
        }
        assert!(
            StoreKey::parse(b"abc")
                .unwrap_err()
                .to_string()
                .contains("this is 3 bytes")
        );
    }

    #[test]
    fn seal_then_open() {
        let key = key();
        for plaintext in [&b""[..], b"x", b"p@ssw0rd-with-24-chars!!", &[0u8; 1000]] {
            let sealed = key.seal(&AAD, plaintext).unwrap();
            assert!(sealed.starts_with("v1:"), "{sealed}");
            let opened = key.open(&AAD, &sealed).unwrap();
            assert_eq!(&opened[..], plaintext);
        }
        // A fresh nonce each time: the same plaintext never seals alike.
        assert_ne!(
            key.seal(&AAD, b"same").unwrap(),
            key.seal(&AAD, b"same").unwrap()
        );
        // The plaintext does not show through.
        let sealed = key.seal(&AAD, b"HUNTER2HUNTER2").unwrap();
        assert!(!sealed.contains("HUNTER2"));
    }

    #[test]
    fn a_wrong_key_does_not_decrypt() {
        let sealed = key().seal(&AAD, b"secret").unwrap();
        let other = StoreKey::generate().unwrap();
        assert_eq!(
            other.open(&AAD, &sealed).unwrap_err(),
            KeyError::DoesNotDecrypt
        );
    }

    #[test]
    fn each_field_of_the_aad_is_bound() {
        let key = key();
        let sealed = key.seal(&AAD, b"secret").unwrap();
        for changed in [
            Aad {
                purpose: "audit",
                ..AAD
            },
            Aad {
                account: "orders-app2",
                ..AAD
            },
            Aad {
                username: "app_clone",
                ..AAD
            },
            Aad { version: 8, ..AAD },
            Aad {
                version: u64::MAX,
                ..AAD
            },
            // The boundaries between fields count: "orders-app" + "app" is not
            // "orders-appa" + "pp".
            Aad {
                account: "orders-appa",
                username: "pp",
                ..AAD
            },
            Aad {
                purpose: "",
                account: "passwordorders-app",
                ..AAD
            },
        ] {
            assert_eq!(
                key.open(&changed, &sealed).unwrap_err(),
                KeyError::DoesNotDecrypt,
                "{changed:?}"
            );
        }
        assert_eq!(&key.open(&AAD, &sealed).unwrap()[..], b"secret");
    }

    #[test]
    fn a_changed_byte_does_not_decrypt() {
        let key = key();
        let sealed = key.seal(&AAD, b"secret").unwrap();
        let bytes = STANDARD.decode(&sealed[3..]).unwrap();
        // Every byte: nonce, ciphertext and tag.
        for i in 0..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[i] ^= 0x01;
            let value = format!("v1:{}", STANDARD.encode(&tampered));
            assert_eq!(
                key.open(&AAD, &value).unwrap_err(),
                KeyError::DoesNotDecrypt,
                "byte {i}"
            );
        }
        // Cut short by a byte, or lengthened.
        let short = format!("v1:{}", STANDARD.encode(&bytes[..bytes.len() - 1]));
        assert_eq!(
            key.open(&AAD, &short).unwrap_err(),
            KeyError::DoesNotDecrypt
        );
        let long = format!("v1:{}", STANDARD.encode([&bytes[..], &[0]].concat()));
        assert_eq!(key.open(&AAD, &long).unwrap_err(), KeyError::DoesNotDecrypt);
    }

    #[test]
    fn malformed_values_are_errors_not_panics() {
        let key = key();
        let sealed = key.seal(&AAD, b"secret").unwrap();
        for value in [
            String::new(),
            "v1:".to_owned(),
            "v1:AAAA".to_owned(),
            format!("v1:{}", STANDARD.encode([0u8; 27])),
            "v1:not base64!".to_owned(),
            sealed.replacen("v1:", "v2:", 1),
            sealed[3..].to_owned(),
            "secret".to_owned(),
        ] {
            assert!(
                matches!(key.open(&AAD, &value), Err(KeyError::Malformed(_))),
                "{value:?}"
            );
        }
        // Exactly a nonce and a tag: an empty plaintext's length, but not its tag.
        let empty = format!("v1:{}", STANDARD.encode([0u8; 28]));
        assert_eq!(
            key.open(&AAD, &empty).unwrap_err(),
            KeyError::DoesNotDecrypt
        );
    }

    #[test]
    fn debug_shows_no_bytes() {
        let key = key();
        let shown = format!("{key:?} {key:#?}");
        assert_eq!(format!("{key:?}"), "StoreKey(<redacted>)");
        let b64 = key.to_base64();
        assert!(!shown.contains(&b64[..8]), "{shown}");
    }
}
