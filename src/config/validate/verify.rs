//! `[account.verify]`: how a new password is tried before it is promoted.

use std::time::Duration;

use toml::Spanned;

use super::{Label, TIMEOUT, required};
use crate::config::diagnostics::Check;
use crate::config::raw::RawVerify;
use crate::verify::{Engine, Tls, Verify};

/// `[account.verify]`, `None` when any of its keys is refused (and reported): `engine` and
/// `host` are required; TLS is on, certificate and host checked, unless it says otherwise.
pub(super) fn validate_verify(
    check: &mut Check,
    raw: &Spanned<RawVerify>,
    label: &Label,
) -> Option<Verify> {
    let before = check.problems.len();
    let line = check.line(raw.span().start);
    let v = raw.get_ref();
    let engine = match &v.engine {
        Some(e) => check
            .one_of(e.get_ref(), e, label.key("engine"))
            .map_or(Engine::Mysql, Engine::from),
        None => {
            check.push(
                line,
                label.key("engine"),
                "is required: \"mysql\" or \"postgresql\"",
            );
            Engine::Mysql
        }
    };
    let host = required(check, &v.host, &label.key("host"), line);
    let port = u16::try_from(check.count(
        &v.port,
        &label.key("port"),
        1..=65535,
        i64::from(engine.default_port()),
    ))
    .unwrap_or(engine.default_port());
    let database = match &v.database {
        Some(d) if d.get_ref().trim().is_empty() => {
            check.at(d, label.key("database"), "must not be empty");
            None
        }
        d => d.as_ref().map(|d| d.get_ref().clone()),
    };
    let tls = match v.tls.as_ref() {
        None => Some(Tls::VerifyFull),
        Some(t) => match t.get_ref() {
            toml::Value::Boolean(true) => Some(Tls::VerifyFull),
            toml::Value::Boolean(false) => Some(Tls::Disable),
            toml::Value::String(name) => Tls::parse(name),
            _ => None,
        }
        .or_else(|| {
            let names = Tls::NAMES.map(|n| format!("{n:?}")).join(", ");
            check.at(
                t,
                label.key("tls"),
                format!("{} is not one of {names}, true or false", t.get_ref()),
            );
            None
        }),
    }
    .unwrap_or(Tls::VerifyFull);
    let ca_file = v
        .ca_file
        .as_ref()
        .map(|ca| check.ca_file(ca, &label.key("ca_file")));
    let timeout = check.duration_or(
        &v.timeout,
        &label.key("timeout"),
        false,
        TIMEOUT,
        Duration::from_secs(60),
    );
    (check.problems.len() == before).then_some(Verify {
        engine,
        host,
        port,
        database,
        tls,
        ca_file,
        timeout,
    })
}
