//! When an account is due: `every` or `cron`, `jitter` and `retry_after_failure`, and the
//! `[defaults]` that accounts take them from.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::policy::policy;
use super::{Given, Label, PERIOD};
use crate::config::diagnostics::Check;
use crate::config::raw::{RawPolicy, RawSchedule};
use crate::config::{Cron, MAX_PERIOD, SHORT_PERIOD, Schedule};
use crate::password::Policy;

/// A schedule, with the shortest time between two of its rotations.
#[derive(Clone)]
pub(super) struct Timing {
    pub(super) schedule: Schedule,
    /// `every` itself, or a cron expression's shortest gap between firings.
    pub(super) period: Duration,
    /// The line of `every` or `cron`; 0 for the built-in default.
    pub(super) line: usize,
}

/// The schedule when neither `[defaults]` nor the account gives one.
pub(super) const DEFAULT_EVERY: Duration = Duration::from_secs(30 * 86_400);
/// `jitter` and `retry_after_failure` when nothing sets them, each at most the period.
pub(super) const DEFAULT_JITTER: Duration = Duration::from_secs(600);
pub(super) const DEFAULT_RETRY: Duration = Duration::from_secs(300);

/// `cron`, else `every`, else the built-in 30 days; `None` when refused (and reported). Both
/// given is the caller's to report. A period under an hour is a warning.
pub(super) fn schedule(check: &mut Check, s: &RawSchedule, label: &Label) -> Option<Timing> {
    if let Some(cron) = &s.cron {
        let key = label.key("cron");
        let line = check.line(cron.span().start);
        let parsed = match Cron::parse(cron.get_ref()) {
            Ok(parsed) => parsed,
            Err(e) => {
                check.push(
                    line,
                    key,
                    format!(
                        "{:?} is not a cron expression with the seconds field first, like \"0 0 3 * * Sun\": {e}",
                        cron.get_ref()
                    ),
                );
                return None;
            }
        };
        let period = match check.cron_period(&parsed) {
            Ok(period) => period,
            Err(why) => {
                check.push(line, key, format!("{:?} {why}", cron.get_ref()));
                return None;
            }
        };
        if period < SHORT_PERIOD {
            check.warn(
                line,
                key,
                format!(
                    "{:?} fires as often as every {}, under an hour: {SHORT_PERIOD_NOTE}",
                    cron.get_ref(),
                    humantime::format_duration(period)
                ),
            );
        }
        return Some(Timing {
            schedule: Schedule::Cron(Box::new(parsed)),
            period,
            line,
        });
    }
    let key = label.key("every");
    match check.duration(&s.every, &key, false, PERIOD) {
        None => Some(Timing {
            schedule: Schedule::Every(DEFAULT_EVERY),
            period: DEFAULT_EVERY,
            line: 0,
        }),
        Some((_, None)) => None,
        Some((line, Some(every))) => {
            if every < SHORT_PERIOD {
                check.warn(
                    line,
                    key,
                    format!(
                        "{} is under an hour: {SHORT_PERIOD_NOTE}",
                        humantime::format_duration(every)
                    ),
                );
            }
            Some(Timing {
                schedule: Schedule::Every(every),
                period: every,
                line,
            })
        }
    }
}

const SHORT_PERIOD_NOTE: &str = "each rotation hands applications a new password and spends \
     API calls; fine for a demo or a test, rarely meant in production";
impl Check {
    /// A cron expression's shortest gap between firings over its next few, or why it is
    /// refused: it never fires, stops firing within a few years (a year field), or leaves more
    /// than [`MAX_PERIOD`] between firings. Worked out once per expression.
    fn cron_period(&mut self, cron: &Cron) -> Result<Duration, String> {
        if let Some(known) = self.memo.crons.get(cron.expression()) {
            return known.clone();
        }
        let result = cron_period(cron, self.memo.now);
        self.memo
            .crons
            .insert(cron.expression().to_owned(), result.clone());
        result
    }
}

/// See [`Check::cron_period`].
fn cron_period(cron: &Cron, now: SystemTime) -> Result<Duration, String> {
    /// How far on the expression must still fire: past any year field written for today.
    const LATER: Duration = Duration::from_secs(5 * 31_557_600);
    /// How many gaps between firings are measured.
    const GAPS: usize = 8;
    let when = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    let gap = |from: SystemTime, to: SystemTime| to.duration_since(from).unwrap_or_default();
    let Some(first) = cron.next_after(now) else {
        return Err(
            "never fires: no date matches it (a day no month has, or a year gone by)".into(),
        );
    };
    if gap(now, first) > MAX_PERIOD {
        return Err(format!(
            "first fires at {}, more than 10 years from now",
            when(first)
        ));
    }
    let later = now + LATER;
    match cron.next_after(later) {
        None => {
            return Err(format!(
                "stops firing: it has no time after {}",
                when(later)
            ));
        }
        Some(next) if gap(later, next) > MAX_PERIOD => {
            return Err(format!(
                "has no time between {} and {}: more than 10 years",
                when(later),
                when(next)
            ));
        }
        Some(_) => {}
    }
    let (mut shortest, mut at) = (MAX_PERIOD, first);
    for _ in 0..GAPS {
        let Some(next) = cron.next_after(at) else {
            break;
        };
        if gap(at, next) > MAX_PERIOD {
            return Err(format!(
                "has no time between {} and {}: more than 10 years",
                when(at),
                when(next)
            ));
        }
        shortest = shortest.min(gap(at, next));
        at = next;
    }
    Ok(shortest)
}

/// `jitter` and `retry_after_failure` are at most the schedule's period: a catch-up spread
/// wider than the period runs into the next rotation, and a first retry after it is no retry.
/// `own_schedule` tells whether the period is the caller's own or inherited.
pub(super) fn within_period(
    check: &mut Check,
    label: &Label,
    timing: &Timing,
    own_schedule: bool,
    values: [(&str, Given, bool); 2],
) {
    let show = humantime::format_duration;
    for (name, given, own) in values {
        let Some((line, Some(value))) = given else {
            continue;
        };
        // Both inherited: `[defaults]` has reported it already.
        if value <= timing.period || !(own || own_schedule) {
            continue;
        }
        let period = match timing.schedule {
            Schedule::Every(_) => format!("the period, {}", show(timing.period)),
            Schedule::Cron(_) => format!(
                "the shortest gap between the cron's firings, {}",
                show(timing.period)
            ),
        };
        if own {
            check.push(
                line,
                label.key(name),
                format!("{} is longer than {period}", show(value)),
            );
        } else {
            check.push(
                timing.line,
                label.key(name),
                format!(
                    "the {name} of {} from [defaults] (line {line}) is longer than {period}; \
                     give this account a {name} of its own",
                    show(value)
                ),
            );
        }
    }
}

/// `[defaults]`, checked once: its problems are its own, under `defaults.` keys, whether or
/// not an account takes the value. Each account takes what it does not set itself.
pub(in crate::config) struct Defaults<'a> {
    pub(super) raw: &'a RawSchedule,
    /// `None` when refused (and reported).
    pub(super) timing: Option<Timing>,
    pub(super) jitter: Given,
    pub(super) retry_after_failure: Given,
    pub(super) keep_versions: usize,
    /// `None` when refused (and reported).
    pub(super) policy: Option<Arc<Policy>>,
}

/// `[defaults]`, its problems reported under `defaults.` keys.
pub(in crate::config) fn validate_defaults<'a>(
    check: &mut Check,
    raw: &'a RawSchedule,
) -> Defaults<'a> {
    let label = Label::new("defaults");
    if let Some(cron) = &raw.cron
        && raw.every.is_some()
    {
        check.at(cron, label.key("cron"), "give `every` or `cron`, not both");
    }
    let timing = schedule(check, raw, &label);
    let jitter = check.duration(&raw.jitter, &label.key("jitter"), true, PERIOD);
    let retry_after_failure = check.duration(
        &raw.retry_after_failure,
        &label.key("retry_after_failure"),
        false,
        PERIOD,
    );
    if let Some(timing) = &timing {
        within_period(
            check,
            &label,
            timing,
            true,
            [
                ("jitter", jitter, true),
                ("retry_after_failure", retry_after_failure, true),
            ],
        );
    }
    let keep_versions =
        check.count(&raw.keep_versions, &label.key("keep_versions"), 0..=100, 5) as usize;
    let policy = policy(
        check,
        &RawPolicy::default(),
        &raw.password,
        &label.table("password"),
        0,
        false,
    );
    Defaults {
        raw,
        timing,
        jitter,
        retry_after_failure,
        keep_versions,
        policy,
    }
}
