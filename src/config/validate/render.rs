//! An account's render files: where each goes, its mode and group, and that no two share a file
//! or land in the state directory.

use std::path::PathBuf;

use toml::Spanned;

use crate::config::diagnostics::Check;
use crate::config::raw::RawRender;
use crate::config::{Render, RenderFormat, normalize, resolve};

/// The render files of the accounts checked so far, and the state directory they must keep out of.
pub(in crate::config) struct Renders {
    /// Resolved (see [`resolve`]); `None` when `daemon.state_dir` itself was refused.
    pub(in crate::config) state_dir: Option<PathBuf>,
    /// Each resolved render path, with the key and line of the entry that named it first.
    pub(in crate::config) seen: std::collections::HashMap<PathBuf, (String, usize)>,
}

pub(super) fn validate_render(
    check: &mut Check,
    raw: &Spanned<RawRender>,
    key: &str,
    renders: &mut Renders,
) -> Option<Render> {
    let before = check.problems.len();
    let r = raw.get_ref();
    let format = match r.format.as_str() {
        "env" => RenderFormat::Env,
        "json" => RenderFormat::Json,
        "raw" => RenderFormat::Raw,
        other => {
            check.at(
                raw,
                format!("{key}.format"),
                format!("{other:?} is not one of env, json, raw"),
            );
            RenderFormat::Raw
        }
    };
    let written = PathBuf::from(&r.path);
    let path = normalize(&written);
    let resolved = resolve(&written);
    if !written.is_absolute() || written.file_name().is_none() {
        check.at(
            raw,
            format!("{key}.path"),
            format!("{:?} must be an absolute file path", r.path),
        );
    } else {
        let line = check.line(raw.span().start);
        if let Some(state_dir) = &renders.state_dir
            && (resolved.starts_with(state_dir) || state_dir.starts_with(&resolved))
        {
            check.push(
                line,
                format!("{key}.path"),
                format!(
                    "{:?} {} daemon.state_dir {:?}, where pwrotd keeps its secret files, \
                     temporary files, lock and audit log",
                    r.path,
                    if resolved.starts_with(state_dir) {
                        "lies in"
                    } else {
                        "would replace a directory above"
                    },
                    state_dir.display().to_string(),
                ),
            );
        } else if let Some((first, first_line)) = renders.seen.get(&resolved) {
            let message = format!(
                "{:?} is already the file of {first} (line {first_line}): two render entries \
                 cannot share a file",
                r.path
            );
            check.push(line, format!("{key}.path"), message);
        } else {
            renders.seen.insert(resolved, (key.to_owned(), line));
        }
    }
    let mode = match &r.mode {
        None => 0o600,
        Some(m) => match u32::from_str_radix(m.trim_start_matches("0o"), 8) {
            Ok(mode) if mode & 0o007 == 0 && mode & 0o400 != 0 && mode <= 0o777 => mode,
            Ok(_) => {
                check.at(
                    raw,
                    format!("{key}.mode"),
                    format!("{m:?} must give the owner read access and others none, like \"0640\""),
                );
                0o600
            }
            Err(_) => {
                check.at(
                    raw,
                    format!("{key}.mode"),
                    format!("{m:?} is not an octal mode like \"0640\""),
                );
                0o600
            }
        },
    };
    let gid = match &r.group {
        None => None,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => Some(gid),
            Err(_) => match nix::unistd::Group::from_name(g) {
                Ok(Some(group)) => Some(group.gid.as_raw()),
                _ => {
                    check.at(
                        raw,
                        format!("{key}.group"),
                        format!("no group named {g:?} on this host"),
                    );
                    None
                }
            },
        },
    };
    (check.problems.len() == before).then_some(Render {
        format,
        path,
        mode,
        gid,
    })
}
