//! An account's render files: the format, a path that no other entry shares and that keeps out
//! of the state directory, the mode and the group.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::Label;
use crate::config::diagnostics::Check;
use crate::config::raw::RawRender;
use crate::config::{Render, RenderFormat, normalize, resolve};

/// The render files of the accounts checked so far, and the state directory they must keep out of.
pub(super) struct Renders {
    /// Resolved (see [`resolve`]); `None` when `daemon.state_dir` itself was refused.
    state_dir: Option<PathBuf>,
    /// Each resolved render path, with the key and line of the entry that named it first.
    seen: HashMap<PathBuf, (String, usize)>,
}

impl Renders {
    /// None yet, to keep out of `state_dir`: empty when `daemon.state_dir` was refused.
    pub(super) fn new(state_dir: &Path) -> Renders {
        Renders {
            state_dir: (!state_dir.as_os_str().is_empty()).then(|| resolve(state_dir)),
            seen: HashMap::new(),
        }
    }
}

/// One render entry, `None` when any of its keys is refused (and reported). Each problem is
/// reported on the entry's line.
pub(super) fn validate_render(
    check: &mut Check,
    raw: &Spanned<RawRender>,
    label: &Label,
    renders: &mut Renders,
) -> Option<Render> {
    let before = check.problems.len();
    let r = raw.get_ref();
    let format = check
        .one_of(&r.format, raw, label.key("format"))
        .unwrap_or(RenderFormat::Raw);
    let path = render_path(check, raw, label, renders);
    let mode = render_mode(check, raw, label);
    let gid = render_group(check, raw, label);
    (check.problems.len() == before).then_some(Render {
        format,
        path,
        mode,
        gid,
    })
}

/// `path`, normalised: absolute, outside the state directory, and no other entry's file.
fn render_path(
    check: &mut Check,
    raw: &Spanned<RawRender>,
    label: &Label,
    renders: &mut Renders,
) -> PathBuf {
    let r = raw.get_ref();
    let written = PathBuf::from(&r.path);
    let path = normalize(&written);
    let resolved = resolve(&written);
    if !written.is_absolute() || written.file_name().is_none() {
        check.at(
            raw,
            label.key("path"),
            format!("{:?} must be an absolute file path", r.path),
        );
    } else {
        let line = check.line(raw.span().start);
        if let Some(state_dir) = &renders.state_dir
            && (resolved.starts_with(state_dir) || state_dir.starts_with(&resolved))
        {
            check.push(
                line,
                label.key("path"),
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
            check.push(line, label.key("path"), message);
        } else {
            renders.seen.insert(resolved, (label.to_string(), line));
        }
    }
    path
}

/// `mode`, octal: the owner reads, others get nothing; 0600 when not given.
fn render_mode(check: &mut Check, raw: &Spanned<RawRender>, label: &Label) -> u32 {
    let Some(m) = &raw.get_ref().mode else {
        return 0o600;
    };
    match u32::from_str_radix(m.trim_start_matches("0o"), 8) {
        Ok(mode) if mode & 0o007 == 0 && mode & 0o400 != 0 && mode <= 0o777 => mode,
        Ok(_) => {
            check.at(
                raw,
                label.key("mode"),
                format!("{m:?} must give the owner read access and others none, like \"0640\""),
            );
            0o600
        }
        Err(_) => {
            check.at(
                raw,
                label.key("mode"),
                format!("{m:?} is not an octal mode like \"0640\""),
            );
            0o600
        }
    }
}

/// `group`, a number or a name this host knows; `None` keeps pwrotd's own.
fn render_group(check: &mut Check, raw: &Spanned<RawRender>, label: &Label) -> Option<u32> {
    let g = raw.get_ref().group.as_ref()?;
    match g.parse::<u32>() {
        Ok(gid) => Some(gid),
        Err(_) => match nix::unistd::Group::from_name(g) {
            Ok(Some(group)) => Some(group.gid.as_raw()),
            _ => {
                check.at(
                    raw,
                    label.key("group"),
                    format!("no group named {g:?} on this host"),
                );
                None
            }
        },
    }
}
