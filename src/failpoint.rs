//! Crash and fault points for the reliability tests (RELIABILITY.md). They exist only in debug
//! builds: in a release build every function here is an empty inline body.
//!
//! `PWROTD_FAILPOINT` holds comma-separated points, each `name`, `name:N` (the Nth time the
//! point is reached, counting from 1) or either with `=action`:
//! - `kill` (the default): SIGKILL to this process, as `kill -9` would;
//! - `panic`: a panic whose message holds a secret-looking value, to test redaction;
//! - `stop`: SIGSTOP to this process, as a paused VM or `kill -STOP` would (cluster fencing);
//! - `eio`, `enospc`, `erofs`: the I/O point fails with that error (see [`io`]).
//!
//! Crash points: `after_pending`, `after_send`, `before_promote`, `before_render`,
//! `during_render`, `before_grants`, `before_rename`. I/O points: `write`, `fsync`.

#[cfg(debug_assertions)]
mod active {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};

    pub struct Point {
        name: String,
        nth: u32,
        action: String,
        hits: AtomicU32,
    }

    fn points() -> &'static [Point] {
        static POINTS: OnceLock<Vec<Point>> = OnceLock::new();
        POINTS.get_or_init(|| {
            let spec = std::env::var("PWROTD_FAILPOINT").unwrap_or_default();
            spec.split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    let (point, action) = s.trim().split_once('=').unwrap_or((s.trim(), "kill"));
                    let (name, nth) = point.split_once(':').unwrap_or((point, "1"));
                    Point {
                        name: name.to_owned(),
                        nth: nth.parse().unwrap_or(1),
                        action: action.to_owned(),
                        hits: AtomicU32::new(0),
                    }
                })
                .collect()
        })
    }

    /// The action of `name` if this is the hit it fires on.
    pub fn fires(name: &str) -> Option<&'static str> {
        let point = points().iter().find(|p| p.name == name)?;
        let hit = point.hits.fetch_add(1, Ordering::SeqCst) + 1;
        (hit == point.nth).then_some(point.action.as_str())
    }
}

/// A crash point: with `kill`, the process dies here as under `kill -9`.
#[inline(always)]
pub fn crash(name: &str) {
    #[cfg(debug_assertions)]
    match active::fires(name) {
        Some("kill") => {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
        Some("panic") => panic!("failpoint {name}: password=Pw-Secret-1234!"),
        Some("stop") => {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
        }
        _ => {}
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// An I/O fault point: `Err` with the configured error, or `Ok`.
#[inline(always)]
pub fn io(name: &str) -> std::io::Result<()> {
    #[cfg(debug_assertions)]
    {
        use nix::errno::Errno;
        let errno = match active::fires(name) {
            Some("eio") => Errno::EIO,
            Some("enospc") => Errno::ENOSPC,
            Some("erofs") => Errno::EROFS,
            Some("kill") => {
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
                return Ok(());
            }
            _ => return Ok(()),
        };
        Err(std::io::Error::from_raw_os_error(errno as i32))
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = name;
        Ok(())
    }
}
