//! Logging for every command: to stderr, colour only on a terminal, and under systemd each line
//! with its syslog priority (docs/operations.md#logging).

use crate::config::LogFormat;

/// Logs to stderr: colour only on a terminal; under systemd (`JOURNAL_STREAM` names stderr)
/// every line starts with its syslog priority, `<3>` to `<7>`, and carries no timestamp of its
/// own, so that the journal files each line at its level.
pub fn init(format: LogFormat, default: &str) {
    use std::io::IsTerminal;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let journal = stderr_is_journal();
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter);
    match (format, journal) {
        (LogFormat::Text, false) => builder.init(),
        (LogFormat::Json, false) => builder.json().init(),
        (LogFormat::Text, true) => {
            let text = tracing_subscriber::fmt::format().without_time();
            builder.event_format(Priority(text)).init()
        }
        (LogFormat::Json, true) => {
            let json = tracing_subscriber::fmt::format().json().without_time();
            builder
                .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                .event_format(Priority(json))
                .init()
        }
    }
}

/// Whether stderr is the stream systemd connected to the journal (`JOURNAL_STREAM` is its
/// `device:inode`).
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some((dev, ino)) = std::env::var("JOURNAL_STREAM")
        .ok()
        .and_then(|v| {
            v.split_once(':')
                .map(|(d, i)| (d.parse::<u64>(), i.parse::<u64>()))
        })
        .and_then(|(d, i)| Some((d.ok()?, i.ok()?)))
    else {
        return false;
    };
    let Ok(stderr) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(stderr)
        .metadata()
        .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// Prefixes each event with its syslog priority (sd-daemon(3)'s `<N>` convention).
struct Priority<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for Priority<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            tracing::Level::DEBUG | tracing::Level::TRACE => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}
