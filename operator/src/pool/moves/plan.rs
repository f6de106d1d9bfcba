//! A tenant move's record and the decisions taken on it, without I/O: the phases, what a
//! failure in each means, the names a move uses, and the GTID position its channel starts at.

use std::fmt;
use std::time::Duration;

use lagless_directory::TenantId;
use serde::{Deserialize, Serialize};

/// Where a move is. Before `Flipped` a failure rolls the move back (the tenant stays on the
/// source, writable); from `Flipped` on it only rolls forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// A snapshot of the tenant's database is loaded on the target's primary.
    Copying,
    /// A channel filtered to the tenant's database replicates the source into the target.
    CatchingUp,
    /// The directory holds the tenant's statements in every proxy.
    Frozen,
    /// The source copy's tables are renamed away; the target waits for that rename.
    Fenced,
    /// The directory sends the tenant to the target.
    Flipped,
    /// The channel and the source's copy are being removed.
    Cleaning,
    Done,
    Aborted,
}

impl Phase {
    /// Whether a failure in this phase rolls the move back.
    pub fn rolls_back(self) -> bool {
        matches!(
            self,
            Phase::Copying | Phase::CatchingUp | Phase::Frozen | Phase::Fenced
        )
    }

    pub fn is_final(self) -> bool {
        matches!(self, Phase::Done | Phase::Aborted)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Copying => "copying",
            Phase::CatchingUp => "catching up",
            Phase::Frozen => "frozen",
            Phase::Fenced => "fenced",
            Phase::Flipped => "flipped",
            Phase::Cleaning => "cleaning",
            Phase::Done => "done",
            Phase::Aborted => "aborted",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A move as it is persisted after every step, so that a restarted mover goes on from there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MoveRecord {
    pub tenant: String,
    pub from: String,
    pub to: String,
    pub phase: Phase,
    /// The source's GTID position the snapshot was taken at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The snapshot server's binary-log file and offset at the snapshot: where the channel
    /// starts reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_binlog: Option<(String, u64)>,
    /// The server the snapshot was read from (host and port), whose binary log the channel
    /// reads: a resumed move uses it whatever the source's topology says by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_server: Option<(String, u16)>,
    /// The GTID of the fence (the rename on the source's primary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<String>,
    /// Milliseconds from the freeze to the flip (or to the abort).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_ms: Option<u64>,
    /// Why the move was aborted, or the last error a step met.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The snapshot server's binary-log position at which every table compared equal before
    /// the freeze: the freeze compares only tables written since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compared_at: Option<(String, u64)>,
    /// Per phase, milliseconds spent in it.
    #[serde(default)]
    pub timings: Vec<(Phase, u64)>,
    /// A failure before the flip began a roll-back that could not finish (a server it needs
    /// was down): the move is left in its phase, and a resume finishes the roll-back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rolling_back: bool,
}

impl MoveRecord {
    pub fn new(tenant: &TenantId, from: &str, to: &str) -> Self {
        Self {
            tenant: tenant.to_string(),
            from: from.to_string(),
            to: to.to_string(),
            phase: Phase::Copying,
            snapshot: None,
            snapshot_binlog: None,
            snapshot_server: None,
            fence: None,
            frozen_ms: None,
            error: None,
            compared_at: None,
            timings: Vec::new(),
            rolling_back: false,
        }
    }

    /// Whether a resumed mover rolls this move back before anything else, instead of running
    /// its phase again: a failure before the flip rolls the move back, also when the first
    /// attempt to roll back failed; going on instead would finish a move that met a failure
    /// (a primary that died, perhaps failed over) after all.
    pub fn resumes_by_rolling_back(&self) -> bool {
        self.rolling_back && self.phase.rolls_back()
    }

    /// Whether the move ended refused before it began (its checks failed): it tried nothing.
    pub fn refused(&self) -> bool {
        self.phase == Phase::Aborted
            && self
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with(NOT_STARTED))
    }
}

/// How the error of a move refused before it began starts.
pub const NOT_STARTED: &str = "not started";

/// The limits a move keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MoveLimits {
    /// The channel's lag at which the tenant is frozen.
    pub max_lag_to_freeze: Duration,
    /// How long the fence's rename waits for transactions open on the tenant's tables.
    pub fence_wait: Duration,
    /// Freeze to flip at most; past it the move aborts.
    pub max_frozen: Duration,
    /// How long catching up may take before the move gives up.
    pub catch_up_timeout: Duration,
    /// Bytes a second the snapshot is loaded into the target at most (0: no limit), so that
    /// the target's other tenants keep their latency.
    pub copy_rate: u64,
    /// How far above its pre-copy round trip the target's primary may answer before the copy
    /// slows down, as a fraction (0: the copy keeps to `copy_rate`); see [`super::pace`].
    pub latency_allowance: f64,
}

impl Default for MoveLimits {
    fn default() -> Self {
        Self {
            max_lag_to_freeze: Duration::from_millis(200),
            fence_wait: Duration::from_secs(2),
            max_frozen: Duration::from_secs(5),
            catch_up_timeout: Duration::from_secs(600),
            copy_rate: DEFAULT_COPY_RATE,
            latency_allowance: DEFAULT_LATENCY_ALLOWANCE,
        }
    }
}

/// The copy's default pace: 16 MiB/s (measured in bench/RESULTS.md).
pub const DEFAULT_COPY_RATE: u64 = 16 << 20;

/// A fixed pace by default: the copy's own statements slow the target's answers, so on a
/// small machine a pace that follows them stays near its floor even with no neighbour to
/// protect (bench/RESULTS.md).
pub const DEFAULT_LATENCY_ALLOWANCE: f64 = 0.0;

/// A statement that sums a table's rows the same way on any server: the row count and the
/// sum of each row's CRC32, so the order rows are read in does not matter. NULL is told from
/// an empty value by a flag per column (`CONCAT_WS` skips NULLs).
pub fn row_sum_sql(db: &str, table: &str, columns: &[String]) -> String {
    let cols: Vec<String> = columns.iter().map(|c| ident(c)).collect();
    let nulls: Vec<String> = cols.iter().map(|c| format!("ISNULL({c})")).collect();
    format!(
        "SELECT COUNT(*), CAST(COALESCE(SUM(CRC32(CONCAT_WS('#', {}, CONCAT({})))), 0) AS CHAR) \
         FROM {}.{}",
        cols.join(", "),
        nulls.join(", "),
        ident(db),
        ident(table)
    )
}

/// What one event of the snapshot server's binary log did to the tenant's database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touch {
    Nothing,
    /// Rows of this table changed.
    Table(String),
    /// A statement named the database: what it changed is not known.
    Unknown,
}

/// Reads one row of `SHOW BINLOG EVENTS` (its type and info) for `db`. Logging is by row, so
/// every row change comes with a table map naming its table; a statement event that names
/// the database (DDL, which the proxies refuse while a tenant moves, but an administrator
/// could run on the server) counts as unknown, apart from the move's own fence.
pub fn binlog_touch(event_type: &str, info: &str, db: &str, fenced: &str) -> Touch {
    match event_type {
        // "table_id: 33 (t_1.orders)"
        "Table_map" => info
            .rsplit_once('(')
            .and_then(|(_, name)| name.strip_suffix(')'))
            .and_then(|name| name.split_once('.'))
            .filter(|(d, _)| *d == db)
            .map_or(Touch::Nothing, |(_, table)| Touch::Table(table.to_string())),
        // The move's own fence (or its rename back): a rename into or out of the fenced
        // database, whose name is quoted whole.
        "Query" if info.starts_with("RENAME TABLE") && info.contains(&ident(fenced)) => {
            Touch::Nothing
        }
        "Query" if info.contains(db) => Touch::Unknown,
        _ => Touch::Nothing,
    }
}

/// Whether a replication channel executed up to `exec` has reached `until` (binary-log file
/// and offset; files of one server sort by name).
pub fn reached(exec: (&str, u64), until: (&str, u64)) -> std::cmp::Ordering {
    exec.cmp(&until)
}

/// The replication channel of a tenant's move, on the target's primary.
pub fn channel_name(tenant: &TenantId) -> String {
    format!("lagless_move_{tenant}")
}

/// Where the fence puts the source's tables: not a tenant's database name, so no proxy
/// routes to it, and filtered from the channel (statements with no default database are).
pub fn fenced_database(tenant: &TenantId) -> String {
    format!("lagless_moved_{tenant}")
}

/// Quotes an identifier for SQL.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// The fence: one atomic rename of every table of `db` into `into`, waiting at most `wait`
/// for transactions open on them.
pub fn rename_sql(db: &str, into: &str, tables: &[String], wait: Option<Duration>) -> String {
    let wait = wait.map_or(String::new(), |w| format!(" WAIT {}", w.as_secs().max(1)));
    let pairs: Vec<String> = tables
        .iter()
        .map(|t| format!("{}.{} TO {}.{}", ident(db), ident(t), ident(into), ident(t)))
        .collect();
    match pairs.split_first() {
        Some((first, rest)) if !wait.is_empty() => {
            // `WAIT n` follows the first table name.
            let (from, to) = first.split_once(" TO ").unwrap_or((first.as_str(), ""));
            let mut sql = format!("RENAME TABLE {from}{wait} TO {to}");
            for p in rest {
                sql.push_str(", ");
                sql.push_str(p);
            }
            sql
        }
        _ => format!("RENAME TABLE {}", pairs.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_roll_back_that_could_not_finish_is_finished_when_resumed() {
        let tenant = TenantId::parse("7").unwrap();
        let mut record = MoveRecord::new(&tenant, "a", "b");
        assert!(!record.resumes_by_rolling_back());
        record.rolling_back = true;
        for phase in [
            Phase::Copying,
            Phase::CatchingUp,
            Phase::Frozen,
            Phase::Fenced,
        ] {
            record.phase = phase;
            assert!(record.resumes_by_rolling_back(), "{phase}");
        }
        // After the flip a move only goes forward; a final move is not resumed.
        for phase in [Phase::Flipped, Phase::Cleaning, Phase::Done, Phase::Aborted] {
            record.phase = phase;
            assert!(!record.resumes_by_rolling_back(), "{phase}");
        }
        // Kept across a restart, and absent from records written before it existed.
        let json = serde_json::to_string(&MoveRecord {
            phase: Phase::Frozen,
            ..record.clone()
        })
        .unwrap();
        assert!(json.contains("\"rollingBack\":true"), "{json}");
        let fresh = serde_json::to_string(&MoveRecord::new(&tenant, "a", "b")).unwrap();
        assert!(!fresh.contains("rollingBack"), "{fresh}");
        let old: MoveRecord = serde_json::from_str(&fresh).unwrap();
        assert!(!old.rolling_back);
    }

    #[test]
    fn row_sums_tell_null_from_empty_and_quote_names() {
        let sql = row_sum_sql("t_1", "or`ders", &["id".into(), "note".into()]);
        assert_eq!(
            sql,
            "SELECT COUNT(*), CAST(COALESCE(SUM(CRC32(CONCAT_WS('#', `id`, `note`, \
             CONCAT(ISNULL(`id`), ISNULL(`note`))))), 0) AS CHAR) FROM `t_1`.`or``ders`"
        );
    }

    #[test]
    fn binlog_events_name_the_tables_they_change() {
        let (db, fenced) = ("t_7", "lagless_moved_7");
        let touch = |kind, info| binlog_touch(kind, info, db, fenced);
        assert_eq!(
            touch("Table_map", "table_id: 33 (t_7.orders)"),
            Touch::Table("orders".into())
        );
        assert_eq!(
            touch("Table_map", "table_id: 34 (t_8.orders)"),
            Touch::Nothing
        );
        assert_eq!(
            touch("Table_map", "table_id: 35 (t_70.orders)"),
            Touch::Nothing
        );
        assert_eq!(
            touch("Write_rows_v1", "table_id: 33 flags: STMT_END_F"),
            Touch::Nothing
        );
        assert_eq!(touch("Query", "BEGIN"), Touch::Nothing);
        assert_eq!(
            touch(
                "Query",
                "RENAME TABLE `t_7`.`a` TO `lagless_moved_7`.`a` WAIT 2"
            ),
            Touch::Nothing
        );
        assert_eq!(
            touch("Query", "use `t_7`; TRUNCATE TABLE a"),
            Touch::Unknown
        );
        // Naming the fenced database is not enough to be the fence.
        assert_eq!(
            touch("Query", "INSERT INTO t_7.a SELECT * FROM lagless_moved_7.a"),
            Touch::Unknown
        );
        assert_eq!(
            touch("Query", "RENAME TABLE `t_7`.`a` TO `lagless_moved_70`.`a`"),
            Touch::Unknown
        );
        assert_eq!(
            touch("Query", "ALTER TABLE t_7.a ADD c INT"),
            Touch::Unknown
        );
        assert_eq!(
            touch("Annotate_rows", "INSERT INTO t_7.a VALUES (1)"),
            Touch::Nothing
        );
    }

    #[test]
    fn a_channel_reaches_a_position_file_first() {
        use std::cmp::Ordering::*;
        assert_eq!(reached(("bin.000002", 4), ("bin.000001", 900)), Greater);
        assert_eq!(reached(("bin.000001", 900), ("bin.000001", 900)), Equal);
        assert_eq!(reached(("bin.000001", 899), ("bin.000001", 900)), Less);
    }

    #[test]
    fn phases_roll_back_until_the_flip() {
        for p in [
            Phase::Copying,
            Phase::CatchingUp,
            Phase::Frozen,
            Phase::Fenced,
        ] {
            assert!(p.rolls_back(), "{p}");
        }
        for p in [Phase::Flipped, Phase::Cleaning, Phase::Done, Phase::Aborted] {
            assert!(!p.rolls_back(), "{p}");
        }
        assert!(Phase::Done.is_final() && Phase::Aborted.is_final());
        assert!(!Phase::Flipped.is_final());
    }

    #[test]
    fn the_fence_renames_every_table_at_once() {
        let tables = vec!["a".to_string(), "b`c".to_string()];
        assert_eq!(
            rename_sql(
                "t_1",
                "lagless_moved_1",
                &tables,
                Some(Duration::from_secs(2))
            ),
            "RENAME TABLE `t_1`.`a` WAIT 2 TO `lagless_moved_1`.`a`, \
             `t_1`.`b``c` TO `lagless_moved_1`.`b``c`"
        );
        assert_eq!(
            rename_sql("lagless_moved_1", "t_1", &tables[..1], None),
            "RENAME TABLE `lagless_moved_1`.`a` TO `t_1`.`a`"
        );
    }

    #[test]
    fn records_round_trip() {
        let mut r = MoveRecord::new(&TenantId::parse("42").unwrap(), "c0", "c1");
        r.phase = Phase::Fenced;
        r.fence = Some("1-11-90".into());
        r.timings.push((Phase::Copying, 120));
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"phase\":\"fenced\""), "{json}");
        assert_eq!(serde_json::from_str::<MoveRecord>(&json).unwrap(), r);
    }
}
