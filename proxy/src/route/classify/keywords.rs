//! The keywords the classifier looks at, and a compile-time hash table to find them.

/// Declares the keywords the classifier looks at, with their upper-case spelling.
macro_rules! keywords {
    ($($kw:ident = $text:literal,)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(super) enum Kw { $($kw,)* }

        pub(super) const KEYWORDS: &[(&[u8], Kw)] = &[$(($text, Kw::$kw),)*];
    };
}

keywords! {
    // Statement openers.
    Alter = b"ALTER", Analyze = b"ANALYZE", Begin = b"BEGIN", Commit = b"COMMIT",
    Create = b"CREATE", Desc = b"DESC", Describe = b"DESCRIBE", Explain = b"EXPLAIN",
    Flush = b"FLUSH", Get = b"GET", Help = b"HELP", Kill = b"KILL", Lock = b"LOCK",
    Rollback = b"ROLLBACK",
    Select = b"SELECT", Set = b"SET", Show = b"SHOW", Start = b"START", Table = b"TABLE",
    Unlock = b"UNLOCK", Use = b"USE", Values = b"VALUES", With = b"WITH", Xa = b"XA",
    // Writes and locking clauses inside otherwise read-looking statements.
    Connection = b"CONNECTION", Delete = b"DELETE", For = b"FOR", Insert = b"INSERT",
    Into = b"INTO", Next = b"NEXT", Previous = b"PREVIOUS", Replace = b"REPLACE",
    Share = b"SHARE", SqlCalcFoundRows = b"SQL_CALC_FOUND_ROWS", Update = b"UPDATE",
    Value = b"VALUE",
    // User-level lock functions.
    GetLock = b"GET_LOCK", IsFreeLock = b"IS_FREE_LOCK", IsUsedLock = b"IS_USED_LOCK",
    ReleaseAllLocks = b"RELEASE_ALL_LOCKS", ReleaseLock = b"RELEASE_LOCK",
    // Functions bound to the session or to one server's replication position.
    ConnectionId = b"CONNECTION_ID", FoundRows = b"FOUND_ROWS", LastInsertId = b"LAST_INSERT_ID",
    Lastval = b"LASTVAL", MasterGtidWait = b"MASTER_GTID_WAIT", MasterPosWait = b"MASTER_POS_WAIT",
    Nextval = b"NEXTVAL", RowCount = b"ROW_COUNT", Setval = b"SETVAL",
    SourcePosWait = b"SOURCE_POS_WAIT", WaitForExecutedGtidSet = b"WAIT_FOR_EXECUTED_GTID_SET",
    WaitUntilSqlThreadAfterGtids = b"WAIT_UNTIL_SQL_THREAD_AFTER_GTIDS",
    // SET.
    Character = b"CHARACTER", Charset = b"CHARSET", Default = b"DEFAULT", Global = b"GLOBAL",
    Local = b"LOCAL", Names = b"NAMES", Password = b"PASSWORD", Persist = b"PERSIST",
    PersistOnly = b"PERSIST_ONLY", Resource = b"RESOURCE", Role = b"ROLE", Session = b"SESSION",
    Statement = b"STATEMENT", Transaction = b"TRANSACTION",
    // Transactions.
    And = b"AND", Atomic = b"ATOMIC", Chain = b"CHAIN", Not = b"NOT", Only = b"ONLY",
    Read = b"READ", To = b"TO", Work = b"WORK",
    // SHOW.
    All = b"ALL", Binary = b"BINARY", Binlog = b"BINLOG", Count = b"COUNT", Errors = b"ERRORS",
    Full = b"FULL", Master = b"MASTER", Processlist = b"PROCESSLIST", Profile = b"PROFILE",
    Profiles = b"PROFILES", Relaylog = b"RELAYLOG", Replica = b"REPLICA", Replicas = b"REPLICAS",
    Slave = b"SLAVE", Status = b"STATUS", Variables = b"VARIABLES", Warnings = b"WARNINGS",
    // KILL.
    Hard = b"HARD", Query = b"QUERY", Soft = b"SOFT",
    // SQL-level prepared statements.
    Execute = b"EXECUTE", Immediate = b"IMMEDIATE", Prepare = b"PREPARE",
    // CREATE, ALTER, ANALYZE, FLUSH, GET.
    Case = b"CASE", Current = b"CURRENT", Database = b"DATABASE", Diagnostics = b"DIAGNOSTICS",
    End = b"END", Event = b"EVENT", Export = b"EXPORT", Format = b"FORMAT", Function = b"FUNCTION",
    If = b"IF", Index = b"INDEX", Loop = b"LOOP", Package = b"PACKAGE", Procedure = b"PROCEDURE",
    Repeat = b"REPEAT", Schema = b"SCHEMA", Stacked = b"STACKED", Tables = b"TABLES",
    Temporary = b"TEMPORARY", Trigger = b"TRIGGER", User = b"USER", View = b"VIEW",
    While = b"WHILE",
}

/// The longest keyword above (`WAIT_UNTIL_SQL_THREAD_AFTER_GTIDS`).
pub(super) const MAX_KEYWORD_LEN: usize = 33;

/// How many leading bytes of a word its lookup key holds.
const KEY_BYTES: usize = 16;

/// A keyword's slot: its key, its spelling and itself.
type KeywordSlot = Option<(u128, &'static [u8], Kw)>;

/// Slots in [`KEYWORD_TABLE`], a power of two about four times the keyword count so that
/// probe chains stay short.
const TABLE_BITS: u32 = 9;
const _: () = assert!(
    KEYWORDS.len() * 3 < 1 << TABLE_BITS,
    "keyword table too full"
);

/// An open-addressing hash table built at compile time: `keyword` runs for nearly every word
/// of every statement, and a hash probe beats both a chain of byte-string comparisons and a
/// binary search, whose branches mispredict.
static KEYWORD_TABLE: [KeywordSlot; 1 << TABLE_BITS] = keyword_table();

/// Packs the first [`KEY_BYTES`] bytes of a word, upper-cased and zero-padded. Words hold no
/// NUL byte, so the keys of words up to that length are unique. Built in registers: a byte
/// buffer read back as one integer stalls on store forwarding.
const fn key(word: &[u8]) -> u128 {
    let (mut high, mut low) = (0u64, 0u64);
    let mut i = 0;
    while i < word.len() && i < KEY_BYTES {
        let b = word[i].to_ascii_uppercase() as u64;
        if i < 8 {
            high |= b << (56 - 8 * i);
        } else {
            low |= b << (56 - 8 * (i - 8));
        }
        i += 1;
    }
    ((high as u128) << 64) | low as u128
}

/// Multiplicative hashing of the folded key.
const fn slot_of(key: u128) -> usize {
    let folded = (key >> 64) as u64 ^ (key as u64).rotate_left(31);
    (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - TABLE_BITS)) as usize
}

const fn keyword_table() -> [KeywordSlot; 1 << TABLE_BITS] {
    let mut table: [KeywordSlot; 1 << TABLE_BITS] = [None; 1 << TABLE_BITS];
    let mut i = 0;
    while i < KEYWORDS.len() {
        let (text, kw) = KEYWORDS[i];
        let key = key(text);
        let mut slot = slot_of(key);
        while table[slot].is_some() {
            slot = (slot + 1) % table.len();
        }
        table[slot] = Some((key, text, kw));
        i += 1;
    }
    table
}

/// Looks a bare word up among the keywords, ignoring ASCII case.
pub(super) fn keyword(word: &[u8]) -> Option<Kw> {
    let first = *word.first()?;
    if word.len() < 2 || word.len() > MAX_KEYWORD_LEN || first.is_ascii_digit() {
        return None;
    }
    let wanted = key(word);
    let mut slot = slot_of(wanted);
    loop {
        let (key, text, kw) = KEYWORD_TABLE.get(slot).copied().flatten()?;
        if key == wanted {
            // Past KEY_BYTES the key no longer tells words apart.
            let same = word.len() == text.len()
                && (word.len() <= KEY_BYTES || word.eq_ignore_ascii_case(text));
            return same.then_some(kw);
        }
        slot = (slot + 1) % KEYWORD_TABLE.len();
    }
}

impl Kw {
    /// The scope a `SET` modifier or an `@@scope.` prefix selects.
    pub(super) fn scope(self) -> Option<VarScope> {
        match self {
            Kw::Global | Kw::Persist | Kw::PersistOnly => Some(VarScope::Global),
            Kw::Session | Kw::Local => Some(VarScope::Session),
            _ => None,
        }
    }

    pub(super) fn is_lock_function(self) -> bool {
        matches!(
            self,
            Kw::GetLock | Kw::ReleaseLock | Kw::ReleaseAllLocks | Kw::IsFreeLock | Kw::IsUsedLock
        )
    }

    /// Functions whose result depends on the session's own history or on one server.
    pub(super) fn is_pinned_function(self) -> bool {
        matches!(
            self,
            Kw::LastInsertId
                | Kw::FoundRows
                | Kw::RowCount
                | Kw::ConnectionId
                | Kw::Nextval
                | Kw::Lastval
                | Kw::Setval
                | Kw::MasterPosWait
                | Kw::SourcePosWait
                | Kw::MasterGtidWait
                | Kw::WaitForExecutedGtidSet
                | Kw::WaitUntilSqlThreadAfterGtids
        )
    }
}

/// The session variable that holds a session's consistency mode; the proxy owns it.
pub(super) const LAGLESS_VARIABLE: &[u8] = b"lagless_consistency";

/// System variables whose value only the primary can give: session history and the identity
/// of the server the application believes it talks to.
pub(super) const PRIMARY_VARIABLES: &[&[u8]] = &[
    b"identity",
    b"last_insert_id",
    b"insert_id",
    b"last_gtid",
    b"read_only",
    b"super_read_only",
    b"innodb_read_only",
];

pub(super) fn is_name(word: &[u8], name: &[u8]) -> bool {
    word.eq_ignore_ascii_case(name)
}

/// The scope written in `@@scope.name`, or given by a `SET` modifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum VarScope {
    /// No scope written: a session variable.
    Unqualified,
    Session,
    Global,
}

/// Whitespace between tokens.
pub(super) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

pub(super) fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}
