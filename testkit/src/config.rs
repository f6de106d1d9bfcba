//! The option file every member starts with.

use std::fmt::Write as _;
use std::path::Path;

/// What differs between members' option files.
#[derive(Debug, Clone)]
pub struct ServerConfig<'a> {
    pub dir: &'a Path,
    pub host: &'a str,
    pub port: u16,
    pub server_id: u32,
    pub domain_id: u32,
    pub read_only: bool,
    pub extra: &'a [String],
}

/// InnoDB redo log size shared by the template and every member, so no member resizes it.
pub const INNODB_LOG_FILE_SIZE: &str = "16M";

/// Renders `my.cnf`. Settings favour fast start-up and small footprint; durability settings
/// still survive `kill -9` of the process (the OS keeps what was written).
pub fn render(cfg: &ServerConfig<'_>) -> String {
    let dir = cfg.dir.display();
    let mut s = String::new();
    let _ = writeln!(s, "[mariadbd]");
    let _ = writeln!(s, "datadir={dir}/data");
    let _ = writeln!(s, "socket={dir}/mysqld.sock");
    // A temporary directory of its own: servers sharing /tmp have lost internal temporary
    // tables there ("Error on delete of '/tmp/#sql-temptable-…'").
    let _ = writeln!(s, "tmpdir={dir}/tmp");
    let _ = writeln!(s, "pid-file={dir}/mariadbd.pid");
    let _ = writeln!(s, "log-error={dir}/error.log");
    let _ = writeln!(s, "port={}", cfg.port);
    let _ = writeln!(s, "bind-address={}", cfg.host);
    let _ = writeln!(s, "server_id={}", cfg.server_id);
    let _ = writeln!(s, "gtid_domain_id={}", cfg.domain_id);
    let _ = writeln!(s, "log_bin={dir}/data/binlog");
    let _ = writeln!(s, "relay_log={dir}/data/relay");
    let _ = writeln!(s, "read_only={}", if cfg.read_only { "ON" } else { "OFF" });
    s.push_str(COMMON);
    for line in cfg.extra {
        let _ = writeln!(s, "{line}");
    }
    s
}

const COMMON: &str = "\
log_slave_updates=ON
gtid_strict_mode=ON
binlog_format=ROW
relay_log_recovery=ON
skip_name_resolve=ON
slave_net_timeout=1
local_infile=ON
max_connections=1000
performance_schema=OFF
innodb_buffer_pool_size=64M
innodb_log_file_size=16M
innodb_flush_log_at_trx_commit=2
sync_binlog=0
innodb_doublewrite=OFF
character_set_server=utf8mb4
collation_server=utf8mb4_general_ci
";
