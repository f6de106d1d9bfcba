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
mod tests;
