//! The copy's snapshot over SQL, with no client program (the operator's image in Kubernetes
//! has none): one consistent read of the tenant's database on the snapshot server, at a
//! binary-log position and GTID position that server reports for it, written into the
//! target's primary as multi-row `INSERT`s of at most [`BATCH`] bytes.
//!
//! Values travel as bytes, never as text: both sessions use the `binary` character set, so a
//! latin1 column, a BLOB holding a 0 byte or a string in any character set arrives exactly as
//! it was stored (`mariadb-dump --default-character-set=binary` does the same), and both use
//! UTC, so `TIMESTAMP`s do not shift.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value};

use super::plan::ident;
use super::sql::{self, Endpoint, first, run};
use crate::orchestrate::act::sql_quote;

/// The largest `INSERT` the copy sends (one row alone may be larger).
pub const BATCH: usize = 32 << 10;

/// Where a snapshot was taken: the source's GTID position, and the snapshot server's own
/// binary-log coordinates, where the channel starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub gtid: String,
    pub binlog: (String, u64),
}

/// A column the copy writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// `BIT` values are written as hexadecimal literals (a quoted string would be read as
    /// characters).
    pub bits: bool,
}

/// A table as the copy makes it on the target.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    /// `SHOW CREATE TABLE`'s statement.
    pub create: String,
    pub columns: Vec<Column>,
}

/// The columns a copy writes, from `information_schema.COLUMNS` rows (name, `DATA_TYPE`,
/// `IS_GENERATED`) in their order: generated columns are computed again by the target.
pub fn copied_columns(rows: Vec<(String, String, String)>) -> Vec<Column> {
    rows.into_iter()
        .filter(|(_, _, generated)| generated.eq_ignore_ascii_case("NEVER"))
        .map(|(name, data_type, _)| Column {
            name,
            bits: data_type.eq_ignore_ascii_case("bit"),
        })
        .collect()
}

/// The statement that reads a table's rows: columns named, so that invisible ones come too.
pub fn select_sql(db: &str, table: &Table) -> String {
    let names: Vec<String> = table.columns.iter().map(|c| ident(&c.name)).collect();
    format!(
        "SELECT {} FROM {}.{}",
        names.join(", "),
        ident(db),
        ident(&table.name)
    )
}

/// The start of every `INSERT` of a table's rows.
pub fn insert_prefix(table: &Table) -> Vec<u8> {
    let names: Vec<String> = table.columns.iter().map(|c| ident(&c.name)).collect();
    format!(
        "INSERT INTO {} ({}) VALUES ",
        ident(&table.name),
        names.join(", ")
    )
    .into_bytes()
}

/// Appends one row, `(v1, v2, …)`, as SQL literals.
pub fn push_row(out: &mut Vec<u8>, values: &[Value], columns: &[Column]) {
    out.push(b'(');
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let bits = columns.get(i).is_some_and(|c| c.bits);
        push_value(out, value, bits);
    }
    out.push(b')');
}

/// Appends one value as an SQL literal: bytes quoted and escaped as the server's own
/// `mysql_real_escape_string` does (with backslash escapes on, which the copy's session
/// keeps), `BIT`s in hexadecimal.
pub fn push_value(out: &mut Vec<u8>, value: &Value, bits: bool) {
    match value {
        Value::NULL => out.extend_from_slice(b"NULL"),
        Value::Bytes(bytes) if bits => {
            out.extend_from_slice(b"X'");
            for b in bytes {
                out.extend_from_slice(format!("{b:02X}").as_bytes());
            }
            out.push(b'\'');
        }
        Value::Bytes(bytes) => {
            out.push(b'\'');
            for &b in bytes {
                match b {
                    0 => out.extend_from_slice(b"\\0"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\'' => out.extend_from_slice(b"\\'"),
                    b'"' => out.extend_from_slice(b"\\\""),
                    0x1a => out.extend_from_slice(b"\\Z"),
                    _ => out.push(b),
                }
            }
            out.push(b'\'');
        }
        // Exactly, in the shortest form that reads back as the same number: the text
        // protocol would round (0.1 + 0.2 reads as 0.3), which is why rows are read with
        // the binary one. A FLOAT is written as the double it equals.
        Value::Double(x) => out.extend_from_slice(format!("{x:e}").as_bytes()),
        Value::Float(x) => out.extend_from_slice(format!("{:e}", f64::from(*x)).as_bytes()),
        // Integers, dates and times as the server writes them.
        other => out.extend_from_slice(other.as_sql(false).as_bytes()),
    }
}

/// The binary-log coordinates of the consistent snapshot open on `conn`
/// (`START TRANSACTION WITH CONSISTENT SNAPSHOT`).
pub async fn snapshot_coordinates(conn: &mut Conn) -> Result<(String, u64), String> {
    let status: Vec<(String, String)> = conn
        .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
        .await
        .map_err(|e| format!("the snapshot's binary-log position: {e}"))?;
    let value = |name: &str| {
        status
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    match (
        value("Binlog_snapshot_file").filter(|f| !f.is_empty()),
        value("Binlog_snapshot_position").and_then(|p| p.parse::<u64>().ok()),
    ) {
        (Some(file), Some(pos)) => Ok((file, pos)),
        _ => {
            Err("the snapshot server reports no binary-log position (is its binary log on?)".into())
        }
    }
}

/// The reading side: a consistent snapshot open on the snapshot server.
pub struct Source {
    conn: Conn,
    pub snapshot: Snapshot,
}

impl Source {
    /// Opens the snapshot and reads where it was taken.
    pub async fn open(from: &Endpoint) -> Result<Self, String> {
        let mut conn = from.conn().await?;
        // A paced copy reads slowly: the server must not give up on a client that takes
        // its time (the default is a minute per write).
        run(
            &mut conn,
            "SET SESSION time_zone = '+00:00', net_write_timeout = 3600, \
             tx_isolation = 'REPEATABLE-READ'",
        )
        .await?;
        run(
            &mut conn,
            "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
        )
        .await?;
        let binlog = snapshot_coordinates(&mut conn).await?;
        let gtid: Option<String> = first(
            &mut conn,
            &format!(
                "SELECT BINLOG_GTID_POS('{}', {})",
                sql_quote(&binlog.0),
                binlog.1
            ),
        )
        .await?;
        let Some(gtid) = gtid else {
            return Err(format!(
                "the snapshot server has no GTID position for {}:{}",
                binlog.0, binlog.1
            ));
        };
        Ok(Self {
            conn,
            snapshot: Snapshot { gtid, binlog },
        })
    }

    /// The database's `CREATE DATABASE` and its tables, refusing what a move cannot carry.
    pub async fn schema(&mut self, db: &str) -> Result<(String, Vec<Table>), String> {
        let row: Option<(String, String)> = self
            .conn
            .query_first(format!("SHOW CREATE DATABASE {}", ident(db)))
            .await
            .map_err(|e| format!("SHOW CREATE DATABASE {db}: {e}"))?;
        let (_, create_db) = row.ok_or_else(|| format!("no database {db} on the source"))?;
        let mut tables = Vec::new();
        for name in sql::tables(&mut self.conn, db).await? {
            let row: Option<(String, String)> = self
                .conn
                .query_first(format!("SHOW CREATE TABLE {}.{}", ident(db), ident(&name)))
                .await
                .map_err(|e| format!("SHOW CREATE TABLE {db}.{name}: {e}"))?;
            let (_, create) = row.ok_or_else(|| format!("no table {db}.{name}"))?;
            let columns: Vec<(String, String, String)> = self
                .conn
                .query(format!(
                    "SELECT COLUMN_NAME, DATA_TYPE, IS_GENERATED FROM information_schema.COLUMNS \
                     WHERE TABLE_SCHEMA = '{}' AND TABLE_NAME = '{}' ORDER BY ORDINAL_POSITION",
                    sql_quote(db),
                    sql_quote(&name)
                ))
                .await
                .map_err(|e| format!("the columns of {db}.{name}: {e}"))?;
            tables.push(Table {
                name,
                create,
                columns: copied_columns(columns),
            });
        }
        // Rows are read as the bytes stored, in no character set.
        run(&mut self.conn, "SET NAMES binary").await?;
        Ok((create_db, tables))
    }

    /// The rows of `table`, as they were at the snapshot, in the binary protocol (numbers
    /// as they are stored, not as text).
    pub async fn rows(
        &mut self,
        db: &str,
        table: &Table,
    ) -> Result<mysql_async::QueryResult<'_, 'static, mysql_async::BinaryProtocol>, String> {
        self.conn
            .exec_iter(select_sql(db, table), ())
            .await
            .map_err(|e| format!("reading {db}.{}: {e}", table.name))
    }

    /// Ends the snapshot.
    pub async fn finish(mut self) {
        let _ = self.conn.query_drop("COMMIT").await;
        let _ = self.conn.disconnect().await;
    }
}

/// Makes the database and its tables on the target's primary, on the connection that then
/// writes the rows, and sets that session up for them: UTC, bytes in no character set, a 0
/// kept in an auto-increment column, and no foreign-key checks (tables come in name order).
pub async fn prepare_target(
    target: &mut Conn,
    db: &str,
    create_db: &str,
    tables: &[Table],
) -> Result<(), String> {
    run(
        target,
        "SET SESSION time_zone = '+00:00', sql_mode = 'NO_AUTO_VALUE_ON_ZERO', \
         foreign_key_checks = 0, unique_checks = 0",
    )
    .await?;
    run(target, create_db).await?;
    run(target, &format!("USE {}", ident(db))).await?;
    for table in tables {
        run(target, &table.create).await?;
    }
    run(target, "SET NAMES binary").await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table {
            name: "o`rders".into(),
            create: String::new(),
            columns: copied_columns(vec![
                ("id".into(), "int".into(), "NEVER".into()),
                ("flags".into(), "bit".into(), "NEVER".into()),
                ("twice".into(), "int".into(), "ALWAYS".into()),
                ("note".into(), "varchar".into(), "NEVER".into()),
            ]),
        }
    }

    #[test]
    fn generated_columns_are_left_to_the_target_and_bits_are_known() {
        let t = table();
        let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "flags", "note"]);
        assert!(t.columns[1].bits && !t.columns[0].bits);
        assert_eq!(
            select_sql("t_1", &t),
            "SELECT `id`, `flags`, `note` FROM `t_1`.`o``rders`"
        );
        assert_eq!(
            String::from_utf8(insert_prefix(&t)).unwrap(),
            "INSERT INTO `o``rders` (`id`, `flags`, `note`) VALUES "
        );
    }

    #[test]
    fn every_byte_survives_quoting() {
        let t = table();
        let mut out = Vec::new();
        let values = [
            Value::Bytes(b"42".to_vec()),
            Value::Bytes(vec![0x05]),
            Value::Bytes(vec![0, b'\n', b'\r', b'\\', b'\'', b'"', 0x1a, 0xe9, b'x']),
        ];
        push_row(&mut out, &values, &t.columns);
        assert_eq!(out, b"('42',X'05','\\0\\n\\r\\\\\\'\\\"\\Z\xe9x')".to_vec());
        out.clear();
        push_row(
            &mut out,
            &[Value::NULL, Value::NULL, Value::Int(-3)],
            &t.columns,
        );
        assert_eq!(out, b"(NULL,NULL,-3)".to_vec());
    }

    #[test]
    fn numbers_are_written_exactly() {
        let written = |v: Value| {
            let mut out = Vec::new();
            push_value(&mut out, &v, false);
            String::from_utf8(out).unwrap()
        };
        let sum = 0.1f64 + 0.2;
        assert_eq!(written(Value::Double(sum)).parse::<f64>().unwrap(), sum);
        assert_eq!(written(Value::Double(1e-300)), "1e-300");
        let big = 3.402_823_5e38f32;
        assert_eq!(
            written(Value::Float(big)).parse::<f64>().unwrap(),
            f64::from(big)
        );
        assert_eq!(written(Value::UInt(u64::MAX)), u64::MAX.to_string());
        assert_eq!(
            written(Value::Date(2024, 2, 29, 23, 30, 0, 125_000)),
            "'2024-02-29 23:30:00.125000'"
        );
        assert_eq!(written(Value::Date(0, 0, 0, 0, 0, 0, 0)), "'0000-00-00'");
        assert_eq!(written(Value::Time(true, 1, 2, 3, 4, 0)), "'-026:03:04'");
    }
}
