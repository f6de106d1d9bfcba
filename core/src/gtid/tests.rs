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
        .prop_map(|(parts, separator)| (mysql(&mysql_text(&parts, separator)), mysql_model(&parts)))
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
