//! Numbers of the MySQL client/server protocol.

/// Capability flags (`CLIENT_*`).
pub mod cap {
    pub const LONG_PASSWORD: u32 = 1;
    pub const FOUND_ROWS: u32 = 1 << 1;
    pub const LONG_FLAG: u32 = 1 << 2;
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    pub const NO_SCHEMA: u32 = 1 << 4;
    pub const COMPRESS: u32 = 1 << 5;
    pub const ODBC: u32 = 1 << 6;
    pub const LOCAL_FILES: u32 = 1 << 7;
    pub const IGNORE_SPACE: u32 = 1 << 8;
    pub const PROTOCOL_41: u32 = 1 << 9;
    pub const INTERACTIVE: u32 = 1 << 10;
    pub const SSL: u32 = 1 << 11;
    pub const IGNORE_SIGPIPE: u32 = 1 << 12;
    pub const TRANSACTIONS: u32 = 1 << 13;
    pub const RESERVED: u32 = 1 << 14;
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    pub const MULTI_STATEMENTS: u32 = 1 << 16;
    pub const MULTI_RESULTS: u32 = 1 << 17;
    pub const PS_MULTI_RESULTS: u32 = 1 << 18;
    pub const PLUGIN_AUTH: u32 = 1 << 19;
    pub const CONNECT_ATTRS: u32 = 1 << 20;
    pub const PLUGIN_AUTH_LENENC_DATA: u32 = 1 << 21;
    pub const CAN_HANDLE_EXPIRED_PASSWORDS: u32 = 1 << 22;
    pub const SESSION_TRACK: u32 = 1 << 23;
    pub const DEPRECATE_EOF: u32 = 1 << 24;

    /// What the proxy offers clients. `SSL` is added when TLS is configured; query attributes
    /// are not offered.
    pub const PROXY_DEFAULT: u32 = LONG_PASSWORD
        | COMPRESS
        | FOUND_ROWS
        | LONG_FLAG
        | CONNECT_WITH_DB
        | NO_SCHEMA
        | ODBC
        | LOCAL_FILES
        | IGNORE_SPACE
        | PROTOCOL_41
        | INTERACTIVE
        | IGNORE_SIGPIPE
        | TRANSACTIONS
        | RESERVED
        | SECURE_CONNECTION
        | MULTI_STATEMENTS
        | MULTI_RESULTS
        | PS_MULTI_RESULTS
        | PLUGIN_AUTH
        | CONNECT_ATTRS
        | PLUGIN_AUTH_LENENC_DATA
        | CAN_HANDLE_EXPIRED_PASSWORDS
        | SESSION_TRACK
        | DEPRECATE_EOF;

    /// Flags that change the shape of what a backend sends; a pooled backend connection must
    /// match the client on all of them.
    pub const SHAPE: u32 = FOUND_ROWS
        | LONG_FLAG
        | NO_SCHEMA
        | IGNORE_SPACE
        | LOCAL_FILES
        | MULTI_STATEMENTS
        | MULTI_RESULTS
        | PS_MULTI_RESULTS
        | SESSION_TRACK
        | DEPRECATE_EOF
        | INTERACTIVE;
}

/// MariaDB's extended capabilities (`MARIADB_CLIENT_*`, the high 32 bits of its 64-bit flags),
/// exchanged when the server's greeting leaves out `CLIENT_MYSQL` (bit 0, `LONG_PASSWORD`).
pub mod ext {
    /// Progress reports (0xff packets with code 0xffff) during long statements.
    pub const PROGRESS: u32 = 1;
    pub const COM_MULTI: u32 = 1 << 1;
    pub const STMT_BULK_OPERATIONS: u32 = 1 << 2;
    /// Column definitions carry the data type's format (JSON, UUID, INET6, geometry types).
    pub const EXTENDED_METADATA: u32 = 1 << 3;
    pub const CACHE_METADATA: u32 = 1 << 4;

    /// What the proxy offers. Cached metadata lets a server leave column definitions out of
    /// executions, which the proxy prepares again per backend connection, so it is not
    /// offered, as an older server would not.
    pub const PROXY_DEFAULT: u32 = PROGRESS | EXTENDED_METADATA | STMT_BULK_OPERATIONS;
}

/// Server status flags (`SERVER_*`) carried by OK and EOF packets.
pub mod status {
    pub const IN_TRANS: u16 = 0x0001;
    pub const AUTOCOMMIT: u16 = 0x0002;
    pub const MORE_RESULTS_EXISTS: u16 = 0x0008;
    pub const CURSOR_EXISTS: u16 = 0x0040;
    pub const LAST_ROW_SENT: u16 = 0x0080;
    /// The session's `sql_mode` has `NO_BACKSLASH_ESCAPES`: a backslash in a string literal is
    /// an ordinary character.
    pub const NO_BACKSLASH_ESCAPES: u16 = 0x0200;
    pub const IN_TRANS_READONLY: u16 = 0x2000;
    pub const SESSION_STATE_CHANGED: u16 = 0x4000;
}

/// Command bytes (`COM_*`).
pub mod com {
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const FIELD_LIST: u8 = 0x04;
    pub const CREATE_DB: u8 = 0x05;
    pub const DROP_DB: u8 = 0x06;
    pub const REFRESH: u8 = 0x07;
    pub const STATISTICS: u8 = 0x09;
    pub const PROCESS_INFO: u8 = 0x0a;
    pub const PROCESS_KILL: u8 = 0x0c;
    pub const DEBUG: u8 = 0x0d;
    pub const PING: u8 = 0x0e;
    pub const CHANGE_USER: u8 = 0x11;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_RESET: u8 = 0x1a;
    pub const SET_OPTION: u8 = 0x1b;
    pub const STMT_FETCH: u8 = 0x1c;
    pub const RESET_CONNECTION: u8 = 0x1f;
    /// MariaDB's array binding: one prepared statement, many rows of parameters.
    pub const STMT_BULK_EXECUTE: u8 = 0xfa;
}

/// First payload byte of response packets.
pub mod header {
    pub const OK: u8 = 0x00;
    pub const EOF: u8 = 0xfe;
    pub const ERR: u8 = 0xff;
    pub const LOCAL_INFILE: u8 = 0xfb;
    pub const AUTH_SWITCH: u8 = 0xfe;
    pub const AUTH_MORE_DATA: u8 = 0x01;
}

/// `utf8mb4_general_ci`, the collation the proxy announces when it has no backend to copy.
pub const DEFAULT_COLLATION: u8 = 45;

/// Largest payload of one physical packet; a payload this long continues in the next packet.
pub const MAX_PAYLOAD: usize = 0x00ff_ffff;

/// The protocol's own bounds of `max_allowed_packet`: 1 KiB to 1 GiB, as the server's.
pub fn clamp_packet(bytes: usize) -> usize {
    bytes.clamp(1024, 1 << 30)
}

/// The server's default `max_allowed_packet`.
pub const DEFAULT_MAX_ALLOWED_PACKET: usize = 16 * 1024 * 1024;
