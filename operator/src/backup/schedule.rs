//! When scheduled backups run (a five-field cron expression, in UTC) and which backups a
//! retention policy keeps.

use super::manifest::Manifest;

/// A cron schedule: minute, hour, day of month, month, day of week (0 or 7 is Sunday).
/// Fields take `*`, numbers, ranges `a-b`, lists `a,b` and steps `*/n` or `a-b/n`. As in
/// cron, when both day fields are restricted a day matching either runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days: Vec<bool>,
    months: Vec<bool>,
    weekdays: Vec<bool>,
    days_any: bool,
    weekdays_any: bool,
    text: String,
}

fn field(text: &str, min: u32, max: u32, what: &str) -> Result<(Vec<bool>, bool), String> {
    let mut set = vec![false; max as usize + 1];
    let bad = |detail: &str| format!("the {what} field `{text}` {detail}");
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| bad("has a step that is not a positive number"))?,
            ),
            None => (part, 1),
        };
        let (from, to) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = a.parse().map_err(|_| bad("is not a number or range"))?;
            let b = b.parse().map_err(|_| bad("is not a number or range"))?;
            (a, b)
        } else {
            let a: u32 = range.parse().map_err(|_| bad("is not a number or range"))?;
            (a, if part.contains('/') { max } else { a })
        };
        if from < min || to > max || from > to {
            return Err(bad(&format!("is outside {min}-{max}")));
        }
        for v in (from..=to).step_by(step as usize) {
            set[v as usize] = true;
        }
    }
    // `*/n` in a day field counts as `*` for the either-day rule, as in cron.
    Ok((set, text == "*" || text.starts_with("*/")))
}

impl Schedule {
    /// Parses and checks that the schedule runs at all (`0 0 31 2 *` never does).
    pub fn parse(text: &str) -> Result<Self, String> {
        let schedule = Self::parse_fields(text)?;
        // 2026-01-01: four years from any date hold every day a schedule can name.
        if schedule.next_after(1_767_225_600).is_none() {
            return Err(format!("`{text}` names no time that exists"));
        }
        Ok(schedule)
    }

    fn parse_fields(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [mi, h, dom, mon, dow] = parts[..] else {
            return Err(format!(
                "`{text}` is not a cron schedule: five fields (minute hour day-of-month month \
                 day-of-week), such as `0 3 * * *`"
            ));
        };
        let (mut weekdays, weekdays_any) = field(dow, 0, 7, "day-of-week")?;
        if weekdays[7] {
            weekdays[0] = true;
        }
        let (days, days_any) = field(dom, 1, 31, "day-of-month")?;
        Ok(Self {
            minutes: field(mi, 0, 59, "minute")?.0,
            hours: field(h, 0, 23, "hour")?.0,
            days,
            months: field(mon, 1, 12, "month")?.0,
            weekdays,
            days_any,
            weekdays_any,
            text: text.to_string(),
        })
    }

    fn matches(&self, unix_minute: u64) -> bool {
        let secs = unix_minute * 60;
        let (_, month, day, hour, minute, _) = super::sigv4::civil(secs);
        // 1970-01-01 was a Thursday.
        let weekday = ((secs / 86_400 + 4) % 7) as usize;
        let day_ok = match (self.days_any, self.weekdays_any) {
            (true, true) => true,
            (false, true) => self.days[day as usize],
            (true, false) => self.weekdays[weekday],
            (false, false) => self.days[day as usize] || self.weekdays[weekday],
        };
        self.minutes[minute as usize]
            && self.hours[hour as usize]
            && self.months[month as usize]
            && day_ok
    }

    /// The first minute strictly after `unix_secs` that the schedule names, as Unix seconds;
    /// `None` if none within four years (such as `0 0 31 2 *`).
    pub fn next_after(&self, unix_secs: u64) -> Option<u64> {
        let first = unix_secs / 60 + 1;
        (first..first + 4 * 366 * 24 * 60)
            .find(|m| self.matches(*m))
            .map(|m| m * 60)
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Of one cluster's backups, newest first: those a policy of the newest `keep` and every
/// one younger than `keep_days` no longer keeps. The newest is always kept.
pub fn expired(
    newest_first: &[Manifest],
    keep: Option<u32>,
    keep_days: Option<u32>,
    now_unix_ms: u64,
) -> Vec<&Manifest> {
    if keep.is_none() && keep_days.is_none() {
        return Vec::new();
    }
    newest_first
        .iter()
        .enumerate()
        .filter(|(i, m)| {
            let by_count = keep.is_some_and(|k| *i < k.max(1) as usize);
            let by_age = keep_days.is_some_and(|d| {
                now_unix_ms.saturating_sub(m.finished_unix_ms) < u64::from(d) * 86_400_000
            });
            *i > 0 && !by_count && !by_age
        })
        .map(|(_, m)| m)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;
    /// 2026-12-07T00:00:00Z, a Monday.
    const MONDAY: u64 = 1_796_601_600;

    #[test]
    fn schedules_name_the_next_minute_they_match() {
        let daily = Schedule::parse("0 3 * * *").unwrap();
        assert_eq!(daily.next_after(MONDAY), Some(MONDAY + 3 * 3600));
        assert_eq!(
            daily.next_after(MONDAY + 3 * 3600),
            Some(MONDAY + DAY + 3 * 3600)
        );
        let every_15 = Schedule::parse("*/15 * * * *").unwrap();
        assert_eq!(every_15.next_after(MONDAY + 61), Some(MONDAY + 15 * 60));
        // Sundays (0 or 7) at 01:30.
        let sunday = Schedule::parse("30 1 * * 7").unwrap();
        assert_eq!(sunday.next_after(MONDAY), Some(MONDAY + 6 * DAY + 5400));
        // Either day field matches when both are restricted: the 10th, or Wednesdays.
        let either = Schedule::parse("0 0 10 * 3").unwrap();
        assert_eq!(either.next_after(MONDAY), Some(MONDAY + 2 * DAY));
        assert!(
            Schedule::parse("0 0 31 2 *")
                .unwrap_err()
                .contains("names no time")
        );
        // `*/2` in the day of month is as `*`: Wednesdays only.
        let weekly = Schedule::parse("0 0 */2 * 3").unwrap();
        assert_eq!(weekly.next_after(MONDAY), Some(MONDAY + 2 * DAY));
        assert_eq!(weekly.next_after(MONDAY + 2 * DAY), Some(MONDAY + 9 * DAY));
        let list = Schedule::parse("5,10-12/2 * * * *").unwrap();
        assert_eq!(list.next_after(MONDAY + 5 * 60), Some(MONDAY + 10 * 60));
        assert_eq!(list.next_after(MONDAY + 10 * 60), Some(MONDAY + 12 * 60));
    }

    #[test]
    fn bad_schedules_say_which_field() {
        for (text, says) in [
            ("0 3 * *", "five fields"),
            ("61 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("* * 0 * *", "day-of-month"),
            ("* * * 13 *", "month"),
            ("* * * * 8", "day-of-week"),
            ("*/0 * * * *", "step"),
            ("a * * * *", "minute"),
        ] {
            let e = Schedule::parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    fn backup(id: &str, finished_unix_ms: u64) -> Manifest {
        crate::backup::manifest::fixture(id, "", finished_unix_ms)
    }

    #[test]
    fn retention_keeps_the_newest_n_and_the_young_and_always_one() {
        let day = DAY * 1000;
        let now = 10 * day;
        let all = [
            backup("d9", 9 * day),
            backup("d8", 8 * day),
            backup("d5", 5 * day),
            backup("d1", day),
        ];
        let ids = |v: Vec<&Manifest>| v.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(expired(&all, Some(2), None, now)), ["d5", "d1"]);
        assert_eq!(ids(expired(&all, None, Some(3), now)), ["d5", "d1"]);
        assert_eq!(ids(expired(&all, Some(3), Some(1), now)), ["d1"]);
        assert_eq!(ids(expired(&all, Some(1), Some(6), now)), ["d1"]);
        assert!(expired(&all, None, None, now).is_empty());
        // Even a policy that keeps nothing by age keeps the newest.
        assert_eq!(ids(expired(&all, None, Some(0), now)), ["d8", "d5", "d1"]);
    }
}
