//! GTID positions of MariaDB and MySQL, read exactly, with the algebra the router needs to
//! decide whether a replica has applied everything a read must see.
//!
//! MariaDB positions (`@@gtid_binlog_pos`, `@@gtid_slave_pos`, `@@gtid_current_pos`, the
//! `last_gtid` session variable) hold one `domain-server-seq` per replication domain. Under
//! `gtid_strict_mode` sequence numbers only grow within a domain, so one number per domain is
//! enough to order positions; the server id is carried along but does not order.
//!
//! MySQL sets (`@@gtid_executed`, `session_track_gtids=OWN_GTID`) are sets of
//! `uuid[:tag]:number`, kept here as sorted, merged interval lists per (uuid, tag).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::topology::Flavor;

/// The largest MySQL transaction number accepted: the server stores them as signed 64-bit.
const MAX_GNO: u64 = i64::MAX as u64;
/// The longest MySQL 8.4 GTID tag.
const MAX_TAG_LEN: usize = 32;
/// How much of a bad input an error message quotes, so a huge value cannot flood the logs.
const QUOTE_LIMIT: usize = 80;

/// Why a GTID string was rejected. Each message quotes the offending text and says what was
/// expected instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GtidParseError {
    #[error(
        "invalid MariaDB GTID {entry:?}: expected domain-server-seq, three decimal numbers such \
         as 0-1-100"
    )]
    MariadbSyntax { entry: String },
    #[error("invalid MariaDB GTID {entry:?}: the {part} must be at most {max}")]
    MariadbRange {
        entry: String,
        part: &'static str,
        max: u64,
    },
    #[error(
        "invalid server UUID {found:?} in MySQL GTID set entry {entry:?}: expected 32 hex digits \
         grouped 8-4-4-4-12, such as 3e11fa47-71ca-11e1-9e33-c80aa9429562"
    )]
    Uuid { entry: String, found: String },
    #[error(
        "invalid GTID tag {found:?} in MySQL GTID set entry {entry:?}: expected a letter or \
         underscore followed by at most 31 letters, digits or underscores"
    )]
    Tag { entry: String, found: String },
    #[error(
        "invalid transaction interval {found:?} in MySQL GTID set entry {entry:?}: expected N or \
         A-B with 1 <= A <= B <= {max}",
        max = MAX_GNO
    )]
    Interval { entry: String, found: String },
    #[error(
        "MySQL GTID set entry {entry:?} has no transaction numbers after {after:?}: expected an \
         interval such as 1-5"
    )]
    MissingInterval { entry: String, after: String },
}

/// A GTID position of either flavour: what the rest of the proxy passes around.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GtidSet {
    Mariadb(MariadbPosition),
    Mysql(MysqlGtidSet),
}

impl GtidSet {
    /// Parses a position as the given flavour's server prints it.
    pub fn parse(flavor: Flavor, text: &str) -> Result<Self, GtidParseError> {
        Ok(match flavor {
            Flavor::Mariadb => Self::Mariadb(MariadbPosition::parse(text)?),
            Flavor::Mysql => Self::Mysql(MysqlGtidSet::parse(text)?),
        })
    }

    /// The position before any transaction.
    pub fn empty(flavor: Flavor) -> Self {
        match flavor {
            Flavor::Mariadb => Self::Mariadb(MariadbPosition::default()),
            Flavor::Mysql => Self::Mysql(MysqlGtidSet::default()),
        }
    }

    pub fn flavor(&self) -> Flavor {
        match self {
            Self::Mariadb(_) => Flavor::Mariadb,
            Self::Mysql(_) => Flavor::Mysql,
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Self::Mariadb(pos) => pos.is_empty(),
            Self::Mysql(set) => set.is_empty(),
        }
    }

    /// Whether a server at `self` has applied everything in `other`; always false across
    /// flavours.
    pub fn contains(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Mariadb(ours), Self::Mariadb(theirs)) => ours.contains(theirs),
            (Self::Mysql(ours), Self::Mysql(theirs)) => ours.contains(theirs),
            _ => false,
        }
    }

    /// Adds everything in `other` to `self`. Across flavours this does nothing: that can only
    /// come from a mixed-up caller, and since [`GtidSet::contains`] is false across flavours
    /// the unchanged position still never makes a server look more caught up than it is.
    pub fn union(&mut self, other: &Self) {
        match (self, other) {
            (Self::Mariadb(ours), Self::Mariadb(theirs)) => ours.union(theirs),
            (Self::Mysql(ours), Self::Mysql(theirs)) => ours.union(theirs),
            _ => {}
        }
    }

    /// How many transactions of `other` a server at `self` has yet to apply (saturating at
    /// `u64::MAX`); `None` across flavours.
    pub fn transactions_behind(&self, other: &Self) -> Option<u64> {
        match (self, other) {
            (Self::Mariadb(ours), Self::Mariadb(theirs)) => Some(ours.transactions_behind(theirs)),
            (Self::Mysql(ours), Self::Mysql(theirs)) => Some(ours.transactions_behind(theirs)),
            _ => None,
        }
    }
}

/// The canonical form, which the server accepts back (e.g. in `MASTER_GTID_WAIT()` or
/// `WAIT_FOR_EXECUTED_GTID_SET()`).
impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mariadb(pos) => pos.fmt(f),
            Self::Mysql(set) => set.fmt(f),
        }
    }
}

/// Serialises as the canonical string. There is no `Deserialize`: the empty string reads the
/// same in both flavours, so the flavour has to come from elsewhere ([`GtidSet::parse`]).
impl Serialize for GtidSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

// ---------------------------------------------------------------------------------------------
// MariaDB

/// One MariaDB GTID, `domain-server-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MariadbGtid {
    pub domain: u32,
    pub server_id: u32,
    pub seq: u64,
}

impl MariadbGtid {
    /// Whether a position should keep `self` over `other` for their shared domain: the higher
    /// seq wins. Equal seqs with different server ids break the tie by server id only so that
    /// the result does not depend on the order positions are merged in.
    fn supersedes(&self, other: &Self) -> bool {
        (self.seq, self.server_id) > (other.seq, other.server_id)
    }
}

impl fmt::Display for MariadbGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server_id, self.seq)
    }
}

/// A MariaDB GTID position: at most one GTID per domain, sorted by domain.
///
/// A domain that is absent counts as sequence number 0, so an entry with seq 0 asks for nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MariadbPosition {
    gtids: Vec<MariadbGtid>,
}

impl MariadbPosition {
    /// Parses a comma-separated list of `domain-server-seq` (a single GTID such as `last_gtid`
    /// is a one-entry list; an empty string is the empty position). Whitespace around entries is
    /// ignored. If a domain appears twice the later GTID (higher seq) is kept, as the server
    /// would after applying both.
    pub fn parse(text: &str) -> Result<Self, GtidParseError> {
        let mut pos = Self::default();
        if text.trim().is_empty() {
            return Ok(pos);
        }
        for entry in text.split(',') {
            pos.insert(parse_mariadb_gtid(entry.trim())?);
        }
        Ok(pos)
    }

    /// The GTIDs, sorted by domain.
    pub fn gtids(&self) -> &[MariadbGtid] {
        &self.gtids
    }

    /// The GTID of `domain`, if the position has one.
    pub fn get(&self, domain: u32) -> Option<&MariadbGtid> {
        self.find(domain).ok().and_then(|i| self.gtids.get(i))
    }

    pub fn is_empty(&self) -> bool {
        self.gtids.is_empty()
    }

    /// Records `gtid`, keeping whichever of it and the current GTID of its domain is later.
    pub fn insert(&mut self, gtid: MariadbGtid) {
        match self.find(gtid.domain) {
            Ok(i) => {
                if let Some(ours) = self.gtids.get_mut(i).filter(|ours| gtid.supersedes(ours)) {
                    *ours = gtid;
                }
            }
            Err(i) => self.gtids.insert(i, gtid),
        }
    }

    /// Whether every domain of `other` has reached at least `other`'s seq here.
    pub fn contains(&self, other: &Self) -> bool {
        other.gtids.iter().all(|g| self.seq(g.domain) >= g.seq)
    }

    /// Per-domain maximum.
    pub fn union(&mut self, other: &Self) {
        for gtid in &other.gtids {
            self.insert(*gtid);
        }
    }

    /// The sum over `other`'s domains of how far this position trails, saturating.
    pub fn transactions_behind(&self, other: &Self) -> u64 {
        other.gtids.iter().fold(0, |total, g| {
            total.saturating_add(g.seq.saturating_sub(self.seq(g.domain)))
        })
    }

    fn seq(&self, domain: u32) -> u64 {
        self.get(domain).map_or(0, |g| g.seq)
    }

    fn find(&self, domain: u32) -> Result<usize, usize> {
        self.gtids.binary_search_by_key(&domain, |g| g.domain)
    }
}

fn parse_mariadb_gtid(entry: &str) -> Result<MariadbGtid, GtidParseError> {
    let mut parts = entry.split('-');
    let (Some(domain), Some(server_id), Some(seq), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(GtidParseError::MariadbSyntax {
            entry: quote(entry),
        });
    };
    let number = |text: &str, part: &'static str, max: u64| {
        parse_decimal(text, max).map_err(|err| match err {
            NumberError::NotANumber => GtidParseError::MariadbSyntax {
                entry: quote(entry),
            },
            NumberError::TooLarge => GtidParseError::MariadbRange {
                entry: quote(entry),
                part,
                max,
            },
        })
    };
    let max_u32 = u64::from(u32::MAX);
    Ok(MariadbGtid {
        domain: narrow(number(domain, "domain id", max_u32)?),
        server_id: narrow(number(server_id, "server id", max_u32)?),
        seq: number(seq, "sequence number", u64::MAX)?,
    })
}

/// Narrows a number already checked against `u32::MAX`.
fn narrow(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl fmt::Display for MariadbPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, gtid) in self.gtids.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            gtid.fmt(f)?;
        }
        Ok(())
    }
}

impl FromStr for MariadbPosition {
    type Err = GtidParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

// ---------------------------------------------------------------------------------------------
// MySQL

/// A server UUID; byte order equals the order of its lower-case text.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Uuid([u8; 16]);

impl Uuid {
    /// Accepts the 8-4-4-4-12 form the server prints, in either case.
    fn parse(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.len() != 36 {
            return None;
        }
        let mut out = [0u8; 16];
        let mut nibble = 0;
        for (i, &c) in bytes.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if c != b'-' {
                    return None;
                }
                continue;
            }
            let value = char::from(c).to_digit(16)?;
            let shift = if nibble % 2 == 0 { 4 } else { 0 };
            *out.get_mut(nibble / 2)? |= u8::try_from(value).ok()? << shift;
            nibble += 1;
        }
        Some(Self(out))
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// A MySQL 8.4 GTID tag, lower-cased and zero-padded. Tags never contain zero bytes, so the
/// derived order of the padded arrays is the order of the strings.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Tag([u8; MAX_TAG_LEN]);

impl Tag {
    fn parse(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        let first = *bytes.first()?;
        let valid = bytes.len() <= MAX_TAG_LEN
            && (first.is_ascii_alphabetic() || first == b'_')
            && bytes
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'_');
        if !valid {
            return None;
        }
        let mut tag = [0u8; MAX_TAG_LEN];
        for (dst, src) in tag.iter_mut().zip(bytes) {
            *dst = src.to_ascii_lowercase();
        }
        Some(Self(tag))
    }

    fn as_str(&self) -> &str {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(MAX_TAG_LEN);
        self.0
            .get(..len)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .unwrap_or_default()
    }
}

/// Transaction source: where GTIDs are numbered. Untagged sorts before tagged, as the server
/// prints them.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Tsid {
    uuid: Uuid,
    tag: Option<Tag>,
}

/// Transaction numbers `start..=end`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Interval {
    start: u64,
    end: u64,
}

impl Interval {
    fn len(&self) -> u64 {
        self.end - self.start + 1
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// The transactions of one source: non-empty, sorted, neither overlapping nor adjacent.
#[derive(Clone, PartialEq, Eq, Hash)]
struct SourceSet {
    tsid: Tsid,
    intervals: Vec<Interval>,
}

/// A MySQL GTID set in normal form: sources sorted and unique, intervals merged.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct MysqlGtidSet {
    sources: Vec<SourceSet>,
}

impl MysqlGtidSet {
    /// Parses a GTID set as `@@gtid_executed` prints it (entries separated by commas, possibly
    /// with newlines), including MySQL 8.4 tags (`uuid:1-5:tag:1-3`, or `uuid:tag:1-3`) and
    /// single GTIDs such as `session_track_gtids=OWN_GTID` reports. Whitespace around separators
    /// and empty entries are ignored, as the server does.
    pub fn parse(text: &str) -> Result<Self, GtidParseError> {
        let mut items = Vec::new();
        for entry in text.split(',').map(str::trim) {
            if !entry.is_empty() {
                parse_mysql_entry(entry, &mut items)?;
            }
        }
        Ok(Self::from_items(items))
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The number of GTIDs in the set, saturating.
    pub fn count(&self) -> u64 {
        self.sources
            .iter()
            .flat_map(|source| &source.intervals)
            .fold(0, |total, interval| total.saturating_add(interval.len()))
    }

    /// Whether every GTID of `other` is in `self`.
    pub fn contains(&self, other: &Self) -> bool {
        other
            .sources
            .iter()
            .all(|theirs| intervals_contain(self.intervals_of(&theirs.tsid), &theirs.intervals))
    }

    pub fn union(&mut self, other: &Self) {
        for theirs in &other.sources {
            match self.find(&theirs.tsid) {
                Ok(i) => {
                    if let Some(ours) = self.sources.get_mut(i) {
                        ours.intervals = merge_intervals(&ours.intervals, &theirs.intervals);
                    }
                }
                Err(i) => self.sources.insert(i, theirs.clone()),
            }
        }
    }

    /// The number of GTIDs in `other` but not in `self`, saturating.
    pub fn transactions_behind(&self, other: &Self) -> u64 {
        other.sources.iter().fold(0, |total, theirs| {
            total.saturating_add(count_missing(
                self.intervals_of(&theirs.tsid),
                &theirs.intervals,
            ))
        })
    }

    /// Builds the normal form from unordered (source, interval) pairs.
    fn from_items(mut items: Vec<(Tsid, Interval)>) -> Self {
        items.sort_unstable();
        let mut sources: Vec<SourceSet> = Vec::new();
        for (tsid, interval) in items {
            match sources.last_mut() {
                Some(last) if last.tsid == tsid => push_merging(&mut last.intervals, interval),
                _ => sources.push(SourceSet {
                    tsid,
                    intervals: vec![interval],
                }),
            }
        }
        Self { sources }
    }

    fn find(&self, tsid: &Tsid) -> Result<usize, usize> {
        self.sources
            .binary_search_by(|source| source.tsid.cmp(tsid))
    }

    fn intervals_of(&self, tsid: &Tsid) -> &[Interval] {
        match self.find(tsid).ok().and_then(|i| self.sources.get(i)) {
            Some(source) => &source.intervals,
            None => &[],
        }
    }
}

/// Parses one comma-separated entry, `uuid[:interval...][:tag:interval[:interval...]]...`,
/// into `out`. Intervals belong to the most recent tag, or to no tag before the first one.
fn parse_mysql_entry(entry: &str, out: &mut Vec<(Tsid, Interval)>) -> Result<(), GtidParseError> {
    let mut tokens = entry.split(':').map(str::trim);
    let uuid_text = tokens.next().unwrap_or_default();
    let uuid = Uuid::parse(uuid_text).ok_or_else(|| GtidParseError::Uuid {
        entry: quote(entry),
        found: quote(uuid_text),
    })?;
    let mut tsid = Tsid { uuid, tag: None };
    // The uuid or tag whose intervals come next, and whether any arrived yet. A tag may follow
    // the uuid directly, but not another tag that got no intervals.
    let mut label = uuid_text;
    let mut label_has_interval = false;
    let missing = |after: &str| GtidParseError::MissingInterval {
        entry: quote(entry),
        after: quote(after),
    };
    for token in tokens {
        if token.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            if tsid.tag.is_some() && !label_has_interval {
                return Err(missing(label));
            }
            let tag = Tag::parse(token).ok_or_else(|| GtidParseError::Tag {
                entry: quote(entry),
                found: quote(token),
            })?;
            tsid.tag = Some(tag);
            label = token;
            label_has_interval = false;
        } else {
            let interval = parse_interval(token).ok_or_else(|| GtidParseError::Interval {
                entry: quote(entry),
                found: quote(token),
            })?;
            out.push((tsid, interval));
            label_has_interval = true;
        }
    }
    if label_has_interval {
        Ok(())
    } else {
        Err(missing(label))
    }
}

/// `n` or `a-b` with `1 <= a <= b <= MAX_GNO`.
fn parse_interval(token: &str) -> Option<Interval> {
    let (start, end) = token.split_once('-').unwrap_or((token, token));
    let start = parse_decimal(start.trim(), MAX_GNO).ok()?;
    let end = parse_decimal(end.trim(), MAX_GNO).ok()?;
    (1 <= start && start <= end).then_some(Interval { start, end })
}

/// Appends `next`, which starts no earlier than the last interval, merging overlap and
/// adjacency so the list stays in normal form.
fn push_merging(list: &mut Vec<Interval>, next: Interval) {
    match list.last_mut() {
        Some(last) if next.start <= last.end.saturating_add(1) => last.end = last.end.max(next.end),
        _ => list.push(next),
    }
}

/// The normal form of the union of two normal-form lists.
fn merge_intervals(a: &[Interval], b: &[Interval]) -> Vec<Interval> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    loop {
        let next = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.start <= y.start => {
                i += 1;
                *x
            }
            (_, Some(y)) => {
                j += 1;
                *y
            }
            (Some(x), None) => {
                i += 1;
                *x
            }
            (None, None) => return out,
        };
        push_merging(&mut out, next);
    }
}

/// Whether `outer` covers `inner`. Both are in normal form, so each inner interval must lie
/// within a single outer one.
fn intervals_contain(outer: &[Interval], inner: &[Interval]) -> bool {
    let mut i = 0;
    inner.iter().all(|want| {
        while outer.get(i).is_some_and(|have| have.end < want.start) {
            i += 1;
        }
        outer
            .get(i)
            .is_some_and(|have| have.start <= want.start && want.end <= have.end)
    })
}

/// How many numbers of `want` are missing from `have`, both in normal form.
fn count_missing(have: &[Interval], want: &[Interval]) -> u64 {
    let mut i = 0;
    want.iter().fold(0u64, |total, w| {
        while have.get(i).is_some_and(|h| h.end < w.start) {
            i += 1;
        }
        // `have` is disjoint, so the overlaps of `w` with it add up to at most `w.len()`.
        let covered: u64 = have
            .get(i..)
            .unwrap_or_default()
            .iter()
            .take_while(|h| h.start <= w.end)
            .map(|h| h.end.min(w.end) - h.start.max(w.start) + 1)
            .sum();
        total.saturating_add(w.len().saturating_sub(covered))
    })
}

/// The server's own format: each uuid once, its untagged intervals first, then each tag with
/// its intervals, e.g. `3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7:mytag:1-3`.
impl fmt::Display for MysqlGtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut previous: Option<Uuid> = None;
        for source in &self.sources {
            if previous != Some(source.tsid.uuid) {
                if previous.is_some() {
                    f.write_str(",")?;
                }
                write!(f, "{}", source.tsid.uuid)?;
                previous = Some(source.tsid.uuid);
            }
            if let Some(tag) = &source.tsid.tag {
                write!(f, ":{}", tag.as_str())?;
            }
            for interval in &source.intervals {
                write!(f, ":{interval}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for MysqlGtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MysqlGtidSet({:?})", self.to_string())
    }
}

impl FromStr for MysqlGtidSet {
    type Err = GtidParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers and serde

enum NumberError {
    NotANumber,
    TooLarge,
}

/// Plain decimal digits only: `str::parse` would also take a leading `+`.
fn parse_decimal(text: &str, max: u64) -> Result<u64, NumberError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NumberError::NotANumber);
    }
    text.bytes()
        .try_fold(0u64, |n, digit| {
            n.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        })
        .filter(|n| *n <= max)
        .ok_or(NumberError::TooLarge)
}

/// The start of `text` for an error message, cut at a character boundary.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_LIMIT) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

macro_rules! serde_as_canonical_string {
    ($ty:ty) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_as_canonical_string!(MariadbPosition);
serde_as_canonical_string!(MysqlGtidSet);

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    const U1: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const U2: &str = "b6a5e1c2-0000-11ef-8000-000000000002";

    fn maria(text: &str) -> GtidSet {
        GtidSet::parse(Flavor::Mariadb, text).unwrap()
    }

    fn mysql(text: &str) -> GtidSet {
        GtidSet::parse(Flavor::Mysql, text).unwrap()
    }

    fn error(flavor: Flavor, text: &str) -> String {
        GtidSet::parse(flavor, text).unwrap_err().to_string()
    }

    // --- MariaDB examples ------------------------------------------------------------------

    #[test]
    fn mariadb_single_gtid() {
        let pos = MariadbPosition::parse("0-1-100").unwrap();
        let gtid = MariadbGtid {
            domain: 0,
            server_id: 1,
            seq: 100,
        };
        assert_eq!(pos.gtids(), &[gtid]);
        assert_eq!(pos.get(0), Some(&gtid));
        assert_eq!(pos.get(1), None);
        assert_eq!(pos.to_string(), "0-1-100");
    }

    #[test]
    fn mariadb_multi_domain_is_sorted_by_domain() {
        let pos = maria("2-3-7,0-1-100,1-2-5");
        assert_eq!(pos.to_string(), "0-1-100,1-2-5,2-3-7");
        assert_eq!(maria(" 1-2-5 , 0-1-100 ").to_string(), "0-1-100,1-2-5");
    }

    #[test]
    fn mariadb_empty_position() {
        for text in ["", " ", "\n"] {
            let pos = maria(text);
            assert!(pos.is_empty());
            assert_eq!(pos.to_string(), "");
        }
        assert!(!maria("0-1-1").is_empty());
    }

    #[test]
    fn mariadb_duplicate_domain_keeps_highest_seq() {
        assert_eq!(maria("0-1-100,0-2-90").to_string(), "0-1-100");
        assert_eq!(maria("0-2-90,0-1-100").to_string(), "0-1-100");
        // Equal seqs: the higher server id, whatever the order.
        assert_eq!(maria("0-1-5,0-2-5").to_string(), "0-2-5");
        assert_eq!(maria("0-2-5,0-1-5").to_string(), "0-2-5");
    }

    #[test]
    fn mariadb_extreme_numbers() {
        let text = "4294967295-4294967295-18446744073709551615";
        assert_eq!(maria(text).to_string(), text);
        assert_eq!(maria("007-01-0042").to_string(), "7-1-42");
    }

    #[test]
    fn mariadb_contains_compares_seq_per_domain_ignoring_server_id() {
        let replica = maria("0-1-100,1-2-5");
        assert!(replica.contains(&maria("0-1-100")));
        assert!(replica.contains(&maria("0-9-99,1-2-5")));
        assert!(replica.contains(&maria("")));
        assert!(!replica.contains(&maria("0-1-101")));
        assert!(!replica.contains(&maria("2-1-1")));
        // Seq 0 asks for nothing, so a missing domain satisfies it.
        assert!(replica.contains(&maria("2-1-0")));
        assert!(!maria("").contains(&replica));
    }

    #[test]
    fn mariadb_union_is_per_domain_max() {
        let mut pos = maria("0-1-100,1-2-5");
        pos.union(&maria("0-3-90,1-4-8,2-5-1"));
        assert_eq!(pos.to_string(), "0-1-100,1-4-8,2-5-1");
    }

    #[test]
    fn mariadb_transactions_behind_sums_domains() {
        let replica = maria("0-1-100,1-2-5");
        let head = maria("0-1-105,1-2-5,2-3-3");
        assert_eq!(replica.transactions_behind(&head), Some(5 + 3));
        assert_eq!(head.transactions_behind(&replica), Some(0));
        let far = maria("0-1-18446744073709551615,1-1-18446744073709551615");
        assert_eq!(maria("").transactions_behind(&far), Some(u64::MAX));
    }

    #[test]
    fn mariadb_errors_quote_input_and_expectation() {
        let expected = "expected domain-server-seq, three decimal numbers such as 0-1-100";
        for bad in [
            "0-1",
            "0-1-x",
            "0-1-100-2",
            "-1-1-1",
            "0-1-+5",
            "0 -1-5",
            "a",
            "0-1-1,",
        ] {
            let message = error(Flavor::Mariadb, bad);
            assert!(message.contains(expected), "{bad:?}: {message}");
        }
        assert_eq!(
            error(Flavor::Mariadb, "0-1-5,0-1-x"),
            format!("invalid MariaDB GTID \"0-1-x\": {expected}")
        );
        assert_eq!(
            error(Flavor::Mariadb, "0-1-1,,1-1-1"),
            format!("invalid MariaDB GTID \"\": {expected}")
        );
        assert_eq!(
            error(Flavor::Mariadb, "4294967296-1-1"),
            "invalid MariaDB GTID \"4294967296-1-1\": the domain id must be at most 4294967295"
        );
        assert_eq!(
            error(Flavor::Mariadb, "0-4294967296-1"),
            "invalid MariaDB GTID \"0-4294967296-1\": the server id must be at most 4294967295"
        );
        assert_eq!(
            error(Flavor::Mariadb, "0-1-18446744073709551616"),
            "invalid MariaDB GTID \"0-1-18446744073709551616\": the sequence number must be at \
             most 18446744073709551615"
        );
        // A MySQL set given to the MariaDB parser.
        assert!(error(Flavor::Mariadb, &format!("{U1}:1-5")).contains(expected));
    }

    #[test]
    fn error_quotes_are_bounded() {
        let long = "9".repeat(500);
        let message = error(Flavor::Mariadb, &long);
        assert!(message.contains(&format!("\"{}...\"", "9".repeat(QUOTE_LIMIT))));
        assert!(message.len() < 250, "{message}");
    }

    // --- MySQL examples --------------------------------------------------------------------

    #[test]
    fn mysql_set_is_lower_cased_and_kept_exact() {
        let set = mysql("3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:11-18");
        assert_eq!(set.to_string(), format!("{U1}:1-5:11-18"));
        let GtidSet::Mysql(inner) = &set else {
            panic!("flavour")
        };
        assert_eq!(inner.count(), 5 + 8);
    }

    #[test]
    fn mysql_multi_line_gtid_executed() {
        let set = mysql(&format!("{U2}:1-3,\n{U1}:1-10"));
        assert_eq!(set.to_string(), format!("{U1}:1-10,{U2}:1-3"));
        let set = mysql(&format!("  {U1} : 1 - 10 ,\r\n\t{U2}:1-3\n"));
        assert_eq!(set.to_string(), format!("{U1}:1-10,{U2}:1-3"));
    }

    #[test]
    fn mysql_empty_set() {
        for text in ["", " ", "\n", ",", " , \n,"] {
            let set = mysql(text);
            assert!(set.is_empty(), "{text:?}");
            assert_eq!(set.to_string(), "");
        }
    }

    #[test]
    fn mysql_merges_overlapping_and_adjacent_intervals() {
        let set = mysql(&format!("{U1}:7:1-3:4-5:9-12,{U1}:6,{U1}:10-20,{U1}:22"));
        assert_eq!(set.to_string(), format!("{U1}:1-7:9-20:22"));
        assert_eq!(mysql(&format!("{U1}:5-5")).to_string(), format!("{U1}:5"));
    }

    #[test]
    fn mysql_tagged_gtids() {
        let set = mysql(&format!("{U1}:MyTag:1-3"));
        assert_eq!(set.to_string(), format!("{U1}:mytag:1-3"));
        // Untagged intervals first, then tags in order, each uuid printed once, as the server does.
        let set = mysql(&format!("{U1}:zz:4,{U1}:1-5:MyTag:1-3:_x9:2:mytag:4"));
        assert_eq!(set.to_string(), format!("{U1}:1-5:_x9:2:mytag:1-4:zz:4"));
        // The documented form with the uuid repeated per tag reads the same as the server's.
        let documented = mysql(&format!("{U1}:Domain_1:1-3:15-21, {U1}:Domain_2:8-52"));
        let printed = mysql(&format!("{U1}:domain_1:1-3:15-21:domain_2:8-52"));
        assert_eq!(documented, printed);
        assert_eq!(
            printed.to_string(),
            format!("{U1}:domain_1:1-3:15-21:domain_2:8-52")
        );
        // A 32-character tag is the longest allowed.
        let tag = format!("t{}", "0".repeat(31));
        assert_eq!(
            mysql(&format!("{U1}:{tag}:1")).to_string(),
            format!("{U1}:{tag}:1")
        );
    }

    #[test]
    fn mysql_tags_are_distinct_sources() {
        let tagged = mysql(&format!("{U1}:a:1-10"));
        let plain = mysql(&format!("{U1}:1-10"));
        assert!(!tagged.contains(&plain));
        assert!(!plain.contains(&tagged));
        assert_eq!(plain.transactions_behind(&tagged), Some(10));
    }

    #[test]
    fn mysql_own_gtid_from_session_tracking() {
        let own = mysql("3e11fa47-71ca-11e1-9e33-c80aa9429562:23");
        let executed = mysql(&format!("{U1}:1-22,{U2}:1-3"));
        assert!(!executed.contains(&own));
        assert_eq!(executed.transactions_behind(&own), Some(1));
        let mut after = executed.clone();
        after.union(&own);
        assert_eq!(after.to_string(), format!("{U1}:1-23,{U2}:1-3"));
        assert!(after.contains(&own) && after.contains(&executed));
    }

    #[test]
    fn mysql_contains_and_behind() {
        let replica = mysql(&format!("{U1}:1-5:11-18,{U2}:1-3"));
        assert!(replica.contains(&mysql(&format!("{U1}:2-4:12:18"))));
        assert!(replica.contains(&mysql("")));
        assert!(!replica.contains(&mysql(&format!("{U1}:5-11"))));
        assert!(!replica.contains(&mysql(&format!("{U1}:19"))));
        assert!(!replica.contains(&mysql(&format!("{U2}:4"))));
        let head = mysql(&format!("{U1}:1-20,{U2}:1-3"));
        assert_eq!(replica.transactions_behind(&head), Some(5 + 2));
        assert_eq!(head.transactions_behind(&replica), Some(0));
    }

    #[test]
    fn mysql_huge_counts_saturate() {
        let max = MAX_GNO;
        let set = mysql(&format!("{U1}:1-{max},{U2}:1-{max},{U2}:t:1-{max}"));
        assert_eq!(mysql("").transactions_behind(&set), Some(u64::MAX));
        let GtidSet::Mysql(inner) = &set else {
            panic!("flavour")
        };
        assert_eq!(inner.count(), u64::MAX);
    }

    #[test]
    fn mysql_errors_quote_input_and_expectation() {
        let uuid_msg = "expected 32 hex digits grouped 8-4-4-4-12, such as \
                        3e11fa47-71ca-11e1-9e33-c80aa9429562";
        assert_eq!(
            error(Flavor::Mysql, "3e11fa47-71ca-11e1-9e33-c80aa942956:1"),
            format!(
                "invalid server UUID \"3e11fa47-71ca-11e1-9e33-c80aa942956\" in MySQL GTID set \
                 entry \"3e11fa47-71ca-11e1-9e33-c80aa942956:1\": {uuid_msg}"
            )
        );
        for bad in ["0-1-100", "3e11fa4771ca11e19e33c80aa9429562:1", "zz:1"] {
            assert!(error(Flavor::Mysql, bad).contains(uuid_msg), "{bad:?}");
        }
        let interval_msg = "expected N or A-B with 1 <= A <= B <= 9223372036854775807";
        assert_eq!(
            error(Flavor::Mysql, &format!("{U2}:1,{U1}:5-3")),
            format!(
                "invalid transaction interval \"5-3\" in MySQL GTID set entry \"{U1}:5-3\": \
                 {interval_msg}"
            )
        );
        for bad in [
            "0",
            "1-",
            "-1",
            "1-2-3",
            "1tag",
            "+1",
            "9223372036854775808",
            "",
            "1-0",
        ] {
            let message = error(Flavor::Mysql, &format!("{U1}:{bad}"));
            assert!(message.contains(&format!("{bad:?}")), "{bad:?}: {message}");
            assert!(message.contains(interval_msg), "{bad:?}: {message}");
        }
        let tag = format!("t{}", "0".repeat(32));
        assert_eq!(
            error(Flavor::Mysql, &format!("{U1}:{tag}:1")),
            format!(
                "invalid GTID tag \"{tag}\" in MySQL GTID set entry \"{U1}:{tag}:1\": expected a \
                 letter or underscore followed by at most 31 letters, digits or underscores"
            )
        );
        assert!(error(Flavor::Mysql, &format!("{U1}:my-tag:1")).contains("invalid GTID tag"));
        assert_eq!(
            error(Flavor::Mysql, U1),
            format!(
                "MySQL GTID set entry \"{U1}\" has no transaction numbers after \"{U1}\": \
                 expected an interval such as 1-5"
            )
        );
        for (bad, after) in [
            (":a", "a"),
            (":a:b:1", "a"),
            (":1:b", "b"),
            (":1:a:2:b", "b"),
        ] {
            let message = error(Flavor::Mysql, &format!("{U1}{bad}"));
            assert!(
                message.contains(&format!("no transaction numbers after \"{after}\"")),
                "{bad:?}: {message}"
            );
        }
    }

    // --- Flavour enum ----------------------------------------------------------------------

    #[test]
    fn flavours_do_not_mix() {
        let m = maria("0-1-1");
        let y = mysql(&format!("{U1}:1"));
        assert_eq!(m.flavor(), Flavor::Mariadb);
        assert_eq!(y.flavor(), Flavor::Mysql);
        assert!(!m.contains(&y) && !y.contains(&m));
        assert!(!maria("").contains(&mysql("")));
        assert_eq!(m.transactions_behind(&y), None);
        let mut merged = m.clone();
        merged.union(&y);
        assert_eq!(merged, m);
        assert!(GtidSet::empty(Flavor::Mariadb).is_empty());
        assert_eq!(GtidSet::empty(Flavor::Mysql), mysql(""));
    }

    #[test]
    fn serde_uses_the_canonical_string() {
        let pos = MariadbPosition::parse("1-2-5,0-1-100").unwrap();
        let json = serde_json::to_string(&pos).unwrap();
        assert_eq!(json, "\"0-1-100,1-2-5\"");
        assert_eq!(serde_json::from_str::<MariadbPosition>(&json).unwrap(), pos);

        let set = MysqlGtidSet::parse(&format!("{U2}:1-3,\n{U1}:a:1")).unwrap();
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, format!("\"{U1}:a:1,{U2}:1-3\""));
        assert_eq!(serde_json::from_str::<MysqlGtidSet>(&json).unwrap(), set);
        assert_eq!(serde_json::to_string(&GtidSet::Mysql(set)).unwrap(), json);

        let err = serde_json::from_str::<MysqlGtidSet>("\"nope:1\"").unwrap_err();
        assert!(
            err.to_string().starts_with("invalid server UUID \"nope\""),
            "{err}"
        );
    }

    // --- Properties ------------------------------------------------------------------------

    type MariaModel = BTreeMap<u32, u64>;
    /// (uuid, tag, number), lower-cased.
    type MysqlModel = BTreeSet<(String, String, u64)>;

    const UUIDS: [&str; 2] = ["3E11FA47-71CA-11E1-9E33-C80AA9429562", U2];
    const TAGS: [&str; 3] = ["", "Tag_a", "b"];

    fn maria_text(gtids: &[(u32, u32, u64)]) -> String {
        let texts: Vec<String> = gtids
            .iter()
            .map(|(d, s, q)| format!("{d}-{s}-{q}"))
            .collect();
        texts.join(",")
    }

    fn maria_model(gtids: &[(u32, u32, u64)]) -> MariaModel {
        let mut model = MariaModel::new();
        for &(domain, _, seq) in gtids {
            let slot = model.entry(domain).or_default();
            *slot = (*slot).max(seq);
        }
        model
    }

    /// Random positions: (text, model of max seq per domain).
    fn maria_any() -> impl Strategy<Value = (GtidSet, MariaModel)> {
        prop::collection::vec((0u32..4, 1u32..4, 0u64..12), 0..6)
            .prop_map(|gtids| (maria(&maria_text(&gtids)), maria_model(&gtids)))
    }

    /// Positions as a strict-mode server produces them: a (domain, seq) pair names one
    /// transaction, so it always carries the same server id.
    fn maria_strict() -> impl Strategy<Value = Vec<(u32, u32, u64)>> {
        prop::collection::vec((0u32..4, 1u64..12), 0..6).prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(d, q)| (d, strict_server_id(d, q), q))
                .collect()
        })
    }

    fn strict_server_id(domain: u32, seq: u64) -> u32 {
        (domain + seq as u32) % 3 + 1
    }

    fn mysql_text(parts: &[(usize, usize, u64, u64)], separator: &str) -> String {
        let texts: Vec<String> = parts
            .iter()
            .map(|&(u, t, start, len)| {
                let tag = if TAGS[t].is_empty() {
                    String::new()
                } else {
                    format!(":{}", TAGS[t])
                };
                let interval = if len == 0 {
                    start.to_string()
                } else {
                    format!("{start}-{}", start + len)
                };
                format!("{}{tag}:{interval}", UUIDS[u])
            })
            .collect();
        texts.join(separator)
    }

    fn mysql_model(parts: &[(usize, usize, u64, u64)]) -> MysqlModel {
        let mut model = MysqlModel::new();
        for &(u, t, start, len) in parts {
            for n in start..=start + len {
                model.insert((UUIDS[u].to_lowercase(), TAGS[t].to_lowercase(), n));
            }
        }
        model
    }

    /// Random sets: (set, explicit list of its GTIDs).
    fn mysql_any() -> impl Strategy<Value = (GtidSet, MysqlModel)> {
        (
            prop::collection::vec((0..2usize, 0..3usize, 1u64..20, 0u64..4), 0..6),
            prop::sample::select(vec![",", ",\n", " , "]),
        )
            .prop_map(|(parts, separator)| {
                (mysql(&mysql_text(&parts, separator)), mysql_model(&parts))
            })
    }

    /// Expands a set into its GTIDs, independently of the interval algebra.
    fn expand(set: &GtidSet) -> MysqlModel {
        let GtidSet::Mysql(set) = set else {
            panic!("flavour")
        };
        let mut out = MysqlModel::new();
        for source in &set.sources {
            let tag = source
                .tsid
                .tag
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default();
            for interval in &source.intervals {
                for n in interval.start..=interval.end {
                    out.insert((source.tsid.uuid.to_string(), tag.clone(), n));
                }
            }
        }
        out
    }

    fn seqs(set: &GtidSet) -> MariaModel {
        let GtidSet::Mariadb(pos) = set else {
            panic!("flavour")
        };
        pos.gtids().iter().map(|g| (g.domain, g.seq)).collect()
    }

    /// Every stored value is in normal form, so equality of values means equality of sets.
    fn assert_normal(set: &GtidSet) -> Result<(), TestCaseError> {
        match set {
            GtidSet::Mariadb(pos) => {
                prop_assert!(pos.gtids.windows(2).all(|w| w[0].domain < w[1].domain));
            }
            GtidSet::Mysql(set) => {
                prop_assert!(set.sources.windows(2).all(|w| w[0].tsid < w[1].tsid));
                for source in &set.sources {
                    let ivs = &source.intervals;
                    prop_assert!(!ivs.is_empty());
                    prop_assert!(ivs.iter().all(|iv| 1 <= iv.start && iv.start <= iv.end));
                    prop_assert!(ivs.windows(2).all(|w| w[0].end + 1 < w[1].start));
                }
            }
        }
        Ok(())
    }

    fn union(a: &GtidSet, b: &GtidSet) -> GtidSet {
        let mut out = a.clone();
        out.union(b);
        out
    }

    fn check_union_laws(a: &GtidSet, b: &GtidSet, c: &GtidSet) -> Result<(), TestCaseError> {
        let ab = union(a, b);
        assert_normal(&ab)?;
        prop_assert_eq!(ab.to_string(), union(b, a).to_string());
        prop_assert_eq!(&ab, &union(b, a));
        prop_assert_eq!(union(&ab, c), union(a, &union(b, c)));
        prop_assert_eq!(&union(a, a), a);
        prop_assert_eq!(&union(&ab, b), &ab);
        prop_assert!(ab.contains(a) && ab.contains(b));
        prop_assert_eq!(ab.transactions_behind(a), Some(0));
        Ok(())
    }

    fn check_order_laws(a: &GtidSet, b: &GtidSet, c: &GtidSet) -> Result<(), TestCaseError> {
        prop_assert!(a.contains(a));
        if a.contains(b) && b.contains(c) {
            prop_assert!(a.contains(c));
        }
        // A chain that always holds, so transitivity is exercised on every case.
        let bc = union(b, c);
        let abc = union(a, &bc);
        prop_assert!(abc.contains(&bc) && bc.contains(c) && abc.contains(c));
        // a contains b exactly when adding b brings nothing new. (Not `a ∪ b == a`: MariaDB
        // carries server ids and seq-0 entries that union may add without adding transactions.)
        prop_assert_eq!(a.contains(b), a.contains(&union(a, b)));
        Ok(())
    }

    fn check_round_trip_and_behind(a: &GtidSet, b: &GtidSet) -> Result<(), TestCaseError> {
        assert_normal(a)?;
        let text = a.to_string();
        let again = GtidSet::parse(a.flavor(), &text).unwrap();
        prop_assert_eq!(&again, a);
        prop_assert_eq!(again.to_string(), text);
        prop_assert_eq!(a.is_empty(), a.to_string().is_empty());
        let behind = a.transactions_behind(b);
        prop_assert_eq!(behind == Some(0), a.contains(b), "behind {:?}", behind);
        prop_assert!(behind.is_some());
        Ok(())
    }

    proptest! {
        #[test]
        fn mariadb_union_laws((a, _) in maria_any(), (b, _) in maria_any(), (c, _) in maria_any()) {
            check_union_laws(&a, &b, &c)?;
        }

        #[test]
        fn mariadb_order_laws((a, _) in maria_any(), (b, _) in maria_any(), (c, _) in maria_any()) {
            check_order_laws(&a, &b, &c)?;
        }

        #[test]
        fn mariadb_round_trip_and_behind((a, _) in maria_any(), (b, _) in maria_any()) {
            check_round_trip_and_behind(&a, &b)?;
        }

        #[test]
        fn mariadb_agrees_with_model((a, ma) in maria_any(), (b, mb) in maria_any()) {
            prop_assert_eq!(seqs(&a), ma.clone());
            let contains = mb.iter().all(|(d, q)| ma.get(d).copied().unwrap_or(0) >= *q);
            prop_assert_eq!(a.contains(&b), contains);
            let behind: u64 = mb.iter().map(|(d, q)| q.saturating_sub(ma.get(d).copied().unwrap_or(0))).sum();
            prop_assert_eq!(a.transactions_behind(&b), Some(behind));
            let mut mu = ma.clone();
            for (d, q) in mb {
                let slot = mu.entry(d).or_default();
                *slot = (*slot).max(q);
            }
            prop_assert_eq!(seqs(&union(&a, &b)), mu);
        }

        #[test]
        fn mariadb_mutual_containment_means_same_seqs((a, _) in maria_any(), (b, _) in maria_any()) {
            if a.contains(&b) && b.contains(&a) {
                let nonzero = |m: MariaModel| -> MariaModel { m.into_iter().filter(|(_, q)| *q > 0).collect() };
                prop_assert_eq!(nonzero(seqs(&a)), nonzero(seqs(&b)));
            }
        }

        #[test]
        fn mariadb_strict_mode_mutual_containment_means_equal(
            gtids in maria_strict(),
            other in maria_strict(),
        ) {
            // The same position written differently: reversed, with each GTID's predecessor in
            // its domain mixed in.
            let older = gtids
                .iter()
                .filter(|g| g.2 > 1)
                .map(|&(d, _, q)| (d, strict_server_id(d, q - 1), q - 1));
            let rewritten: Vec<_> = gtids.iter().rev().copied().chain(older).collect();
            let a = maria(&maria_text(&gtids));
            let b = maria(&maria_text(&rewritten));
            prop_assert!(a.contains(&b) && b.contains(&a));
            prop_assert_eq!(a.to_string(), b.to_string());
            let c = maria(&maria_text(&other));
            if a.contains(&c) && c.contains(&a) {
                prop_assert_eq!(a.to_string(), c.to_string());
            }
        }

        #[test]
        fn mysql_union_laws((a, _) in mysql_any(), (b, _) in mysql_any(), (c, _) in mysql_any()) {
            check_union_laws(&a, &b, &c)?;
        }

        #[test]
        fn mysql_order_laws((a, _) in mysql_any(), (b, _) in mysql_any(), (c, _) in mysql_any()) {
            check_order_laws(&a, &b, &c)?;
        }

        #[test]
        fn mysql_round_trip_and_behind((a, _) in mysql_any(), (b, _) in mysql_any()) {
            check_round_trip_and_behind(&a, &b)?;
        }

        #[test]
        fn mysql_agrees_with_naive_expansion((a, ma) in mysql_any(), (b, mb) in mysql_any()) {
            prop_assert_eq!(expand(&a), ma.clone());
            prop_assert_eq!(a.contains(&b), ma.is_superset(&mb));
            prop_assert_eq!(a.transactions_behind(&b), Some(mb.difference(&ma).count() as u64));
            let GtidSet::Mysql(inner) = &a else { panic!("flavour") };
            prop_assert_eq!(inner.count(), ma.len() as u64);
            let mu: MysqlModel = ma.union(&mb).cloned().collect();
            prop_assert_eq!(expand(&union(&a, &b)), mu);
        }

        #[test]
        fn mysql_mutual_containment_means_equal(
            (a, ma) in mysql_any(),
            (b, _) in mysql_any(),
            reverse in any::<bool>(),
        ) {
            // The same set written one GTID per entry, in another order and case.
            let mut singles: Vec<String> = ma
                .iter()
                .map(|(u, t, n)| if t.is_empty() { format!("{}:{n}", u.to_uppercase()) } else { format!("{u}:{}:{n}", t.to_uppercase()) })
                .collect();
            if reverse {
                singles.reverse();
            }
            let same = mysql(&singles.join(",\n"));
            prop_assert!(a.contains(&same) && same.contains(&a));
            prop_assert_eq!(a.to_string(), same.to_string());
            prop_assert_eq!(&a, &same);
            if a.contains(&b) && b.contains(&a) {
                prop_assert_eq!(a.to_string(), b.to_string());
            }
        }

        #[test]
        fn parsers_never_panic(text in "\\PC{0,80}") {
            for flavor in [Flavor::Mariadb, Flavor::Mysql] {
                let _ = GtidSet::parse(flavor, &text).map(|set| set.to_string());
            }
        }

        #[test]
        fn parsers_never_panic_on_near_misses(
            text in "[0-9a-fA-F:,_ \n-]{0,40}",
            prefix in prop::sample::select(vec!["", "0-1-", U1, "3E11FA47-71CA-11E1-9E33-C80AA9429562:"]),
        ) {
            let text = format!("{prefix}{text}");
            for flavor in [Flavor::Mariadb, Flavor::Mysql] {
                if let Ok(set) = GtidSet::parse(flavor, &text) {
                    let again = GtidSet::parse(flavor, &set.to_string());
                    prop_assert_eq!(again.as_ref(), Ok(&set));
                    let _ = set.transactions_behind(&set);
                }
            }
        }
    }
}
