//! Passwords: the documented policy, the validator that enforces it, the generator, and the
//! [`Password`] secret type.
//!
//! This is the only place a password is born. The generator draws from the operating system's
//! CSPRNG and samples uniformly over every string the policy accepts (rejection sampling), so
//! each character class is uniform and no class favours a position.
//!
//! Nothing here may print a password: errors describe the rule that failed, never the value.

use std::collections::BTreeSet;
use std::fmt;

use rand::RngExt;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::random::OsRandom;

/// The special characters the API documents. No other non-alphanumeric character is accepted.
pub const SPECIALS: &str = "!@#$%^&*()_+-=";
/// The shortest password the API accepts.
pub const MIN_LENGTH: usize = 8;
/// The longest password the API accepts.
pub const MAX_LENGTH: usize = 32;
/// The generator's default length.
pub const DEFAULT_LENGTH: usize = 24;
/// The API requires at least this many of the four classes.
pub const MIN_CLASSES: usize = 3;

/// How many candidates the generator draws before giving up. The hardest policy that
/// [`Policy::new`] accepts (8 characters; three required classes cut down to one character each
/// beside 26 letters) still accepts about one candidate in a hundred, so the chance of reaching
/// this bound is below 1e-50: reaching it means the random source is broken.
const MAX_DRAWS: usize = 10_000;

/// A password, or any other secret string.
///
/// Its `Debug` and `Display` never show the value, and its memory is zeroed when dropped.
/// Read it with [`Password::expose`], only where it must be sent or stored.
#[derive(Clone)]
pub struct Password(SecretString);

impl Password {
    /// Wraps a value read from the sink or a test. It is not validated: the database may hold a
    /// password that an older policy produced.
    pub fn new(value: String) -> Password {
        Password(SecretString::from(value))
    }

    /// The plain value. Call it only to sign, send or store the password.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// Serialized as the plain value, for the secret file only: no other serialized type holds a
/// `Password`.
impl serde::Serialize for Password {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose())
    }
}

impl<'de> serde::Deserialize<'de> for Password {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Password, D::Error> {
        String::deserialize(deserializer).map(Password::new)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A character class of the documented policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Upper,
    Lower,
    Digit,
    Special,
}

impl Class {
    pub const ALL: [Class; 4] = [Class::Upper, Class::Lower, Class::Digit, Class::Special];

    /// The class of a character the API accepts, or `None` for any other character.
    pub fn of(c: char) -> Option<Class> {
        match c {
            'A'..='Z' => Some(Class::Upper),
            'a'..='z' => Some(Class::Lower),
            '0'..='9' => Some(Class::Digit),
            c if SPECIALS.contains(c) => Some(Class::Special),
            _ => None,
        }
    }

    /// Every character of the class, in a fixed order.
    fn members(self) -> &'static [u8] {
        match self {
            Class::Upper => b"ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            Class::Lower => b"abcdefghijklmnopqrstuvwxyz",
            Class::Digit => b"0123456789",
            Class::Special => SPECIALS.as_bytes(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::Upper => "upper",
            Class::Lower => "lower",
            Class::Digit => "digit",
            Class::Special => "special",
        }
    }
}

/// Why a password breaks the documented policy. It never carries the password itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("is {0} characters long; the API accepts {MIN_LENGTH} to {MAX_LENGTH}")]
    Length(usize),
    #[error("has a character at position {0} that the API does not accept")]
    Character(usize),
    #[error("uses {0} character classes; the API requires at least {MIN_CLASSES}")]
    Classes(usize),
}

/// Checks a password against the documented policy (docs/configuration.md#password-policy), the same rule the API
/// enforces for all five operations.
pub fn validate(password: &str) -> Result<(), Violation> {
    let length = password.chars().count();
    if !(MIN_LENGTH..=MAX_LENGTH).contains(&length) {
        return Err(Violation::Length(length));
    }
    let mut classes = BTreeSet::new();
    for (position, c) in password.chars().enumerate() {
        classes.insert(Class::of(c).ok_or(Violation::Character(position + 1))?);
    }
    if classes.len() < MIN_CLASSES {
        return Err(Violation::Classes(classes.len()));
    }
    Ok(())
}

/// A problem with a password policy, naming the config key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct PolicyError {
    /// The key under `[defaults.password]` or `[account.password]`.
    pub key: &'static str,
    pub message: String,
}

impl PolicyError {
    fn new(key: &'static str, message: impl Into<String>) -> PolicyError {
        PolicyError {
            key,
            message: message.into(),
        }
    }
}

/// A validated generator policy.
///
/// The generator uses exactly the characters of the required classes, less `exclude`, and
/// every generated password holds at least one character of each required class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    length: usize,
    /// The allowed characters of each required class, never empty.
    classes: Vec<(Class, Vec<u8>)>,
    /// The union of `classes`: what each position is drawn from.
    alphabet: Vec<u8>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::new(DEFAULT_LENGTH, &Class::ALL, SPECIALS, "").expect("the default policy is valid")
    }
}

impl Policy {
    /// Builds a policy, or lists every key that makes it impossible or non-compliant.
    pub fn new(
        length: usize,
        require: &[Class],
        special: &str,
        exclude: &str,
    ) -> Result<Policy, Vec<PolicyError>> {
        let mut errors = Vec::new();
        if !(MIN_LENGTH..=MAX_LENGTH).contains(&length) {
            errors.push(PolicyError::new(
                "length",
                format!("{length} is outside the API's {MIN_LENGTH} to {MAX_LENGTH} characters"),
            ));
        }
        let required: BTreeSet<Class> = require.iter().copied().collect();
        if required.len() < MIN_CLASSES {
            errors.push(PolicyError::new(
                "require",
                format!(
                    "names {} distinct classes; the API needs at least {MIN_CLASSES} of upper, lower, digit, special",
                    required.len()
                ),
            ));
        }
        let refused: String = special.chars().filter(|c| !SPECIALS.contains(*c)).collect();
        if !refused.is_empty() {
            errors.push(PolicyError::new(
                "special",
                format!("{refused:?} is not among the API's special characters {SPECIALS:?}"),
            ));
        }
        let mut classes = Vec::new();
        for class in required {
            let members: Vec<u8> = class
                .members()
                .iter()
                .copied()
                .filter(|&b| class != Class::Special || special.as_bytes().contains(&b))
                .filter(|b| !exclude.as_bytes().contains(b))
                .collect();
            if members.is_empty() {
                let key = if class == Class::Special && special.is_empty() {
                    "special"
                } else {
                    "exclude"
                };
                errors.push(PolicyError::new(
                    key,
                    format!(
                        "leaves no character for the required class {:?}",
                        class.name()
                    ),
                ));
            }
            classes.push((class, members));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut alphabet: Vec<u8> = classes
            .iter()
            .flat_map(|(_, m)| m.iter().copied())
            .collect();
        alphabet.sort_unstable();
        Ok(Policy {
            length,
            classes,
            alphabet,
        })
    }

    pub fn length(&self) -> usize {
        self.length
    }

    /// The characters a generated password may contain, sorted.
    pub fn alphabet(&self) -> &[u8] {
        &self.alphabet
    }

    /// The required classes with their allowed characters.
    pub fn classes(&self) -> impl Iterator<Item = (Class, &[u8])> {
        self.classes.iter().map(|(c, m)| (*c, m.as_slice()))
    }

    /// Generates a compliant password from the OS CSPRNG.
    ///
    /// Each candidate is `length` independent uniform draws from the alphabet; candidates that
    /// miss a required class are discarded. The result is uniform over all passwords the policy
    /// accepts, and it passes [`validate`] before it is returned.
    pub fn generate(&self) -> Result<Password, GenerateError> {
        let mut rng = OsRandom::default();
        for _ in 0..MAX_DRAWS {
            // Exact capacity: the buffer is never reallocated, so no unzeroed copy is left
            // behind, and `SecretString::from` takes it without copying.
            let mut candidate = String::with_capacity(self.length);
            for _ in 0..self.length {
                let i = rng.random_range(0..self.alphabet.len());
                candidate.push(char::from(self.alphabet[i]));
            }
            if let Some(error) = rng.take_failure() {
                zeroize::Zeroize::zeroize(&mut candidate);
                return Err(GenerateError::Rng(error));
            }
            let complete = self
                .classes
                .iter()
                .all(|(_, members)| candidate.bytes().any(|b| members.contains(&b)));
            let password = Password::new(candidate);
            if complete {
                validate(password.expose()).map_err(GenerateError::SelfCheck)?;
                return Ok(password);
            }
        }
        Err(GenerateError::Exhausted)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("the operating system's random source failed: {0}")]
    Rng(rand::rngs::SysError),
    #[error("a generated password failed the policy self-check: it {0}")]
    SelfCheck(Violation),
    #[error("no compliant password after {MAX_DRAWS} draws; the random source is suspect")]
    Exhausted,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let p = Password::new("Sup3r$ecretValue".into());
        assert_eq!(format!("{p:?}"), "Password(<redacted>)");
        assert!(!format!("{:?}", Some(&p)).contains("Sup3r"));
    }

    #[test]
    fn default_policy_uses_all_four_classes_and_24_characters() {
        let policy = Policy::default();
        assert_eq!(policy.length(), 24);
        assert_eq!(policy.alphabet().len(), 26 + 26 + 10 + SPECIALS.len());
        let p = policy.generate().unwrap();
        assert_eq!(p.expose().len(), 24);
        for class in Class::ALL {
            assert!(p.expose().chars().any(|c| Class::of(c) == Some(class)));
        }
    }

    #[test]
    fn bad_policies_name_their_key() {
        let keys = |r: Result<Policy, Vec<PolicyError>>| -> Vec<&'static str> {
            r.unwrap_err().into_iter().map(|e| e.key).collect()
        };
        assert_eq!(keys(Policy::new(7, &Class::ALL, SPECIALS, "")), ["length"]);
        assert_eq!(keys(Policy::new(33, &Class::ALL, SPECIALS, "")), ["length"]);
        assert_eq!(
            keys(Policy::new(24, &[Class::Upper, Class::Lower], SPECIALS, "")),
            ["require"]
        );
        assert_eq!(
            keys(Policy::new(
                24,
                &[Class::Upper, Class::Upper, Class::Lower],
                SPECIALS,
                ""
            )),
            ["require"]
        );
        assert_eq!(keys(Policy::new(24, &Class::ALL, "!~", "")), ["special"]);
        assert_eq!(keys(Policy::new(24, &Class::ALL, "", "")), ["special"]);
        assert_eq!(keys(Policy::new(24, &Class::ALL, "!", "!")), ["exclude"]);
        assert_eq!(
            keys(Policy::new(24, &Class::ALL, SPECIALS, "0123456789")),
            ["exclude"]
        );
        // Every problem at once.
        assert_eq!(
            keys(Policy::new(99, &[Class::Digit], "~", "")),
            ["length", "require", "special"]
        );
        // Not requiring specials makes `special` irrelevant only if it is valid.
        assert!(Policy::new(8, &[Class::Upper, Class::Lower, Class::Digit], "", "").is_ok());
    }

    #[test]
    fn excluded_and_unrequired_characters_never_appear() {
        let policy = Policy::new(
            12,
            &[Class::Upper, Class::Lower, Class::Digit],
            SPECIALS,
            "O0l1I",
        )
        .unwrap();
        for _ in 0..200 {
            let p = policy.generate().unwrap();
            assert!(p.expose().bytes().all(|b| policy.alphabet().contains(&b)));
            assert!(!p.expose().contains(['O', '0', 'l', '1', 'I', '!', '=']));
        }
    }
}
