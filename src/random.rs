//! The operating system's CSPRNG: the only source of randomness in pwrotd, for passwords,
//! nonces, tokens and retry jitter alike.
//!
//! rand's samplers want an infallible generator; [`OsRandom`] records a failure of the random
//! source instead of panicking, and callers check it with [`OsRandom::take_failure`].

use std::convert::Infallible;
use std::time::Duration;

use rand::rngs::{SysError, SysRng};
use rand::{RngExt, TryRng};

/// The OS CSPRNG behind rand's infallible interface.
#[derive(Default)]
pub struct OsRandom {
    failure: Option<SysError>,
}

impl OsRandom {
    /// The first failure of the random source since the last call, if any. Values drawn after a
    /// failure are not random and must be discarded.
    pub fn take_failure(&mut self) -> Option<SysError> {
        self.failure.take()
    }

    fn record<T: Default>(&mut self, r: Result<T, SysError>) -> T {
        r.unwrap_or_else(|e| {
            self.failure.get_or_insert(e);
            T::default()
        })
    }
}

impl TryRng for OsRandom {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let r = SysRng.try_next_u32();
        Ok(self.record(r))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let r = SysRng.try_next_u64();
        Ok(self.record(r))
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Infallible> {
        let r = SysRng.try_fill_bytes(dest);
        self.record(r);
        Ok(())
    }
}

/// Fills `dest` with random bytes: keys and AEAD nonces, written straight into the caller's
/// buffer (which may be zeroized) rather than copied out of a temporary.
pub fn fill(dest: &mut [u8]) -> Result<(), SysError> {
    SysRng.try_fill_bytes(dest)
}

/// `N` random bytes as lower-case hex: nonces and request ids.
pub fn hex_token<const N: usize>() -> Result<String, SysError> {
    let mut bytes = [0u8; N];
    fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// A uniform duration in `[0, max]`: full jitter. If the random source fails, `max`.
pub fn jitter(max: Duration) -> Duration {
    let mut rng = OsRandom::default();
    let millis = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    let drawn = rng.random_range(0..=millis);
    match rng.take_failure() {
        None => Duration::from_millis(drawn),
        Some(_) => max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_differ_and_have_the_right_length() {
        let (a, b) = (hex_token::<16>().unwrap(), hex_token::<16>().unwrap());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn jitter_stays_in_range() {
        let max = Duration::from_millis(50);
        let draws: Vec<Duration> = (0..200).map(|_| jitter(max)).collect();
        assert!(draws.iter().all(|d| *d <= max));
        assert!(draws.iter().any(|d| *d != draws[0]), "jitter never varies");
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
