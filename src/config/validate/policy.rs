//! The password policy, key by key from the account or else `[defaults]`; accounts with the
//! same policy share one.

use std::sync::Arc;

use super::Label;
use crate::config::diagnostics::Check;
use crate::config::raw::RawPolicy;
use crate::password::{self, Class, Policy};

/// The password policy, key by key from `own` or else `default`. With `inherited_reported`,
/// `default` was refused on its own already, so problems with the keys it gives are not
/// reported again.
pub(super) fn policy(
    check: &mut Check,
    own: &RawPolicy,
    default: &RawPolicy,
    label: &Label,
    line: usize,
    inherited_reported: bool,
) -> Option<Arc<Policy>> {
    let reported = |name: &str| {
        inherited_reported
            && match name {
                "length" => own.length.is_none(),
                "require" => own.require.is_none(),
                "special" => own.special.is_none(),
                _ => own.exclude.is_none(),
            }
    };
    let length = own.length.as_ref().or(default.length.as_ref());
    let require = own.require.as_ref().or(default.require.as_ref());
    let special = own.special.as_ref().or(default.special.as_ref());
    let exclude = own.exclude.as_ref().or(default.exclude.as_ref());
    let (special_span, exclude_span) = (special.map(|v| v.span()), exclude.map(|v| v.span()));
    let line_of = |check: &Check, name: &str| {
        let span = match name {
            "length" => length.map(|v| v.span()),
            "require" => require.map(|v| v.span()),
            "special" => special_span.clone(),
            _ => exclude_span.clone(),
        };
        span.map_or(line, |s| check.line(s.start))
    };
    let mut classes = Vec::new();
    if let Some(require) = require {
        for name in require.get_ref() {
            match Class::ALL.into_iter().find(|c| c.name() == name) {
                Some(c) => classes.push(c),
                None if reported("require") => {}
                None => check.at(
                    require,
                    label.key("require"),
                    format!("{name:?} is not one of upper, lower, digit, special"),
                ),
            }
        }
    } else {
        classes.extend(Class::ALL);
    }
    let length = length.map_or(password::DEFAULT_LENGTH as i64, |l| *l.get_ref());
    let length = usize::try_from(length).unwrap_or(0);
    let special = special.map_or(password::SPECIALS, |s| s.get_ref());
    let exclude = exclude.map_or("", |s| s.get_ref());
    let cache_key = (
        length,
        classes.clone(),
        special.to_owned(),
        exclude.to_owned(),
    );
    if let Some(shared) = check.memo.policies.get(&cache_key) {
        return Some(shared.clone());
    }
    match Policy::new(length, &classes, special, exclude) {
        Ok(p) => {
            let shared = Arc::new(p);
            check.memo.policies.insert(cache_key, shared.clone());
            Some(shared)
        }
        Err(errors) => {
            for e in errors.into_iter().filter(|e| !reported(e.key)) {
                let line = line_of(check, e.key);
                check.push(line, label.key(e.key), e.message);
            }
            None
        }
    }
}
