//! The binary log archive: the primary's transactions stored as numbered segments beside the
//! full backups (`binlog/<cluster>/`), each a small binary log file with a manifest written
//! after it, and the decisions made from their manifests: where archiving resumes after a
//! change of primary, and which transactions a point-in-time restore replays.
//!
//! A segment records the position it continues from (`after`). After a failover the archive
//! goes on from the new primary at the last position that primary holds, so a segment may
//! start before the end of the one before it: the older segment's transactions past that
//! point never reached the new primary (an orphaned tail) and are not replayed.

use lagless_core::gtid::{MariadbGtid, MariadbPosition};
use serde::{Deserialize, Serialize};

use super::location::Location;
use super::manifest::rfc3339;

pub const SEGMENT_FORMAT: u32 = 1;
const SEGMENT_SUFFIX: &str = ".binlog";
const MANIFEST_SUFFIX: &str = ".binlog.json";
/// The archive's high-water mark: written over as it advances.
pub const STATE_NAME: &str = "archive.json";

/// Where a cluster's archive lives under a backup destination.
pub fn location(destination: &Location, cluster: &str) -> Location {
    match destination {
        Location::Dir(path) => Location::Dir(path.join("binlog").join(cluster)),
        Location::S3 { bucket, prefix } => Location::S3 {
            bucket: bucket.clone(),
            prefix: [prefix.as_str(), "binlog", cluster]
                .iter()
                .filter(|p| !p.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("/"),
        },
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Segment {
    pub format: u32,
    pub cluster: String,
    /// Segments are numbered from 1 in the order they were written.
    pub sequence: u64,
    /// The member the transactions were read from (the primary then).
    pub member: String,
    /// The position this segment continues from.
    pub after: String,
    /// The position after its last transaction.
    pub last: String,
    pub transactions: u64,
    /// The first and last transaction's time (whole seconds, as the binary log has them).
    pub first_unix: u64,
    pub last_unix: u64,
    /// When it was stored.
    pub stored_unix_ms: u64,
    /// Every transaction whose time is before this moment is in this segment or an earlier
    /// one (the archive follows the primary as it writes; a transaction half read when the
    /// segment was cut holds it back to that transaction's time).
    #[serde(default)]
    pub covered_unix_ms: u64,
    pub bytes: u64,
    pub sha256: String,
}

impl Segment {
    pub fn object(&self) -> String {
        segment_name(self.sequence)
    }

    pub fn after(&self) -> MariadbPosition {
        MariadbPosition::parse(&self.after).unwrap_or_default()
    }

    pub fn last(&self) -> MariadbPosition {
        MariadbPosition::parse(&self.last).unwrap_or_default()
    }
}

/// The archive's newest state, written over as it advances (the segments are the record;
/// this only says how far they reach when nothing was written for a while).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveState {
    pub position: String,
    /// Every transaction committed on the primary before this moment is archived.
    pub covered_unix_ms: u64,
    pub covered_at: String,
}

impl ArchiveState {
    pub fn new(position: &MariadbPosition, covered_unix_ms: u64) -> Self {
        Self {
            position: position.to_string(),
            covered_unix_ms,
            covered_at: rfc3339(covered_unix_ms),
        }
    }
}

pub fn segment_name(sequence: u64) -> String {
    format!("{sequence:010}{SEGMENT_SUFFIX}")
}

pub fn manifest_name(sequence: u64) -> String {
    format!("{sequence:010}{MANIFEST_SUFFIX}")
}

/// The sequence numbers of the segment manifests among `names`, in order.
pub fn sequences<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<u64> {
    let mut out: Vec<u64> = names
        .into_iter()
        .filter_map(|n| n.strip_suffix(MANIFEST_SUFFIX)?.parse().ok())
        .collect();
    out.sort_unstable();
    out
}

/// Where archiving resumes on `primary` (its `@@gtid_binlog_state`, every server's last GTID
/// per domain) after the archive reached `archived`: there, if the primary holds it; else at
/// the last of the archived server's transactions the primary holds (the archive's tail past
/// it was never replicated, and the next segment's `after` marks it orphaned). `None` if the
/// primary holds none of it (its binary logs were reset): archiving starts again where the
/// primary's logs begin, and the gap is the restore's to find.
pub fn resume_at(
    archived: &MariadbPosition,
    primary_state: &[MariadbGtid],
) -> Option<MariadbPosition> {
    let mut at = MariadbPosition::default();
    for gtid in archived.gtids() {
        // The binlog state keeps each server's last GTID per domain: the primary holds the
        // archived one if it has as much from the same server.
        let same_server = primary_state
            .iter()
            .find(|g| g.domain == gtid.domain && g.server_id == gtid.server_id)?;
        at.insert(if same_server.seq >= gtid.seq {
            *gtid
        } else {
            *same_server
        });
    }
    Some(at)
}

/// The segments no restore from `oldest` (the oldest backup kept) or a later backup needs:
/// those before the last one that continues from a position `oldest` holds.
pub fn prunable(segments: &[Segment], oldest: &MariadbPosition) -> Vec<u64> {
    let Some(keep_from) = segments.iter().rposition(|s| oldest.contains(&s.after())) else {
        return Vec::new();
    };
    segments[..keep_from].iter().map(|s| s.sequence).collect()
}

/// A segment of cluster `shop` for tests.
#[cfg(test)]
pub(crate) fn fixture(sequence: u64, after: &str, last: &str) -> Segment {
    Segment {
        format: SEGMENT_FORMAT,
        cluster: "shop".into(),
        sequence,
        member: "shop-0".into(),
        after: after.into(),
        last: last.into(),
        transactions: 1,
        first_unix: 0,
        last_unix: 0,
        stored_unix_ms: 0,
        covered_unix_ms: 0,
        bytes: 0,
        sha256: String::new(),
    }
}

/// What a restore replays up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every transaction up to and including this second (UTC), and none after the first
    /// one past it.
    Time(u64),
    /// Up to and including these GTIDs.
    Gtid(MariadbPosition),
}

impl Target {
    /// `2026-12-07T06:32:14Z`, `2026-12-07 06:32:14` (UTC) or a GTID position such as
    /// `0-1-123`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(secs) = parse_utc(text) {
            return Ok(Self::Time(secs));
        }
        match MariadbPosition::parse(text) {
            Ok(p) if !p.is_empty() => Ok(Self::Gtid(p)),
            _ => Err(format!(
                "`{text}` is neither a time (2026-12-07T06:32:14Z, or `2026-12-07 06:32:14` \
                 in UTC; whole seconds) nor a GTID position (0-1-123)"
            )),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Time(secs) => {
                let text = rfc3339(secs * 1000);
                write!(
                    f,
                    "{}Z",
                    text.trim_end_matches("Z").trim_end_matches(".000")
                )
            }
            Self::Gtid(p) => write!(f, "GTID {p}"),
        }
    }
}

/// `YYYY-MM-DD[T ]HH:MM:SS[Z]` as Unix seconds.
fn parse_utc(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z').unwrap_or(text);
    let b = text.as_bytes();
    if b.len() != 19 || !matches!(b[10], b'T' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days_in_month = match mo {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=12).contains(&mo) || !(1..=days_in_month).contains(&d) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = y as i64 - i64::from(mo <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + (h * 3600 + mi * 60 + s) as i64).ok()
}

/// Of one segment: replay its transactions that are past the position reached, up to
/// `until` (exclusive of anything past it) if a later segment resumed before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentUse {
    pub sequence: u64,
    pub until: Option<MariadbPosition>,
}

/// Per domain, the lowest position any of `later` continues from: a segment's transactions
/// past it were orphaned by a change of primary (however many segments that tail spans).
fn resumed_from(later: &[Segment]) -> Option<MariadbPosition> {
    let mut lowest: Option<MariadbPosition> = None;
    for segment in later {
        let after = segment.after();
        lowest = Some(match lowest {
            None => after,
            Some(low) => {
                let mut min = MariadbPosition::default();
                for g in low.gtids() {
                    // A domain a later segment does not name does not bound it.
                    match after.get(g.domain) {
                        Some(a) if a.seq < g.seq => min.insert(*a),
                        _ => min.insert(*g),
                    }
                }
                for a in after.gtids() {
                    if low.get(a.domain).is_none() {
                        min.insert(*a);
                    }
                }
                min
            }
        });
    }
    lowest
}

/// The segments a restore from `base` (the backup's position) reads, in order, until
/// `enough` says the target is reached. Fails if the archive has a gap before that.
pub fn segments_to_read(
    segments: &[Segment],
    base: &MariadbPosition,
    enough: impl Fn(&Segment, &MariadbPosition) -> bool,
) -> Result<Vec<SegmentUse>, String> {
    let mut out = Vec::new();
    let mut reached = base.clone();
    for (i, segment) in segments.iter().enumerate() {
        let last = segment.last();
        let until = resumed_from(&segments[i + 1..])
            .map(|low| {
                let mut cut = MariadbPosition::default();
                for g in last.gtids() {
                    match low.get(g.domain) {
                        Some(l) if l.seq < g.seq => cut.insert(*l),
                        _ => cut.insert(*g),
                    }
                }
                cut
            })
            .filter(|cut| !cut.contains(&last));
        let end = until.clone().unwrap_or(last);
        if reached.contains(&end) {
            continue;
        }
        // A segment that starts past the target is not needed, nor any after it.
        if enough(segment, &reached) {
            break;
        }
        if !reached.contains(&segment.after()) {
            return Err(format!(
                "the archive has a gap: it goes on at {} (segment {}), but the restore \
                 reached only {reached}",
                segment.after, segment.sequence
            ));
        }
        reached = end;
        out.push(SegmentUse {
            sequence: segment.sequence,
            until,
        });
    }
    Ok(out)
}

/// For [`segments_to_read`]: whether `target` is met before `segment` (by the position
/// `reached` before it, or by its first transaction's time).
pub fn met_before(target: &Target, segment: &Segment, reached: &MariadbPosition) -> bool {
    match target {
        Target::Time(t) => segment.first_unix > *t,
        Target::Gtid(p) => reached.contains(p),
    }
}

/// Whether a transaction is replayed, and whether the replay stops at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    Replay,
    /// Already in the data (the backup, or an earlier segment).
    Skip,
    /// An orphaned tail: nothing after it in this segment is replayed.
    Stop,
    /// Past the target: the replay is complete.
    Done,
    /// The same sequence number from another server than the one the data holds: two
    /// histories meet here, and nothing may be replayed.
    Diverged,
}

/// The decision for one transaction of a segment being replayed.
pub fn take(
    gtid: &MariadbGtid,
    timestamp: u64,
    reached: &MariadbPosition,
    until: Option<&MariadbPosition>,
    target: &Target,
) -> Take {
    let one = position_of(gtid);
    if let Some(held) = reached.get(gtid.domain)
        && held.seq == gtid.seq
        && held.server_id != gtid.server_id
    {
        return Take::Diverged;
    }
    if reached.contains(&one) {
        return Take::Skip;
    }
    if until.is_some_and(|u| !u.contains(&one)) {
        return Take::Stop;
    }
    match target {
        Target::Time(t) if timestamp > *t => Take::Done,
        Target::Gtid(p) if !p.contains(&one) => Take::Done,
        _ => Take::Replay,
    }
}

pub fn position_of(gtid: &MariadbGtid) -> MariadbPosition {
    let mut p = MariadbPosition::default();
    p.insert(*gtid);
    p
}

/// Whether the archive reaches `target`: a time it covers (stored, with a second's margin for
/// delivery), or GTIDs it holds.
pub fn reaches(
    target: &Target,
    archived: &MariadbPosition,
    covered_unix_ms: u64,
) -> Result<(), String> {
    match target {
        Target::Time(t) if covered_unix_ms < (t + 2) * 1000 => Err(format!(
            "the archive covers only up to {} ({}): choose an earlier time, or wait",
            rfc3339(covered_unix_ms.saturating_sub(1000)),
            archived
        )),
        Target::Gtid(p) if !archived.contains(p) => Err(format!(
            "the archive reaches GTID position {archived}, not {p}"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(text: &str) -> MariadbPosition {
        MariadbPosition::parse(text).unwrap()
    }

    fn segment(sequence: u64, after: &str, last: &str) -> Segment {
        fixture(sequence, after, last)
    }

    fn segments_to_read_all(
        segments: &[Segment],
        base: &MariadbPosition,
    ) -> Result<Vec<SegmentUse>, String> {
        segments_to_read(segments, base, |_, _| false)
    }

    #[test]
    fn an_orphaned_tail_over_several_segments_is_cut_in_each() {
        // 0-1-21 and 0-1-22 were stored in two segments; the new primary had only 0-1-20.
        let all = [
            segment(1, "0-1-10", "0-1-20"),
            segment(2, "0-1-20", "0-1-21"),
            segment(3, "0-1-21", "0-1-22"),
            segment(4, "0-1-20", "0-2-23"),
        ];
        let read = segments_to_read_all(&all, &pos("0-1-10")).unwrap();
        assert_eq!(
            read.iter()
                .map(|u| (u.sequence, u.until.clone()))
                .collect::<Vec<_>>(),
            vec![(1, None), (4, None)],
            "segments 2 and 3 hold only the orphaned tail"
        );
        let g = |server_id, seq| MariadbGtid {
            domain: 0,
            server_id,
            seq,
        };
        // Had the orphan been replayed, the new history's 21 would meet it.
        assert_eq!(
            take(&g(2, 21), 0, &pos("0-1-21"), None, &Target::Time(9)),
            Take::Diverged
        );
        // Reading stops where the target is met.
        let enough = |s: &Segment, _: &MariadbPosition| s.sequence >= 4;
        assert_eq!(
            segments_to_read(&all, &pos("0-1-10"), enough)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn a_gap_past_the_target_does_not_matter() {
        let all = [segment(1, "", "0-1-10"), segment(2, "0-1-40", "0-1-50")];
        let before_gap = |s: &Segment, _: &MariadbPosition| s.sequence == 2;
        assert!(segments_to_read(&all, &pos("0-1-5"), before_gap).is_ok());
    }

    #[test]
    fn a_restore_reads_from_the_segment_holding_the_backups_position_on() {
        let all = [
            segment(1, "", "0-1-10"),
            segment(2, "0-1-10", "0-1-20"),
            segment(3, "0-1-20", "0-1-30"),
        ];
        let read = segments_to_read_all(&all, &pos("0-1-15")).unwrap();
        assert_eq!(
            read.iter().map(|u| u.sequence).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert!(read.iter().all(|u| u.until.is_none()));
        assert_eq!(segments_to_read_all(&all, &pos("0-1-30")).unwrap(), vec![]);
    }

    #[test]
    fn an_orphaned_tail_is_cut_where_the_new_primary_resumed() {
        // 0-1-21 and 0-1-22 reached the archive but not the new primary, which went on
        // from 0-1-20 as server 2.
        let all = [segment(1, "", "0-1-22"), segment(2, "0-1-20", "0-2-30")];
        let read = segments_to_read_all(&all, &pos("0-1-5")).unwrap();
        assert_eq!(read[0].until, Some(pos("0-1-20")));
        assert_eq!(read[1].until, None);
        let orphan = MariadbGtid {
            domain: 0,
            server_id: 1,
            seq: 21,
        };
        assert_eq!(
            take(
                &orphan,
                0,
                &pos("0-1-20"),
                read[0].until.as_ref(),
                &Target::Time(9)
            ),
            Take::Stop
        );
    }

    #[test]
    fn segments_before_the_oldest_backup_are_pruned() {
        let all = [
            segment(1, "", "0-1-10"),
            segment(2, "0-1-10", "0-1-20"),
            segment(3, "0-1-20", "0-1-30"),
        ];
        assert_eq!(prunable(&all, &pos("0-1-15")), vec![1]);
        assert_eq!(prunable(&all, &pos("0-1-20")), vec![1, 2]);
        assert!(prunable(&all, &pos("0-1-5")).is_empty());
        // What is left still restores from that backup.
        let left = &all[1..];
        assert!(segments_to_read_all(left, &pos("0-1-15")).is_ok());
    }

    #[test]
    fn a_gap_is_refused() {
        let all = [segment(1, "", "0-1-10"), segment(2, "0-1-40", "0-1-50")];
        let e = segments_to_read_all(&all, &pos("0-1-5")).unwrap_err();
        assert!(e.contains("gap"), "{e}");
        // An archive begun after the backup's position is a gap too.
        let late = [segment(1, "0-1-8", "0-1-10")];
        assert!(segments_to_read_all(&late, &pos("0-1-5")).is_err());
        assert!(segments_to_read_all(&late, &pos("0-1-8")).is_ok());
    }

    #[test]
    fn transactions_replay_up_to_the_target_and_skip_what_is_there() {
        let g = |seq| MariadbGtid {
            domain: 0,
            server_id: 1,
            seq,
        };
        let reached = pos("0-1-10");
        assert_eq!(take(&g(9), 5, &reached, None, &Target::Time(9)), Take::Skip);
        assert_eq!(
            take(&g(11), 9, &reached, None, &Target::Time(9)),
            Take::Replay
        );
        assert_eq!(
            take(&g(11), 10, &reached, None, &Target::Time(9)),
            Take::Done
        );
        let upto = Target::Gtid(pos("0-1-11"));
        assert_eq!(take(&g(11), 99, &reached, None, &upto), Take::Replay);
        assert_eq!(take(&g(12), 0, &pos("0-1-11"), None, &upto), Take::Done);
    }

    #[test]
    fn archiving_resumes_where_the_new_primary_holds_the_archive() {
        let g = |server_id, seq| MariadbGtid {
            domain: 0,
            server_id,
            seq,
        };
        // The new primary has everything archived.
        assert_eq!(resume_at(&pos("0-1-20"), &[g(1, 20)]), Some(pos("0-1-20")));
        // It went on writing as server 2 past the archive.
        assert_eq!(
            resume_at(&pos("0-1-20"), &[g(1, 20), g(2, 25)]),
            Some(pos("0-1-20"))
        );
        // The archive has 21 and 22 of server 1, which the new primary never got.
        assert_eq!(
            resume_at(&pos("0-1-22"), &[g(1, 20), g(2, 23)]),
            Some(pos("0-1-20"))
        );
        // Nothing of server 1 there at all.
        assert_eq!(resume_at(&pos("0-1-22"), &[g(2, 3)]), None);
        assert_eq!(
            resume_at(&MariadbPosition::default(), &[]),
            Some(MariadbPosition::default())
        );
    }

    #[test]
    fn targets_are_times_in_utc_or_gtids() {
        assert_eq!(
            Target::parse("2026-12-07T06:32:14Z"),
            Ok(Target::Time(1_796_625_134))
        );
        assert!(Target::parse("2028-02-29 00:00:00").is_ok());
        assert_eq!(
            Target::parse("2026-12-07 06:32:14"),
            Ok(Target::Time(1_796_625_134))
        );
        assert_eq!(
            Target::Time(1_796_625_134).to_string(),
            "2026-12-07T06:32:14Z"
        );
        assert_eq!(Target::parse("0-1-5"), Ok(Target::Gtid(pos("0-1-5"))));
        for bad in [
            "",
            "yesterday",
            "2026-13-01 00:00:00",
            "2026-12-07 06:32:14.5",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_time_is_reached_once_stored_with_a_margin() {
        let t = Target::Time(100);
        assert!(reaches(&t, &pos("0-1-1"), 101_999).is_err());
        assert!(reaches(&t, &pos("0-1-1"), 102_000).is_ok());
        assert!(reaches(&Target::Gtid(pos("0-1-2")), &pos("0-1-1"), 0).is_err());
        assert_eq!(
            sequences(["0000000002.binlog.json", "0000000001.binlog.json", "x.json"]),
            vec![1, 2]
        );
    }
}
