//! Statement classification: where a COM_QUERY may run and which session state it changes.
//!
//! This is a single-pass byte lexer with a little lookahead, not a SQL parser: it reads the first
//! keywords of each statement and watches the rest for the few things that pin a statement to
//! one server (locking clauses, `INTO`, session-bound functions, user variables). Whatever it
//! does not recognise goes to the primary, so a gap in the rules costs a replica read, never a
//! wrong answer. A plain `SELECT` is classified without allocating.

use std::borrow::Cow;

use super::consistency::{ConsistencyMode, ParseConsistencyError};

/// Where a statement may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Target {
    /// A plain read that any replica which has caught up may serve.
    Replica,
    /// Writes, locking reads, session-bound functions and anything not understood.
    #[default]
    Primary,
    /// Reads the diagnostics of the previous statement (`SHOW WARNINGS`, `@@warning_count`,
    /// `GET DIAGNOSTICS`), which exist only on the backend that ran it.
    LastBackend,
}

impl Target {
    /// The stronger of two needs; used to combine statements and clauses.
    fn max(self, other: Self) -> Self {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    /// `Primary` outranks `LastBackend`: when a payload needs both, writes must stay correct.
    fn rank(self) -> u8 {
        match self {
            Self::Replica => 0,
            Self::LastBackend => 1,
            Self::Primary => 2,
        }
    }
}

/// How a `SET` of session state can be reproduced on the other backends of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionSet {
    /// Only session system variables, `NAMES` or `CHARACTER SET`, assigned literals, identifiers
    /// or simple operator expressions: sending the same text to another backend reproduces the
    /// state.
    Replayable,
    /// The result depends on the server that runs it or on more than session variables: user
    /// variables, subqueries, function calls, `SET TRANSACTION` (next transaction only),
    /// `SET STATEMENT`, `SET PASSWORD`, `SET ROLE`, `SET DEFAULT ROLE`, a mix of `GLOBAL` and
    /// session assignments, or a payload that holds other statements besides `SET`s.
    NotReplayable,
}

/// What the session layer must track after a statement succeeds.
///
/// For a multi-statement payload the effects are combined in order, so the flags describe the
/// state after the whole payload: `BEGIN; COMMIT` only ends a transaction, while `COMMIT; BEGIN`
/// (or `COMMIT AND CHAIN`) ends one and begins the next. The same holds for table locks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Effects {
    /// `BEGIN [WORK]`, `START TRANSACTION ...`, `XA START|BEGIN`, `... AND CHAIN`: a transaction
    /// is open afterwards.
    pub begins_transaction: bool,
    /// The transaction that begins is `READ ONLY`.
    pub read_only_transaction: bool,
    /// `COMMIT`, `ROLLBACK` (not `ROLLBACK TO SAVEPOINT`), `XA COMMIT|ROLLBACK`.
    pub ends_transaction: bool,
    /// The session's autocommit after `SET [SESSION] autocommit = 0|1|ON|OFF|TRUE|FALSE`.
    pub autocommit: Option<bool>,
    /// `CREATE TEMPORARY TABLE`: the table exists only on the backend that ran it.
    pub creates_temp_table: bool,
    /// `LOCK TABLE[S]`, `FLUSH TABLES ... WITH READ LOCK`, `FLUSH TABLES ... FOR EXPORT`.
    pub locks_tables: bool,
    /// `UNLOCK TABLE[S]`.
    pub unlocks_tables: bool,
    /// Calls a user-level lock function (`GET_LOCK`, `RELEASE_LOCK`, `RELEASE_ALL_LOCKS`,
    /// `IS_FREE_LOCK`, `IS_USED_LOCK`), whose locks live on one server.
    pub user_lock: bool,
    /// Assigns a user variable: `SET @x = ...`, `@x := ...`, `... INTO @x`, `GET DIAGNOSTICS`.
    pub user_variable_write: bool,
    /// The statement sets session state; see [`SessionSet`].
    pub session_set: Option<SessionSet>,
    /// The default database after `USE db` (quotes removed). A name that is not UTF-8 leaves
    /// this `None` and marks `session_set` as not replayable.
    pub use_database: Option<String>,
}

impl Effects {
    /// True when the statement changes nothing the session layer tracks.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Folds in the effects of a statement that ran after these.
    fn then(&mut self, later: Effects) {
        if later.begins_transaction {
            self.begins_transaction = true;
            self.read_only_transaction = later.read_only_transaction;
        } else if later.ends_transaction {
            self.begins_transaction = false;
            self.read_only_transaction = false;
        }
        self.ends_transaction |= later.ends_transaction;
        if later.unlocks_tables && !later.locks_tables {
            self.locks_tables = false;
        }
        self.locks_tables |= later.locks_tables;
        self.unlocks_tables |= later.unlocks_tables;
        self.autocommit = later.autocommit.or(self.autocommit);
        self.creates_temp_table |= later.creates_temp_table;
        self.user_lock |= later.user_lock;
        self.user_variable_write |= later.user_variable_write;
        self.session_set = match (self.session_set, later.session_set) {
            (Some(SessionSet::Replayable), Some(SessionSet::Replayable)) => {
                Some(SessionSet::Replayable)
            }
            (None, only) | (only, None) => only,
            _ => Some(SessionSet::NotReplayable),
        };
        if later.use_database.is_some() {
            self.use_database = later.use_database;
        }
    }
}

/// A `lagless:route=...` comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteHint {
    /// `lagless:route=primary`: run on the primary whatever the statement is.
    Primary,
    /// `lagless:route=replica`: reported only for a statement that is a plain read anyway.
    Replica,
}

/// A per-statement consistency override from a `lagless:consistency=...` comment.
pub type ConsistencyHint = ConsistencyMode;

/// A statement the proxy answers itself instead of forwarding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaglessCommand {
    /// `SET [SESSION] lagless_consistency = '<mode>'` (also `@@[session.]lagless_consistency`).
    SetConsistency(ConsistencyMode),
    /// `SET lagless_consistency = DEFAULT`: back to the cluster's default mode.
    ResetConsistency,
    /// `SHOW lagless_consistency` or `SELECT @@lagless_consistency`.
    ShowConsistency,
    /// A malformed or misplaced use of `lagless_consistency`; the text is the error to return.
    Invalid(String),
}

/// The verdict on one COM_QUERY payload, all its statements combined.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Classification {
    /// Where the payload may run; an honoured route hint is already applied.
    pub target: Target,
    /// What the session layer must track once it succeeds.
    pub effects: Effects,
    /// A `lagless:consistency=...` comment (the last one wins). Invalid values are ignored.
    pub hint: Option<ConsistencyHint>,
    /// A `lagless:route=...` comment that was honoured: `Primary` always is (it lifts a read to
    /// the primary but leaves `LastBackend` alone, as diagnostics exist on one backend only),
    /// `Replica` only when the payload is a plain read.
    pub route_hint: Option<RouteHint>,
    /// Set when the proxy must answer the payload itself.
    pub lagless: Option<LaglessCommand>,
}

/// The `sql_mode` flags that change how statements are lexed; the session layer learns
/// `no_backslash_escapes` from the server status flags of each OK packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SqlMode {
    /// `NO_BACKSLASH_ESCAPES`: a backslash in a string is an ordinary character.
    pub no_backslash_escapes: bool,
    /// `ANSI_QUOTES`: `"..."` quotes an identifier, not a string.
    pub ansi_quotes: bool,
}

/// Classifies a COM_QUERY payload under the default `sql_mode`.
pub fn classify(sql: &[u8]) -> Classification {
    classify_with(sql, SqlMode::default())
}

/// Classifies a COM_QUERY payload (one statement, or several separated by `;`).
pub fn classify_with(sql: &[u8], mode: SqlMode) -> Classification {
    let mut p = Parser::new(sql, mode);
    let mut total: Option<Stmt> = None;
    let mut statements = 0usize;
    let mut only_sets = true;
    loop {
        match p.peek() {
            Tok::End | Tok::Unterminated => break,
            Tok::Punct(b';') => {
                p.bump();
                continue;
            }
            _ => {}
        }
        let stmt = statement(&mut p);
        statements += 1;
        only_sets &= stmt.effects.session_set.is_some();
        match &mut total {
            Some(total) => total.then(stmt),
            None => total = Some(stmt),
        }
    }
    let mut st = total.unwrap_or_default();
    if p.lex.malformed {
        st.target = Target::Primary;
    }
    if statements > 1 {
        if st.lagless.is_some() {
            st.lagless = Some(invalid(
                "a lagless_consistency statement must be sent on its own",
            ));
        }
        // Replaying the payload would also replay its other statements.
        if !only_sets && st.effects.session_set.is_some() {
            st.effects.session_set = Some(SessionSet::NotReplayable);
        }
    }
    apply_hints(st, &p.lex.hints)
}

/// The byte ranges of the statements of a multi-statement payload, each from its first token
/// to its last (without the `;`). `None` when the payload cannot be cut safely: an
/// unterminated string or comment, or an executable comment (`/*! ... */`), which a cut could
/// split.
pub fn split_statements(sql: &[u8]) -> Option<Vec<(usize, usize)>> {
    if sql.windows(3).any(|w| w == b"/*!") || sql.windows(4).any(|w| w == b"/*M!") {
        return None;
    }
    let mut p = Parser::new(sql, SqlMode::default());
    let mut parts = Vec::new();
    loop {
        match p.peek() {
            Tok::End => break,
            Tok::Unterminated => return None,
            Tok::Punct(b';') => {
                p.bump();
                continue;
            }
            _ => {}
        }
        let start = p.next.1;
        statement(&mut p);
        parts.push((start, p.span.1));
    }
    (!p.lex.malformed).then_some(parts)
}

/// Honours the comment hints: a route hint never sends anything but a plain read to a replica.
fn apply_hints(st: Stmt, hints: &Hints) -> Classification {
    let mut target = st.target;
    let route_hint = match hints.route {
        Some(RouteHint::Primary) => {
            if target == Target::Replica {
                target = Target::Primary;
            }
            Some(RouteHint::Primary)
        }
        Some(RouteHint::Replica) if target == Target::Replica => Some(RouteHint::Replica),
        _ => None,
    };
    Classification {
        target,
        effects: st.effects,
        hint: hints.consistency,
        route_hint,
        lagless: st.lagless,
    }
}

// ---------------------------------------------------------------------------------------------
// Keywords

/// Declares the keywords the classifier looks at, with their upper-case spelling.
macro_rules! keywords {
    ($($kw:ident = $text:literal,)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Kw { $($kw,)* }

        const KEYWORDS: &[(&[u8], Kw)] = &[$(($text, Kw::$kw),)*];
    };
}

keywords! {
    // Statement openers.
    Alter = b"ALTER", Analyze = b"ANALYZE", Begin = b"BEGIN", Commit = b"COMMIT",
    Create = b"CREATE", Desc = b"DESC", Describe = b"DESCRIBE", Explain = b"EXPLAIN",
    Flush = b"FLUSH", Get = b"GET", Help = b"HELP", Lock = b"LOCK", Rollback = b"ROLLBACK",
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
const MAX_KEYWORD_LEN: usize = 33;

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
fn keyword(word: &[u8]) -> Option<Kw> {
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
    fn scope(self) -> Option<VarScope> {
        match self {
            Kw::Global | Kw::Persist | Kw::PersistOnly => Some(VarScope::Global),
            Kw::Session | Kw::Local => Some(VarScope::Session),
            _ => None,
        }
    }

    fn is_lock_function(self) -> bool {
        matches!(
            self,
            Kw::GetLock | Kw::ReleaseLock | Kw::ReleaseAllLocks | Kw::IsFreeLock | Kw::IsUsedLock
        )
    }

    /// Functions whose result depends on the session's own history or on one server.
    fn is_pinned_function(self) -> bool {
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
const LAGLESS_VARIABLE: &[u8] = b"lagless_consistency";

/// System variables whose value only the primary can give: session history and the identity
/// of the server the application believes it talks to.
const PRIMARY_VARIABLES: &[&[u8]] = &[
    b"identity",
    b"last_insert_id",
    b"insert_id",
    b"last_gtid",
    b"read_only",
    b"super_read_only",
    b"innodb_read_only",
];

fn is_name(word: &[u8], name: &[u8]) -> bool {
    word.eq_ignore_ascii_case(name)
}

// ---------------------------------------------------------------------------------------------
// Lexer

/// The scope written in `@@scope.name`, or given by a `SET` modifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VarScope {
    /// No scope written: a session variable.
    Unqualified,
    Session,
    Global,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    /// A keyword, bare identifier or number.
    Word(&'a [u8]),
    /// A quoted identifier: its raw content (quotes still doubled) and the quote byte.
    Ident(&'a [u8], u8),
    /// A string literal's raw content, escapes untouched.
    Str(&'a [u8]),
    /// `@name`: a user variable.
    UserVar,
    /// `@@[scope.]name`: a system variable.
    SysVar(VarScope, &'a [u8]),
    /// `:=`
    Assign,
    Punct(u8),
    End,
    /// An unterminated string, identifier or comment: the rest of the input cannot be read.
    Unterminated,
}

struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    mode: SqlMode,
    /// Inside `/*! ... */` or `/*M! ... */`, whose content the server executes.
    in_exec_comment: bool,
    malformed: bool,
    hints: Hints,
}

impl<'a> Lexer<'a> {
    fn byte(&self, ahead: usize) -> Option<u8> {
        self.src.get(self.pos + ahead).copied()
    }

    /// Returns the next token and its start offset, skipping whitespace and comments.
    fn next(&mut self) -> (Tok<'a>, usize) {
        while !self.malformed {
            let Some(b) = self.byte(0) else {
                if self.in_exec_comment {
                    break;
                }
                return (Tok::End, self.pos);
            };
            match b {
                _ if is_space(b) => self.pos += 1,
                b'#' => self.line_comment(1),
                b'-' if self.byte(1) == Some(b'-') && self.byte(2).is_none_or(|c| c <= b' ') => {
                    self.line_comment(2)
                }
                b'/' if self.byte(1) == Some(b'*') => self.block_comment(),
                b'*' if self.in_exec_comment && self.byte(1) == Some(b'/') => {
                    self.pos += 2;
                    self.in_exec_comment = false;
                }
                _ => {
                    let start = self.pos;
                    return (self.token(b), start);
                }
            }
        }
        (self.fail(), self.pos)
    }

    /// Lexes the next token into `slot` with its byte range. Writing in place rather than
    /// returning the token spares a copy that stalls on store forwarding.
    fn advance(&mut self, slot: &mut (Tok<'a>, usize, usize)) {
        let (tok, start) = self.next();
        *slot = (tok, start, self.pos);
    }

    fn fail(&mut self) -> Tok<'a> {
        self.malformed = true;
        Tok::Unterminated
    }

    fn token(&mut self, b: u8) -> Tok<'a> {
        match b {
            b'\'' => self.string(b'\''),
            b'"' if self.mode.ansi_quotes => self.quoted_ident(b'"'),
            b'"' => self.string(b'"'),
            b'`' => self.quoted_ident(b'`'),
            b'@' => self.variable(),
            b':' if self.byte(1) == Some(b'=') => {
                self.pos += 2;
                Tok::Assign
            }
            _ if is_word_byte(b) => Tok::Word(self.word()),
            _ => {
                self.pos += 1;
                Tok::Punct(b)
            }
        }
    }

    fn word(&mut self) -> &'a [u8] {
        let src = self.src;
        let start = self.pos;
        while self.byte(0).is_some_and(is_word_byte) {
            self.pos += 1;
        }
        &src[start..self.pos]
    }

    fn string(&mut self, quote: u8) -> Tok<'a> {
        match self.quoted(quote, !self.mode.no_backslash_escapes) {
            Some(body) => Tok::Str(body),
            None => self.fail(),
        }
    }

    fn quoted_ident(&mut self, quote: u8) -> Tok<'a> {
        match self.quoted(quote, false) {
            Some(body) => Tok::Ident(body, quote),
            None => self.fail(),
        }
    }

    /// Reads a quoted run opening at `pos`; a doubled quote stands for itself. `None` when
    /// the input ends first.
    fn quoted(&mut self, quote: u8, backslash_escapes: bool) -> Option<&'a [u8]> {
        let src = self.src;
        let start = self.pos + 1;
        let mut i = start;
        loop {
            let b = *src.get(i)?;
            if b == b'\\' && backslash_escapes {
                i += 2;
            } else if b != quote {
                i += 1;
            } else if src.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                self.pos = i + 1;
                return src.get(start..i);
            }
        }
    }

    /// Lexes `@name`, `@'name'` or `@@[scope.]name` at `pos`.
    fn variable(&mut self) -> Tok<'a> {
        if self.byte(1) == Some(b'@') {
            self.pos += 2;
            return self.system_variable();
        }
        self.pos += 1;
        match self.byte(0) {
            Some(quote @ (b'\'' | b'"' | b'`')) => {
                let escapes = quote != b'`' && !self.mode.no_backslash_escapes;
                if self.quoted(quote, escapes).is_none() {
                    return self.fail();
                }
            }
            _ => {
                while self.byte(0).is_some_and(|c| is_word_byte(c) || c == b'.') {
                    self.pos += 1;
                }
            }
        }
        Tok::UserVar
    }

    fn system_variable(&mut self) -> Tok<'a> {
        let Some(first) = self.variable_name() else {
            return self.fail();
        };
        // `@@session.x` names a scope; `@@x.y` is a dotted name such as a key cache setting.
        let scope = if self.byte(0) == Some(b'.') {
            keyword(first).and_then(Kw::scope)
        } else {
            None
        };
        let Some(scope) = scope else {
            return Tok::SysVar(VarScope::Unqualified, first);
        };
        self.pos += 1;
        match self.variable_name() {
            Some(name) => Tok::SysVar(scope, name),
            None => self.fail(),
        }
    }

    fn variable_name(&mut self) -> Option<&'a [u8]> {
        if self.byte(0) == Some(b'`') {
            self.quoted(b'`', false)
        } else {
            Some(self.word())
        }
    }

    /// Skips a `#` or `-- ` comment whose marker is `marker` bytes long.
    fn line_comment(&mut self, marker: usize) {
        let src = self.src;
        let start = (self.pos + marker).min(src.len());
        let end = src[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(src.len(), |i| start + i);
        self.hints.read(&src[start..end]);
        self.pos = (end + 1).min(src.len());
    }

    /// Skips a `/* */` comment, or enters an executable one whose content is code.
    fn block_comment(&mut self) {
        let src = self.src;
        let open = self.pos + 2;
        match (src.get(open), src.get(open + 1)) {
            (Some(b'!'), _) => return self.enter_exec_comment(open + 1),
            (Some(b'M'), Some(b'!')) => return self.enter_exec_comment(open + 2),
            _ => {}
        }
        let body = src.get(open..).unwrap_or_default();
        match body.windows(2).position(|w| w == b"*/") {
            Some(len) => {
                self.hints.read(&body[..len]);
                self.pos = open + len + 2;
            }
            None => {
                self.fail();
            }
        }
    }

    /// Skips the version digits of `/*!50110` or `/*M!100100`; the code follows them.
    fn enter_exec_comment(&mut self, digits: usize) {
        self.pos = digits;
        while self.byte(0).is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        self.in_exec_comment = true;
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// Lagless hints found in comments.
#[derive(Default)]
struct Hints {
    consistency: Option<ConsistencyMode>,
    route: Option<RouteHint>,
}

impl Hints {
    /// Reads every `lagless:key=value` in a comment's text.
    fn read(&mut self, comment: &[u8]) {
        const MARK: &[u8] = b"lagless:";
        let mut rest = comment;
        while let Some(at) = rest
            .windows(MARK.len())
            .position(|w| w.eq_ignore_ascii_case(MARK))
        {
            rest = &rest[at + MARK.len()..];
            let len = rest
                .iter()
                .position(|&b| is_space(b) || b == b',' || b == b';')
                .unwrap_or(rest.len());
            self.apply(&rest[..len]);
            rest = &rest[len..];
        }
    }

    fn apply(&mut self, setting: &[u8]) {
        let Some(eq) = setting.iter().position(|&b| b == b'=') else {
            return;
        };
        let (key, value) = (&setting[..eq], &setting[eq + 1..]);
        let Ok(value) = std::str::from_utf8(value) else {
            return;
        };
        if is_name(key, b"consistency") {
            if let Ok(mode) = value.parse() {
                self.consistency = Some(mode);
            }
        } else if is_name(key, b"route") {
            if value.eq_ignore_ascii_case("primary") {
                self.route = Some(RouteHint::Primary);
            } else if value.eq_ignore_ascii_case("replica") {
                self.route = Some(RouteHint::Replica);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parser: tokens with one of lookahead

struct Parser<'a> {
    lex: Lexer<'a>,
    /// The next token and its byte range, always lexed one ahead so that looking at it is
    /// free: the classifier peeks several times per token.
    next: (Tok<'a>, usize, usize),
    /// Byte range of the token `bump` returned last.
    span: (usize, usize),
}

impl<'a> Parser<'a> {
    fn new(src: &'a [u8], mode: SqlMode) -> Self {
        let mut lex = Lexer {
            src,
            pos: 0,
            mode,
            in_exec_comment: false,
            malformed: false,
            hints: Hints::default(),
        };
        let mut next = (Tok::End, 0, 0);
        lex.advance(&mut next);
        Self {
            lex,
            next,
            span: (0, 0),
        }
    }

    fn peek(&self) -> Tok<'a> {
        self.next.0
    }

    fn bump(&mut self) -> Tok<'a> {
        let (tok, start, end) = self.next;
        self.span = (start, end);
        self.lex.advance(&mut self.next);
        tok
    }

    fn peek_kw(&self) -> Option<Kw> {
        match self.peek() {
            Tok::Word(word) => keyword(word),
            _ => None,
        }
    }

    fn eat(&mut self, tok: Tok<'_>) -> bool {
        let found = self.peek() == tok;
        if found {
            self.bump();
        }
        found
    }

    fn eat_kw(&mut self, kw: Kw) -> bool {
        let found = self.peek_kw() == Some(kw);
        if found {
            self.bump();
        }
        found
    }

    fn eat_assign(&mut self) -> bool {
        self.eat(Tok::Punct(b'=')) || self.eat(Tok::Assign)
    }

    /// True when the next token opens an argument list, i.e. the word before was a call.
    fn at_call(&self) -> bool {
        self.peek() == Tok::Punct(b'(')
    }

    /// True at the `;` or end of input that closes the statement.
    fn at_end(&self) -> bool {
        matches!(self.peek(), Tok::End | Tok::Unterminated | Tok::Punct(b';'))
    }

    fn skip_to_end(&mut self) {
        while !self.at_end() {
            self.bump();
        }
    }

    /// Consumes the rest of the statement; true if it holds one of the keyword `pairs`.
    fn skip_finding(&mut self, pairs: &[(Kw, Kw)]) -> bool {
        let (mut found, mut prev) = (false, None);
        while !self.at_end() {
            let kw = match self.bump() {
                Tok::Word(word) => keyword(word),
                _ => None,
            };
            if let (Some(a), Some(b)) = (prev, kw) {
                found |= pairs.contains(&(a, b));
            }
            prev = kw;
        }
        found
    }
}

// ---------------------------------------------------------------------------------------------
// Statements

/// The verdict on one statement.
#[derive(Debug, Default)]
struct Stmt {
    target: Target,
    effects: Effects,
    lagless: Option<LaglessCommand>,
}

impl Stmt {
    fn need(&mut self, target: Target) {
        self.target = self.target.max(target);
    }

    /// Folds in a statement that ran after this one.
    fn then(&mut self, later: Stmt) {
        self.need(later.target);
        self.effects.then(later.effects);
        self.lagless = later.lagless.or(self.lagless.take());
    }
}

fn invalid(message: &str) -> LaglessCommand {
    LaglessCommand::Invalid(message.to_owned())
}

fn misplaced_lagless_read() -> LaglessCommand {
    invalid(
        "lagless_consistency can only be read on its own: \
         SHOW lagless_consistency or SELECT @@lagless_consistency",
    )
}

/// Classifies one statement, consuming it up to its closing `;` or the end of input.
fn statement(p: &mut Parser<'_>) -> Stmt {
    let mut st = Stmt::default();
    let mut anonymous_block = false;
    loop {
        match p.peek() {
            Tok::Punct(b'(') => parenthesised(p, &mut st),
            Tok::Word(word) => {
                if let Some(kw) = keyword(word) {
                    p.bump();
                    if opening(kw, p, &mut st) == Flow::Nested {
                        anonymous_block = true;
                        continue;
                    }
                }
            }
            _ => {}
        }
        break;
    }
    scan_rest(p, &mut st);
    if anonymous_block {
        st.target = Target::Primary;
    }
    st
}

/// Whether a statement follows at once inside the one just opened.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Done,
    /// `BEGIN NOT ATOMIC`: a MariaDB anonymous block, whose statements really run now.
    Nested,
}

/// Handles a statement's first keyword (already consumed).
fn opening(kw: Kw, p: &mut Parser<'_>, st: &mut Stmt) -> Flow {
    match kw {
        Kw::Select => select(p, st),
        Kw::With | Kw::Values | Kw::Table | Kw::Describe | Kw::Desc | Kw::Explain | Kw::Help => {
            st.target = Target::Replica
        }
        Kw::Analyze => analyze(p, st),
        Kw::Show => show(p, st),
        Kw::Set => set(p, st),
        Kw::Use => use_database(p, st),
        Kw::Begin => return begin(p, st),
        Kw::Start => start(p, st),
        Kw::Commit | Kw::Rollback => end_transaction(kw, p, st),
        Kw::Xa => xa(p, st),
        Kw::Lock => st.effects.locks_tables = matches!(p.peek_kw(), Some(Kw::Table | Kw::Tables)),
        Kw::Unlock => {
            st.effects.unlocks_tables = matches!(p.peek_kw(), Some(Kw::Table | Kw::Tables))
        }
        Kw::Flush => {
            let pairs = [(Kw::Read, Kw::Lock), (Kw::For, Kw::Export)];
            st.effects.locks_tables = p.skip_finding(&pairs);
        }
        Kw::Create | Kw::Alter => create_or_alter(kw, p, st),
        Kw::Get => diagnostics(p, st),
        Kw::Prepare => prepare(p, st),
        Kw::Execute if p.eat_kw(Kw::Immediate) => prepared_text(p, st),
        _ => {}
    }
    Flow::Done
}

/// `PREPARE name FROM ...`: the statement runs later with `EXECUTE`, on the primary, where the
/// prepared statement lives.
fn prepare(p: &mut Parser<'_>, st: &mut Stmt) {
    while !p.at_end() {
        if let Tok::Word(word) = p.bump()
            && is_name(word, b"FROM")
        {
            return prepared_text(p, st);
        }
    }
}

/// The text of an SQL-level prepared statement (`PREPARE ... FROM 'text'`, `EXECUTE IMMEDIATE
/// 'text'`): state it leaves behind exists only on the primary that runs it, so any such
/// effect (a `SET` too: its values may be bound later) pins the session. Text that is not a
/// literal comes from a user variable, which pinned the session already.
fn prepared_text(p: &mut Parser<'_>, st: &mut Stmt) {
    st.need(Target::Primary);
    if let Tok::Str(raw) = p.peek() {
        let inner = classify_with(raw, p.lex.mode);
        let e = inner.effects;
        if e.session_set.is_some()
            || e.creates_temp_table
            || e.locks_tables
            || e.user_lock
            || e.user_variable_write
            || e.use_database.is_some()
            || e.autocommit.is_some()
        {
            st.effects.session_set = Some(SessionSet::NotReplayable);
        }
        p.bump();
    }
}

/// `(SELECT ...) UNION (SELECT ...)` and the like.
fn parenthesised(p: &mut Parser<'_>, st: &mut Stmt) {
    while p.eat(Tok::Punct(b'(')) {}
    if matches!(
        p.peek_kw(),
        Some(Kw::Select | Kw::With | Kw::Values | Kw::Table)
    ) {
        st.target = Target::Replica;
    }
}

fn select(p: &mut Parser<'_>, st: &mut Stmt) {
    st.target = Target::Replica;
    if let Tok::SysVar(_, name) = p.peek()
        && is_name(name, LAGLESS_VARIABLE)
    {
        p.bump();
        st.lagless = Some(if p.at_end() {
            LaglessCommand::ShowConsistency
        } else {
            misplaced_lagless_read()
        });
    }
}

/// `ANALYZE SELECT` runs and profiles a read; `ANALYZE TABLE` and `ANALYZE UPDATE` write.
fn analyze(p: &mut Parser<'_>, st: &mut Stmt) {
    if p.eat_kw(Kw::Format) && p.eat(Tok::Punct(b'=')) && !p.at_end() {
        p.bump();
    }
    if p.peek() == Tok::Punct(b'(')
        || matches!(p.peek_kw(), Some(Kw::Select | Kw::With | Kw::Values))
    {
        st.target = Target::Replica;
    }
}

fn show(p: &mut Parser<'_>, st: &mut Stmt) {
    st.target = Target::Replica;
    let Tok::Word(word) = p.peek() else {
        return;
    };
    if is_name(word, LAGLESS_VARIABLE) {
        p.bump();
        st.lagless = Some(if p.at_end() {
            LaglessCommand::ShowConsistency
        } else {
            misplaced_lagless_read()
        });
        return;
    }
    match keyword(word) {
        Some(Kw::Warnings | Kw::Errors | Kw::Count | Kw::Profile | Kw::Profiles) => {
            st.need(Target::LastBackend)
        }
        // Session counters and settings are those of the backend that served the session;
        // global ones are the primary's, the server the application believes it talks to.
        Some(Kw::Status | Kw::Variables) => st.need(Target::LastBackend),
        Some(Kw::Session | Kw::Local) => {
            p.bump();
            if matches!(p.peek_kw(), Some(Kw::Status | Kw::Variables)) {
                st.need(Target::LastBackend);
            }
        }
        Some(Kw::Global) => {
            p.bump();
            if matches!(p.peek_kw(), Some(Kw::Status | Kw::Variables)) {
                st.need(Target::Primary);
            }
        }
        // These describe one server (its binlog, replication threads, connections): the
        // application means the primary.
        Some(
            Kw::Master
            | Kw::Binary
            | Kw::Binlog
            | Kw::Relaylog
            | Kw::Slave
            | Kw::Replica
            | Kw::Replicas
            | Kw::All
            | Kw::Processlist
            | Kw::Explain
            | Kw::Analyze,
        ) => st.need(Target::Primary),
        Some(Kw::Full) => {
            p.bump();
            if p.peek_kw() == Some(Kw::Processlist) {
                st.need(Target::Primary);
            }
        }
        _ => {}
    }
}

fn use_database(p: &mut Parser<'_>, st: &mut Stmt) {
    let name = match p.peek() {
        Tok::Word(word) => Cow::Borrowed(word),
        Tok::Ident(raw, quote) => unquote(raw, quote),
        _ => return,
    };
    p.bump();
    match String::from_utf8(name.into_owned()) {
        Ok(name) => st.effects.use_database = Some(name),
        Err(_) => st.effects.session_set = Some(SessionSet::NotReplayable),
    }
}

/// Undoubles the quotes inside a quoted identifier.
fn unquote(raw: &[u8], quote: u8) -> Cow<'_, [u8]> {
    if !raw.contains(&quote) {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter().copied();
    while let Some(b) = bytes.next() {
        out.push(b);
        if b == quote {
            bytes.next();
        }
    }
    Cow::Owned(out)
}

fn begin(p: &mut Parser<'_>, st: &mut Stmt) -> Flow {
    if p.eat_kw(Kw::Not) {
        return if p.eat_kw(Kw::Atomic) {
            Flow::Nested
        } else {
            Flow::Done
        };
    }
    p.eat_kw(Kw::Work);
    st.effects.begins_transaction = p.at_end();
    Flow::Done
}

fn start(p: &mut Parser<'_>, st: &mut Stmt) {
    if p.eat_kw(Kw::Transaction) {
        st.effects.begins_transaction = true;
        st.effects.read_only_transaction = p.skip_finding(&[(Kw::Read, Kw::Only)]);
    }
}

/// `COMMIT`/`ROLLBACK [WORK] [AND [NO] CHAIN] [[NO] RELEASE]`; `ROLLBACK ... TO` keeps the
/// transaction open.
fn end_transaction(kw: Kw, p: &mut Parser<'_>, st: &mut Stmt) {
    p.eat_kw(Kw::Work);
    if kw == Kw::Rollback && p.peek_kw() == Some(Kw::To) {
        return;
    }
    st.effects.ends_transaction = true;
    st.effects.begins_transaction = p.skip_finding(&[(Kw::And, Kw::Chain)]);
}

fn xa(p: &mut Parser<'_>, st: &mut Stmt) {
    match p.peek_kw() {
        Some(Kw::Start | Kw::Begin) => st.effects.begins_transaction = true,
        Some(Kw::Commit | Kw::Rollback) => st.effects.ends_transaction = true,
        _ => {}
    }
}

/// Finds what is created or altered: a temporary table, or a stored program whose body holds
/// `;`s of its own.
fn create_or_alter(kw: Kw, p: &mut Parser<'_>, st: &mut Stmt) {
    let mut temporary = false;
    while !p.at_end() {
        match p.peek() {
            Tok::Punct(b'(') => return,
            Tok::Word(word) => match keyword(word) {
                Some(Kw::Temporary) => temporary = true,
                Some(Kw::Table) => {
                    st.effects.creates_temp_table = temporary && kw == Kw::Create;
                    return;
                }
                Some(Kw::Procedure | Kw::Function | Kw::Trigger | Kw::Event | Kw::Package) => {
                    return skip_stored_program(p);
                }
                Some(Kw::View | Kw::Index | Kw::Database | Kw::Schema | Kw::User | Kw::Role) => {
                    return;
                }
                _ => {}
            },
            _ => {}
        }
        p.bump();
    }
}

/// Consumes a stored-program definition: the `;`s inside `BEGIN ... END` belong to its body,
/// and nothing in the body runs now. `CASE ... END` nests as well; `END IF`, `END LOOP`,
/// `END WHILE`, `END REPEAT` and `END FOR` close blocks that were not counted.
fn skip_stored_program(p: &mut Parser<'_>) {
    let mut depth = 0usize;
    let mut after_dot = false;
    loop {
        let tok = p.peek();
        match tok {
            Tok::End | Tok::Unterminated => return,
            Tok::Punct(b';') if depth == 0 => return,
            _ => {}
        }
        p.bump();
        if let Tok::Word(word) = tok
            && !after_dot
        {
            match keyword(word) {
                Some(Kw::Begin | Kw::Case) => depth += 1,
                Some(Kw::End) => match p.peek_kw() {
                    Some(Kw::If | Kw::Loop | Kw::While | Kw::Repeat | Kw::For) => {
                        p.bump();
                    }
                    next => {
                        if next == Some(Kw::Case) {
                            p.bump();
                        }
                        depth = depth.saturating_sub(1);
                    }
                },
                _ => {}
            }
        }
        after_dot = tok == Tok::Punct(b'.');
    }
}

/// `GET [CURRENT | STACKED] DIAGNOSTICS`: reads the previous statement's diagnostics area and
/// assigns them to variables.
fn diagnostics(p: &mut Parser<'_>, st: &mut Stmt) {
    if !matches!(
        p.peek_kw(),
        Some(Kw::Diagnostics | Kw::Current | Kw::Stacked)
    ) {
        return;
    }
    st.target = Target::LastBackend;
    while !p.at_end() {
        if p.bump() == Tok::UserVar {
            st.effects.user_variable_write = true;
        }
    }
}

/// Reads the rest of a statement for anything that pins it to the primary (or to the last
/// backend) and for the effects of functions and variables.
fn scan_rest(p: &mut Parser<'_>, st: &mut Stmt) {
    let mut into = false;
    let mut after_dot = false;
    while !p.at_end() {
        let tok = p.bump();
        match tok {
            // After `.` even a reserved word is a column or table name.
            Tok::Word(word) if !after_dot => scan_word(p, st, word, &mut into),
            Tok::UserVar => user_variable(p, st, into),
            Tok::SysVar(scope, name) => system_variable(st, scope, name),
            Tok::Word(word) => server_table(st, word),
            _ => {}
        }
        after_dot = tok == Tok::Punct(b'.');
    }
}

fn scan_word(p: &mut Parser<'_>, st: &mut Stmt, word: &[u8], into: &mut bool) {
    let Some(kw) = keyword(word) else {
        return;
    };
    match kw {
        Kw::Into => {
            *into = true;
            st.need(Target::Primary);
        }
        // `FOR UPDATE`, `LOCK IN SHARE MODE`, a CTE followed by a write, `EXPLAIN DELETE`.
        Kw::Update | Kw::Delete | Kw::Lock | Kw::SqlCalcFoundRows => st.need(Target::Primary),
        // INSERT() and REPLACE() are also string functions.
        Kw::Insert | Kw::Replace if !p.at_call() => st.need(Target::Primary),
        Kw::For if matches!(p.peek_kw(), Some(Kw::Share | Kw::Connection)) => {
            st.need(Target::Primary)
        }
        Kw::Next | Kw::Previous if p.peek_kw() == Some(Kw::Value) => st.need(Target::Primary),
        _ if kw.is_lock_function() && p.at_call() => {
            st.need(Target::Primary);
            st.effects.user_lock = true;
        }
        _ if kw.is_pinned_function() && p.at_call() => st.need(Target::Primary),
        _ => {}
    }
}

/// User variables live in the session on the primary; `into` is set after `INTO`.
fn user_variable(p: &mut Parser<'_>, st: &mut Stmt, into: bool) {
    st.need(Target::Primary);
    if into || p.peek() == Tok::Assign {
        st.effects.user_variable_write = true;
    }
}

/// `information_schema.GLOBAL_STATUS` and the like, named after a `.`: global counters and
/// settings are the primary's, session ones the last backend's (as for `SHOW`).
fn server_table(st: &mut Stmt, word: &[u8]) {
    if !matches!(word.len(), 13 | 14 | 16) {
        return;
    }
    if is_name(word, b"GLOBAL_STATUS") || is_name(word, b"GLOBAL_VARIABLES") {
        st.need(Target::Primary);
    } else if is_name(word, b"SESSION_STATUS") || is_name(word, b"SESSION_VARIABLES") {
        st.need(Target::LastBackend);
    }
}

fn system_variable(st: &mut Stmt, scope: VarScope, name: &[u8]) {
    if scope == VarScope::Global {
        // A server setting: the primary's is the one the application means.
        st.need(Target::Primary);
    } else if is_name(name, b"warning_count") || is_name(name, b"error_count") {
        st.need(Target::LastBackend);
    } else if is_name(name, LAGLESS_VARIABLE) {
        st.lagless = Some(misplaced_lagless_read());
    } else if PRIMARY_VARIABLES.iter().any(|v| is_name(name, v))
        || name
            .get(..5)
            .is_some_and(|prefix| is_name(prefix, b"gtid_"))
    {
        st.need(Target::Primary);
    }
}

// ---------------------------------------------------------------------------------------------
// SET

/// What the assignments of one `SET` add up to.
struct SetList {
    /// The last `GLOBAL`/`SESSION` modifier, which applies to the assignments after it.
    scope: VarScope,
    assignments: usize,
    session: bool,
    global: bool,
    replayable: bool,
    lagless: Option<LaglessCommand>,
}

impl SetList {
    /// Marks session state this classifier cannot describe.
    fn opaque(&mut self) {
        self.session = true;
        self.replayable = false;
    }

    fn finish(self, st: &mut Stmt) {
        if let Some(command) = self.lagless {
            st.lagless = Some(if self.assignments == 1 {
                command
            } else {
                invalid("set lagless_consistency in a SET statement of its own")
            });
            return;
        }
        if self.session {
            let replayable = self.replayable && !self.global;
            st.effects.session_set = Some(if replayable {
                SessionSet::Replayable
            } else {
                SessionSet::NotReplayable
            });
        }
    }
}

fn set(p: &mut Parser<'_>, st: &mut Stmt) {
    // Next-transaction settings, roles, passwords and per-statement settings; `scan_rest`
    // still reads them for functions and variables.
    if matches!(
        p.peek_kw(),
        Some(
            Kw::Transaction | Kw::Password | Kw::Role | Kw::Default | Kw::Statement | Kw::Resource
        )
    ) {
        st.effects.session_set = Some(SessionSet::NotReplayable);
        return;
    }
    let mut list = SetList {
        scope: VarScope::Unqualified,
        assignments: 0,
        session: false,
        global: false,
        replayable: true,
        lagless: None,
    };
    loop {
        assignment(p, st, &mut list);
        if !p.eat(Tok::Punct(b',')) {
            break;
        }
    }
    if !p.at_end() {
        list.opaque();
    }
    list.finish(st);
}

fn assignment(p: &mut Parser<'_>, st: &mut Stmt, list: &mut SetList) {
    list.assignments += 1;
    while let Some(scope) = p.peek_kw().and_then(Kw::scope) {
        list.scope = scope;
        p.bump();
    }
    let (scope, name) = match p.bump() {
        Tok::Word(word) => match keyword(word) {
            Some(Kw::Names | Kw::Charset) => return charset(p, st, list),
            Some(Kw::Character) if p.eat_kw(Kw::Set) => return charset(p, st, list),
            Some(Kw::Transaction) => return transaction_characteristics(p, list),
            _ => (list.scope, word),
        },
        Tok::Ident(name, _) => (list.scope, name),
        Tok::SysVar(VarScope::Unqualified, name) => (VarScope::Session, name),
        Tok::SysVar(scope, name) => (scope, name),
        Tok::UserVar => return user_assignment(p, st, list),
        _ => return list.opaque(),
    };
    // A dotted name is a key cache setting or a trigger's NEW.column: not session state we know.
    if p.peek() == Tok::Punct(b'.') || !p.eat_assign() {
        return list.opaque();
    }
    let value = set_value(p, st);
    if is_name(name, LAGLESS_VARIABLE) {
        list.lagless = Some(lagless_assignment(p.lex.src, scope, &value));
        return;
    }
    if scope == VarScope::Global {
        list.global = true;
        return;
    }
    list.session = true;
    list.replayable &= value.replayable;
    if is_name(name, b"autocommit") {
        match value.boolean() {
            Some(on) => st.effects.autocommit = Some(on),
            // The session layer cannot tell the mode, so it must not assume one.
            None => list.replayable = false,
        }
    }
}

/// `SET NAMES ...`, `SET CHARACTER SET ...`, `SET CHARSET ...`.
fn charset(p: &mut Parser<'_>, st: &mut Stmt, list: &mut SetList) {
    let value = set_value(p, st);
    list.session = true;
    list.replayable &= value.replayable;
}

/// `SET SESSION TRANSACTION ...` lasts for the session; `SET GLOBAL TRANSACTION ...` is
/// server configuration.
fn transaction_characteristics(p: &mut Parser<'_>, list: &mut SetList) {
    match list.scope {
        VarScope::Global => list.global = true,
        VarScope::Session => list.session = true,
        VarScope::Unqualified => list.opaque(),
    }
    p.skip_to_end();
}

fn user_assignment(p: &mut Parser<'_>, st: &mut Stmt, list: &mut SetList) {
    st.effects.user_variable_write = true;
    list.opaque();
    if p.eat_assign() {
        set_value(p, st);
    }
}

/// The right-hand side of one `SET` assignment.
struct Value<'a> {
    first: Option<Tok<'a>>,
    tokens: usize,
    span: (usize, usize),
    /// No function call, subquery, user or system variable.
    replayable: bool,
}

impl Value<'_> {
    fn boolean(&self) -> Option<bool> {
        let text = match (self.tokens, self.first) {
            (1, Some(Tok::Word(text) | Tok::Str(text))) => text,
            _ => return None,
        };
        let any = |names: [&[u8]; 3]| names.iter().any(|name| is_name(text, name));
        if any([b"1", b"ON", b"TRUE"]) {
            Some(true)
        } else if any([b"0", b"OFF", b"FALSE"]) {
            Some(false)
        } else {
            None
        }
    }
}

/// Reads a value up to the `,` that ends the assignment.
fn set_value<'a>(p: &mut Parser<'a>, st: &mut Stmt) -> Value<'a> {
    let mut value = Value {
        first: None,
        tokens: 0,
        span: (0, 0),
        replayable: true,
    };
    let mut depth = 0usize;
    loop {
        match p.peek() {
            Tok::End | Tok::Unterminated | Tok::Punct(b';') => break,
            Tok::Punct(b',') if depth == 0 => break,
            _ => {}
        }
        let tok = p.bump();
        if value.tokens == 0 {
            value.first = Some(tok);
            value.span.0 = p.span.0;
        }
        value.span.1 = p.span.1;
        value.tokens += 1;
        match tok {
            Tok::Punct(b'(') => depth += 1,
            Tok::Punct(b')') => depth = depth.saturating_sub(1),
            Tok::Word(word) => {
                // Functions and subqueries are evaluated by the server that runs them.
                if p.at_call() || keyword(word) == Some(Kw::Select) {
                    value.replayable = false;
                }
                scan_word(p, st, word, &mut false);
            }
            Tok::UserVar => {
                value.replayable = false;
                user_variable(p, st, false);
            }
            Tok::SysVar(scope, name) => {
                value.replayable = false;
                system_variable(st, scope, name);
            }
            _ => {}
        }
    }
    value
}

/// `SET [SESSION] lagless_consistency = <mode> | DEFAULT`.
fn lagless_assignment(src: &[u8], scope: VarScope, value: &Value<'_>) -> LaglessCommand {
    if scope == VarScope::Global {
        return invalid(
            "lagless_consistency is a session setting; \
             the cluster default is set in the MySQLCluster spec",
        );
    }
    let text = match (value.tokens, value.first) {
        (0, _) => return invalid("SET lagless_consistency needs a value"),
        (1, Some(Tok::Str(text))) => text,
        (1, Some(Tok::Word(word))) if keyword(word) == Some(Kw::Default) => {
            return LaglessCommand::ResetConsistency;
        }
        // An unquoted value such as bounded(500ms) spans several tokens.
        _ => src.get(value.span.0..value.span.1).unwrap_or_default(),
    };
    let parsed = std::str::from_utf8(text)
        .map_err(|_| ParseConsistencyError::UnknownMode(String::from_utf8_lossy(text).into()))
        .and_then(str::parse);
    match parsed {
        Ok(mode) => LaglessCommand::SetConsistency(mode),
        Err(err) => LaglessCommand::Invalid(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use Target::{LastBackend, Primary, Replica};

    /// One expected effect, to keep the tables short.
    #[derive(Debug, Clone, Copy)]
    enum E {
        Begin,
        ReadOnly,
        End,
        Autocommit(bool),
        TempTable,
        Lock,
        Unlock,
        UserLock,
        VarWrite,
        Replayable,
        NotReplayable,
        Use(&'static str),
    }

    fn effects(list: &[E]) -> Effects {
        let mut e = Effects::default();
        for item in list {
            match *item {
                E::Begin => e.begins_transaction = true,
                E::ReadOnly => e.read_only_transaction = true,
                E::End => e.ends_transaction = true,
                E::Autocommit(on) => e.autocommit = Some(on),
                E::TempTable => e.creates_temp_table = true,
                E::Lock => e.locks_tables = true,
                E::Unlock => e.unlocks_tables = true,
                E::UserLock => e.user_lock = true,
                E::VarWrite => e.user_variable_write = true,
                E::Replayable => e.session_set = Some(SessionSet::Replayable),
                E::NotReplayable => e.session_set = Some(SessionSet::NotReplayable),
                E::Use(db) => e.use_database = Some(db.to_owned()),
            }
        }
        e
    }

    /// Plain reads: a replica may serve them and they change nothing.
    const READS: &[&str] = &[
        "SELECT 1",
        "select * from sbtest1 where id = 5023",
        "SELECT c FROM sbtest1 WHERE id=5023",
        "SELECT c FROM sbtest1 WHERE id BETWEEN 4987 AND 5086",
        "SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN 4987 AND 5086",
        "SELECT c FROM sbtest1 WHERE id BETWEEN 4987 AND 5086 ORDER BY c",
        "SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN 4987 AND 5086 ORDER BY c",
        "SELECT @@version_comment LIMIT 1",
        "select @@version_comment limit 1",
        "/* mysql-connector-java-8.0.33 (Revision: 7d6b0800528b6b25c68b52dc10d6c1c8429c100c) */\
         SELECT  @@session.auto_increment_increment AS auto_increment_increment, \
         @@character_set_client AS character_set_client, @@character_set_connection AS \
         character_set_connection, @@character_set_results AS character_set_results, \
         @@character_set_server AS character_set_server, @@collation_server AS collation_server, \
         @@collation_connection AS collation_connection, @@init_connect AS init_connect, \
         @@interactive_timeout AS interactive_timeout, @@license AS license, \
         @@lower_case_table_names AS lower_case_table_names, @@max_allowed_packet AS \
         max_allowed_packet, @@net_write_timeout AS net_write_timeout, @@performance_schema AS \
         performance_schema, @@sql_mode AS sql_mode, @@system_time_zone AS system_time_zone, \
         @@time_zone AS time_zone, @@transaction_isolation AS transaction_isolation, \
         @@wait_timeout AS wait_timeout",
        "SELECT @@max_allowed_packet,@@system_time_zone,@@time_zone,@@auto_increment_increment",
        "SELECT @@session.transaction_read_only",
        "SELECT @@tx_isolation",
        "SELECT DATABASE()",
        "SELECT VERSION()",
        "SELECT NOW(), UUID(), RAND()",
        "  \n\t SELECT 1  ",
        "/* ping */ SELECT 1",
        "-- leading comment\nSELECT 1",
        "--\tleading comment\nSELECT 1",
        "# leading comment\nSELECT 1",
        "SELECT /* comment */ 1 /* FOR UPDATE */",
        "SELECT 1 -- FOR UPDATE",
        "SELECT 1 # INTO @x",
        "SELECT --1",
        "SELECT a FROM t WHERE b = 'x' -- note\n AND c = 1",
        "SeLeCt name FrOm users WhErE id = 7",
        "SELECT 'FOR UPDATE'",
        "SELECT \"LOCK IN SHARE MODE\", 'INTO @x', 'GET_LOCK(1)'",
        "SELECT 'it''s', 'a\\'b', \"q\"\"q\" FROM t WHERE a = 'INSERT INTO t'",
        "SELECT `update`, `delete` FROM `insert` WHERE `for` = 1",
        "SELECT `a``b` FROM t",
        "SELECT t.update, t.delete, t.lock FROM t",
        "SELECT get_lock, last_insert_id FROM t",
        "SELECT REPLACE(name, 'a', 'b'), INSERT('Quadratic', 3, 4, 'What') FROM t",
        "SELECT * FROM t FORCE INDEX FOR ORDER BY (i) ORDER BY i",
        "SELECT * FROM t FOR SYSTEM_TIME AS OF TIMESTAMP '2024-01-01 00:00:00'",
        "SELECT /*+ MAX_EXECUTION_TIME(1000) */ * FROM t",
        "SELECT 1 /*+ FOR UPDATE */",
        "SELECT id FROM t WHERE name LIKE '%\\_%'",
        "SELECT JSON_EXTRACT(doc, '$.update') FROM t",
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'db'",
        "SELECT * FROM t WHERE id IN (SELECT id FROM u)",
        "SELECT 1 FROM t WHERE a = @@sql_mode",
        "SELECT 'héllo', naïve FROM t",
        "(SELECT a FROM t1) UNION (SELECT a FROM t2)",
        "((SELECT 1))",
        "WITH cte AS (SELECT 1 AS a) SELECT a FROM cte",
        "WITH RECURSIVE r (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
        "VALUES ROW(1, 2), ROW(3, 4)",
        "TABLE t ORDER BY a LIMIT 2",
        "DESCRIBE t",
        "DESC t",
        "EXPLAIN t",
        "EXPLAIN SELECT * FROM t",
        "EXPLAIN FORMAT=JSON SELECT 1",
        "EXPLAIN ANALYZE SELECT * FROM t",
        "ANALYZE SELECT * FROM t",
        "ANALYZE FORMAT=JSON SELECT 1",
        "SHOW TABLES",
        "show databases",
        "SHOW FULL TABLES FROM db",
        "SHOW FULL COLUMNS FROM t",
        "SHOW CREATE TABLE t",
        "SHOW INDEX FROM t",
        "SHOW GRANTS",
        "HELP 'contents'",
        "/*!40101 SELECT 1 */",
        "SELECT 1 /*!50000 , 2 */",
        "SELECT 1;",
        "SELECT 1; SELECT 2",
        "SELECT 1 ;; SELECT 2 ; ",
    ];

    /// Statements that must run on the primary and change nothing the session tracks.
    const PRIMARY: &[&str] = &[
        "INSERT INTO sbtest1 (id, k, c, pad) VALUES (5023, 4998, 'c', 'pad')",
        "UPDATE sbtest1 SET k=k+1 WHERE id=5023",
        "UPDATE sbtest1 SET c='83868641912-28773972837' WHERE id=5023",
        "DELETE FROM sbtest1 WHERE id=5023",
        "REPLACE INTO t VALUES (1)",
        "INSERT t VALUES (1) ON DUPLICATE KEY UPDATE a = 1",
        "CREATE TABLE t (id INT PRIMARY KEY)",
        "CREATE TABLE t (temporary INT)",
        "ALTER TABLE t ADD COLUMN b INT",
        "DROP TABLE t",
        "DROP TEMPORARY TABLE t",
        "TRUNCATE TABLE t",
        "RENAME TABLE a TO b",
        "CREATE VIEW v AS SELECT * FROM t",
        "CALL p(1)",
        "DO 1",
        "DO SLEEP(1)",
        "SELECT * FROM t FOR UPDATE",
        "SELECT * FROM t WHERE id = 1 FOR UPDATE NOWAIT",
        "SELECT * FROM t FOR UPDATE SKIP LOCKED",
        "select * from t for share",
        "SELECT * FROM t LOCK IN SHARE MODE",
        "SELECT * FROM t FOR/* x */UPDATE",
        "SELECT * FROM t FOR -- x\n UPDATE",
        "SELECT 1 /*!FOR UPDATE*/",
        "SELECT * FROM t /*!50000 LOCK IN SHARE MODE */",
        "/*M!100100 SELECT * FROM t FOR UPDATE */",
        "SELECT a INTO OUTFILE '/tmp/x' FROM t",
        "SELECT a FROM t INTO DUMPFILE '/tmp/y'",
        "SELECT LAST_INSERT_ID()",
        "SELECT last_insert_id ()",
        "SELECT FOUND_ROWS()",
        "SELECT ROW_COUNT()",
        "SELECT CONNECTION_ID()",
        "SELECT NEXTVAL(s)",
        "SELECT LASTVAL(s)",
        "SELECT SETVAL(s, 10)",
        "SELECT NEXT VALUE FOR s",
        "SELECT PREVIOUS VALUE FOR s",
        "SELECT MASTER_POS_WAIT('log.000001', 4)",
        "SELECT MASTER_GTID_WAIT('0-1-100', 1)",
        "SELECT WAIT_FOR_EXECUTED_GTID_SET('3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5', 1)",
        "SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 10",
        "SELECT @x",
        "SELECT * FROM t WHERE id = @id",
        "SELECT @`my var`, @'other'",
        "SELECT @@identity",
        "SELECT @@last_insert_id",
        "SELECT @@read_only",
        "SELECT @@global.gtid_executed",
        "SELECT @@global.max_connections",
        "SHOW GLOBAL STATUS LIKE 'Threads_connected'",
        "show global variables like 'max_allowed_packet'",
        "SELECT * FROM information_schema.GLOBAL_VARIABLES",
        "SELECT VARIABLE_VALUE FROM information_schema.global_status WHERE 1",
        "SELECT @@gtid_binlog_pos",
        "SHOW MASTER STATUS",
        "SHOW BINARY LOGS",
        "SHOW SLAVE STATUS",
        "SHOW REPLICA STATUS",
        "SHOW ALL SLAVES STATUS",
        "SHOW SLAVE HOSTS",
        "SHOW REPLICAS",
        "SHOW BINLOG EVENTS",
        "SHOW PROCESSLIST",
        "SHOW FULL PROCESSLIST",
        "SHOW EXPLAIN FOR 12",
        "WITH c AS (SELECT id FROM t) UPDATE t JOIN c USING (id) SET a = 1",
        "WITH c AS (SELECT 1) DELETE FROM t WHERE id IN (SELECT * FROM c)",
        "EXPLAIN UPDATE t SET a = 1",
        "EXPLAIN DELETE FROM t",
        "EXPLAIN INSERT INTO t VALUES (1)",
        "EXPLAIN REPLACE INTO t VALUES (1)",
        "EXPLAIN FOR CONNECTION 7",
        "ANALYZE UPDATE t SET a = 1",
        "ANALYZE TABLE t",
        "ANALYZE LOCAL TABLE t",
        "ANALYZE NO_WRITE_TO_BINLOG TABLE t",
        "SAVEPOINT s1",
        "RELEASE SAVEPOINT s1",
        "ROLLBACK TO SAVEPOINT s1",
        "ROLLBACK WORK TO s1",
        "XA END 'x'",
        "XA PREPARE 'x'",
        "XA RECOVER",
        "FLUSH PRIVILEGES",
        "FLUSH LOGS",
        "KILL 12",
        "KILL QUERY 12",
        "HANDLER t OPEN",
        "HANDLER t READ FIRST",
        "LOAD DATA LOCAL INFILE 'x.csv' INTO TABLE t",
        "PREPARE s FROM 'SELECT 1'",
        "EXECUTE s",
        "DEALLOCATE PREPARE s",
        "GRANT SELECT ON db.* TO 'u'@'%'",
        "START SLAVE",
        "STOP SLAVE",
        "CHANGE MASTER TO MASTER_USE_GTID = slave_pos",
        "RESET MASTER",
        "OPTIMIZE TABLE t",
        "CHECKSUM TABLE t",
        "LOCK INSTANCE FOR BACKUP",
        "BACKUP STAGE START",
        "SET GLOBAL max_connections = 500",
        "SET @@global.sql_mode = ''",
        "SET PERSIST max_connections = 500",
        "SET GLOBAL TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SET GLOBAL autocommit = 0",
        "SET GLOBAL max_connections = 500, autocommit = 0",
        "",
        "   ",
        "/* only a comment */",
        "-- x",
        ";",
        ";;",
        "USE",
        "{call p()}",
        "END",
        "SELECT 1; INSERT INTO t VALUES (1)",
        "INSERT INTO t VALUES (1); SELECT 1",
        "CREATE PROCEDURE p() BEGIN SELECT 1; START TRANSACTION; END",
        "CREATE DEFINER=`root`@`localhost` PROCEDURE p() BEGIN DECLARE x INT; \
         IF x THEN BEGIN SELECT 1; END; END IF; CASE x WHEN 1 THEN SET @a = 1; END CASE; \
         l: LOOP LEAVE l; END LOOP; END",
        "CREATE EVENT e ON SCHEDULE EVERY 1 HOUR DO BEGIN DELETE FROM t; UNLOCK TABLES; END",
        "CREATE FUNCTION f(a INT) RETURNS INT DETERMINISTIC BEGIN RETURN a + 1; END",
        "BEGIN NOT ATOMIC SELECT 1; END",
    ];

    /// Statements that read the previous statement's diagnostics.
    const LAST_BACKEND: &[&str] = &[
        "SHOW WARNINGS",
        "show warnings limit 10",
        "SHOW ERRORS",
        "SHOW COUNT(*) WARNINGS",
        "SHOW COUNT(*) ERRORS",
        "SHOW /* c */ WARNINGS",
        "SHOW PROFILES",
        "SHOW STATUS LIKE 'Com_select'",
        "SHOW SESSION STATUS",
        "show local variables like 'time_zone'",
        "SHOW VARIABLES",
        "SELECT * FROM information_schema.SESSION_STATUS",
        "SELECT @@warning_count",
        "SELECT @@session.warning_count",
        "SELECT @@error_count",
        "select @@WARNING_COUNT, @@ERROR_COUNT",
        "SELECT 1; SHOW WARNINGS",
    ];

    /// Statements with effects: (statement, target, effects).
    #[rustfmt::skip]
    const EFFECTS: &[(&str, Target, &[E])] = &[
        // Transactions.
        ("BEGIN", Primary, &[E::Begin]),
        ("begin work", Primary, &[E::Begin]),
        ("BEGIN;", Primary, &[E::Begin]),
        ("START TRANSACTION", Primary, &[E::Begin]),
        ("START /* c */ TRANSACTION", Primary, &[E::Begin]),
        ("START TRANSACTION READ WRITE", Primary, &[E::Begin]),
        ("START TRANSACTION READ ONLY", Primary, &[E::Begin, E::ReadOnly]),
        ("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY", Primary, &[E::Begin, E::ReadOnly]),
        ("XA START 'x'", Primary, &[E::Begin]),
        ("XA BEGIN 'x'", Primary, &[E::Begin]),
        ("COMMIT", Primary, &[E::End]),
        ("commit work", Primary, &[E::End]),
        ("COMMIT RELEASE", Primary, &[E::End]),
        ("COMMIT AND NO CHAIN", Primary, &[E::End]),
        ("COMMIT AND CHAIN", Primary, &[E::End, E::Begin]),
        ("ROLLBACK", Primary, &[E::End]),
        ("ROLLBACK WORK", Primary, &[E::End]),
        ("ROLLBACK AND CHAIN NO RELEASE", Primary, &[E::End, E::Begin]),
        ("XA COMMIT 'x'", Primary, &[E::End]),
        ("XA COMMIT 'x' ONE PHASE", Primary, &[E::End]),
        ("XA ROLLBACK 'x'", Primary, &[E::End]),
        ("BEGIN; INSERT INTO t VALUES (1); COMMIT", Primary, &[E::End]),
        ("COMMIT; BEGIN", Primary, &[E::End, E::Begin]),
        ("START TRANSACTION READ ONLY; COMMIT", Primary, &[E::End]),
        ("BEGIN NOT ATOMIC START TRANSACTION; INSERT INTO t VALUES (1); END", Primary, &[E::Begin]),
        ("CREATE TRIGGER trg BEFORE INSERT ON t FOR EACH ROW SET NEW.a = 1; BEGIN", Primary, &[E::Begin]),
        ("CREATE FUNCTION f() RETURNS INT RETURN (SELECT CASE WHEN 1 THEN 2 END); COMMIT", Primary, &[E::End]),
        // Autocommit.
        ("SET autocommit=0", Primary, &[E::Autocommit(false), E::Replayable]),
        ("SET AUTOCOMMIT = 0", Primary, &[E::Autocommit(false), E::Replayable]),
        ("set autocommit=1", Primary, &[E::Autocommit(true), E::Replayable]),
        ("SET autocommit = ON", Primary, &[E::Autocommit(true), E::Replayable]),
        ("SET autocommit=off", Primary, &[E::Autocommit(false), E::Replayable]),
        ("SET autocommit = true", Primary, &[E::Autocommit(true), E::Replayable]),
        ("SET autocommit = FALSE", Primary, &[E::Autocommit(false), E::Replayable]),
        ("SET autocommit = 'ON'", Primary, &[E::Autocommit(true), E::Replayable]),
        ("SET autocommit := 0", Primary, &[E::Autocommit(false), E::Replayable]),
        ("SET @@autocommit=0", Primary, &[E::Autocommit(false), E::Replayable]),
        ("SET SESSION autocommit=0", Primary, &[E::Autocommit(false), E::Replayable]),
        ("SET @@session.autocommit = 1", Primary, &[E::Autocommit(true), E::Replayable]),
        ("SET LOCAL autocommit=0", Primary, &[E::Autocommit(false), E::Replayable]),
        ("SET /* c */ autocommit /* c */ = /* c */ 0", Primary, &[E::Autocommit(false), E::Replayable]),
        ("SET NAMES utf8, autocommit=0", Primary, &[E::Autocommit(false), E::Replayable]),
        ("SET autocommit=0; SET autocommit=1", Primary, &[E::Autocommit(true), E::Replayable]),
        ("SET NAMES utf8mb4; SET autocommit = 0", Primary, &[E::Autocommit(false), E::Replayable]),
        ("SET GLOBAL wait_timeout = 60, SESSION autocommit = 0", Primary, &[E::Autocommit(false), E::NotReplayable]),
        ("SET autocommit = @x", Primary, &[E::NotReplayable]),
        ("SET autocommit = IF(1, 0, 1)", Primary, &[E::NotReplayable]),
        ("SET autocommit = DEFAULT", Primary, &[E::NotReplayable]),
        // SQL-level prepared statements whose text leaves state behind pin the session.
        ("PREPARE s FROM 'SET time_zone = ?'", Primary, &[E::NotReplayable]),
        ("prepare s from 'set names ?'", Primary, &[E::NotReplayable]),
        ("PREPARE s FROM 'CREATE TEMPORARY TABLE t (a INT)'", Primary, &[E::NotReplayable]),
        ("EXECUTE IMMEDIATE 'SET sql_mode = ''ANSI'''", Primary, &[E::NotReplayable]),
        ("PREPARE s FROM 'SELECT GET_LOCK(?, 1)'", Primary, &[E::NotReplayable]),
        ("PREPARE s FROM 'INSERT INTO t VALUES (?)'", Primary, &[]),
        ("EXECUTE IMMEDIATE 'SELECT 1'", Primary, &[]),
        ("PREPARE s FROM @sql", Primary, &[]),
        // Temporary tables and table locks.
        ("CREATE TEMPORARY TABLE tmp (id INT)", Primary, &[E::TempTable]),
        ("create temporary table if not exists tmp select 1 as a", Primary, &[E::TempTable]),
        ("CREATE OR REPLACE TEMPORARY TABLE tmp (a INT)", Primary, &[E::TempTable]),
        ("LOCK TABLES t READ", Primary, &[E::Lock]),
        ("lock table t write, u read", Primary, &[E::Lock]),
        ("LOCK # c\n TABLES t READ", Primary, &[E::Lock]),
        ("FLUSH TABLES WITH READ LOCK", Primary, &[E::Lock]),
        ("FLUSH TABLES t1, t2 WITH READ LOCK", Primary, &[E::Lock]),
        ("FLUSH NO_WRITE_TO_BINLOG TABLES WITH READ LOCK", Primary, &[E::Lock]),
        ("FLUSH TABLES t FOR EXPORT", Primary, &[E::Lock]),
        ("UNLOCK TABLES", Primary, &[E::Unlock]),
        ("LOCK TABLES t WRITE; UNLOCK TABLES", Primary, &[E::Unlock]),
        ("UNLOCK TABLES; LOCK TABLES t READ", Primary, &[E::Lock, E::Unlock]),
        // User-level locks.
        ("SELECT GET_LOCK('job', 10)", Primary, &[E::UserLock]),
        ("select get_lock('job', 10) as got", Primary, &[E::UserLock]),
        ("SELECT RELEASE_LOCK('job')", Primary, &[E::UserLock]),
        ("SELECT RELEASE_ALL_LOCKS()", Primary, &[E::UserLock]),
        ("SELECT IS_FREE_LOCK('job')", Primary, &[E::UserLock]),
        ("SELECT IS_USED_LOCK('job')", Primary, &[E::UserLock]),
        ("DO GET_LOCK('job', 0)", Primary, &[E::UserLock]),
        ("DO RELEASE_LOCK('job')", Primary, &[E::UserLock]),
        ("WITH c AS (SELECT GET_LOCK('a', 1)) SELECT * FROM c WHERE 0", Primary, &[E::UserLock]),
        ("SET @got = GET_LOCK('job', 5)", Primary, &[E::UserLock, E::VarWrite, E::NotReplayable]),
        // User variables.
        ("SET @x = 1", Primary, &[E::VarWrite, E::NotReplayable]),
        ("SET @x := 1, @y = 2", Primary, &[E::VarWrite, E::NotReplayable]),
        ("SET @`my var` = 1", Primary, &[E::VarWrite, E::NotReplayable]),
        ("SET @'x' = 1", Primary, &[E::VarWrite, E::NotReplayable]),
        ("SELECT @x := 1", Primary, &[E::VarWrite]),
        ("SELECT a INTO @x FROM t LIMIT 1", Primary, &[E::VarWrite]),
        ("SELECT a, b FROM t LIMIT 1 INTO @a, @b", Primary, &[E::VarWrite]),
        ("DO @x := 5", Primary, &[E::VarWrite]),
        ("UPDATE t SET a = (@n := @n + 1)", Primary, &[E::VarWrite]),
        ("/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */", Primary, &[E::VarWrite, E::NotReplayable]),
        ("/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */", Primary, &[E::VarWrite, E::NotReplayable]),
        ("GET DIAGNOSTICS CONDITION 1 @p1 = RETURNED_SQLSTATE, @p2 = MESSAGE_TEXT", LastBackend, &[E::VarWrite]),
        ("GET CURRENT DIAGNOSTICS @n = NUMBER", LastBackend, &[E::VarWrite]),
        // Replayable session state.
        ("SET NAMES utf8mb4", Primary, &[E::Replayable]),
        ("set names utf8", Primary, &[E::Replayable]),
        ("SET NAMES 'utf8mb4' COLLATE 'utf8mb4_unicode_ci'", Primary, &[E::Replayable]),
        ("SET NAMES utf8mb4 COLLATE utf8mb4_general_ci", Primary, &[E::Replayable]),
        ("SET NAMES DEFAULT", Primary, &[E::Replayable]),
        ("SET CHARACTER SET utf8", Primary, &[E::Replayable]),
        ("SET CHARSET latin1", Primary, &[E::Replayable]),
        ("SET character_set_results = NULL", Primary, &[E::Replayable]),
        ("SET sql_mode='STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION'", Primary, &[E::Replayable]),
        ("SET time_zone = '+00:00'", Primary, &[E::Replayable]),
        ("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED", Primary, &[E::Replayable]),
        ("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED, READ ONLY", Primary, &[E::Replayable]),
        ("SET @@SESSION.TRANSACTION_ISOLATION = 'READ-COMMITTED'", Primary, &[E::Replayable]),
        ("SET SQL_SELECT_LIMIT=DEFAULT", Primary, &[E::Replayable]),
        ("SET max_execution_time = 1000 * 2", Primary, &[E::Replayable]),
        ("SET session wait_timeout = 28800, interactive_timeout = 28800", Primary, &[E::Replayable]),
        ("SET `sql_mode` = ''", Primary, &[E::Replayable]),
        ("SET sql_log_bin = 0", Primary, &[E::Replayable]),
        ("/*!40101 SET character_set_client = utf8 */", Primary, &[E::Replayable]),
        ("/*!40101 SET NAMES utf8 */;", Primary, &[E::Replayable]),
        ("/*!40014 SET UNIQUE_CHECKS=0 */", Primary, &[E::Replayable]),
        ("/*!40103 SET TIME_ZONE='+00:00' */", Primary, &[E::Replayable]),
        // Session state that replaying the text cannot reproduce.
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", Primary, &[E::NotReplayable]),
        ("SET TRANSACTION READ ONLY", Primary, &[E::NotReplayable]),
        ("SET STATEMENT max_statement_time=1 FOR SELECT * FROM t", Primary, &[E::NotReplayable]),
        ("SET PASSWORD = PASSWORD('x')", Primary, &[E::NotReplayable]),
        ("SET PASSWORD FOR 'u'@'h' = 'x'", Primary, &[E::NotReplayable]),
        ("SET ROLE ALL", Primary, &[E::NotReplayable]),
        ("SET DEFAULT ROLE r TO u", Primary, &[E::NotReplayable]),
        ("SET RESOURCE GROUP rg", Primary, &[E::NotReplayable]),
        ("SET sql_mode = CONCAT(@@sql_mode, ',STRICT_ALL_TABLES')", Primary, &[E::NotReplayable]),
        ("SET @@SESSION.sql_mode = CONCAT(CONCAT(@@sql_mode, ',STRICT_ALL_TABLES'), ',NO_AUTO_VALUE_ON_ZERO'), \
          @@SESSION.sql_auto_is_null = 0, @@SESSION.wait_timeout = 2147483", Primary, &[E::NotReplayable]),
        ("SET sql_mode = (SELECT 'ANSI')", Primary, &[E::NotReplayable]),
        ("SET time_zone = @tz", Primary, &[E::NotReplayable]),
        ("SET sql_mode = @@global.sql_mode", Primary, &[E::NotReplayable]),
        ("SET keycache1.key_buffer_size = 1024", Primary, &[E::NotReplayable]),
        ("SET GLOBAL max_connections = 1, SESSION wait_timeout = 10", Primary, &[E::NotReplayable]),
        ("SET NAMES utf8mb4; SELECT 1", Primary, &[E::NotReplayable]),
        ("SET NAMES utf8mb4; SET GLOBAL max_connections = 1", Primary, &[E::NotReplayable]),
        ("SET wait_timeout 10", Primary, &[E::NotReplayable]),
        // USE.
        ("USE sbtest", Primary, &[E::Use("sbtest")]),
        ("use `my db`", Primary, &[E::Use("my db")]),
        ("USE `we``ird`", Primary, &[E::Use("we`ird")]),
        ("USE dé", Primary, &[E::Use("dé")]),
        ("USE db; SELECT 1", Primary, &[E::Use("db")]),
        ("USE db1; USE db2", Primary, &[E::Use("db2")]),
        ("SET NAMES utf8mb4; USE db", Primary, &[E::Use("db"), E::NotReplayable]),
    ];

    /// Inputs that end inside a string, identifier or comment.
    const MALFORMED: &[&str] = &[
        "SELECT 'unterminated",
        "SELECT \"unterminated",
        "SELECT `unterminated",
        "SELECT 1 /* open",
        "/*!40101 SET NAMES utf8",
        "SELECT 'a\\'",
        "SELECT @'x",
        "SELECT @@`x",
        "SELECT @@session.`x",
        "SELECT 1; SELECT 'x",
        "SELECT 'x\\",
    ];

    fn check(sql: &str, target: Target, expected: &[E]) {
        let got = classify(sql.as_bytes());
        assert_eq!(got.target, target, "target of {sql:?}: {got:?}");
        assert_eq!(got.effects, effects(expected), "effects of {sql:?}");
        assert_eq!(got.lagless, None, "lagless command in {sql:?}");
    }

    #[test]
    fn payloads_split_into_statements() {
        let cut = |sql: &str| {
            split_statements(sql.as_bytes()).map(|parts| {
                parts
                    .iter()
                    .map(|&(a, b)| sql[a..b].to_string())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            cut("KILL 5; SELECT 1"),
            Some(vec!["KILL 5".into(), "SELECT 1".into()])
        );
        assert_eq!(
            cut(" SELECT ';' ;; /* x */ KILL QUERY 7 ;\nSELECT 2 -- end"),
            Some(vec![
                "SELECT ';'".into(),
                "KILL QUERY 7".into(),
                "SELECT 2".into()
            ])
        );
        assert_eq!(
            cut("CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END; KILL 3"),
            Some(vec![
                "CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END".into(),
                "KILL 3".into()
            ])
        );
        assert_eq!(cut("SELECT 'open; KILL 1"), None);
        assert_eq!(cut("/*!40101 SET NAMES utf8 */; KILL 1"), None);
        assert_eq!(cut(""), Some(vec![]));
    }

    #[test]
    fn plain_reads_go_to_a_replica() {
        for sql in READS {
            check(sql, Replica, &[]);
        }
    }

    #[test]
    fn writes_and_pinned_reads_go_to_the_primary() {
        for sql in PRIMARY {
            check(sql, Primary, &[]);
        }
    }

    #[test]
    fn diagnostics_follow_the_last_backend() {
        for sql in LAST_BACKEND {
            check(sql, LastBackend, &[]);
        }
    }

    #[test]
    fn effects_are_reported() {
        for (sql, target, expected) in EFFECTS {
            check(sql, *target, expected);
        }
    }

    #[test]
    fn unterminated_input_goes_to_the_primary() {
        for sql in MALFORMED {
            assert_eq!(classify(sql.as_bytes()).target, Primary, "{sql:?}");
        }
    }

    #[test]
    fn diagnostics_mixed_with_primary_needs_go_to_the_primary() {
        check("SELECT @@warning_count, LAST_INSERT_ID()", Primary, &[]);
        check("SHOW WARNINGS; INSERT INTO t VALUES (1)", Primary, &[]);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_fine() {
        check("SELECT '\u{0}' FROM t", Replica, &[]);
        let mut sql = b"SELECT 'caf".to_vec();
        sql.extend_from_slice(&[0xe9, b'\'', b' ', 0xff, 0xfe]);
        assert_eq!(classify(&sql).target, Replica);
        let use_latin1 = [b"USE caf".as_slice(), &[0xe9]].concat();
        assert_eq!(classify(&use_latin1).effects, effects(&[E::NotReplayable]));
    }

    #[test]
    fn sql_mode_changes_how_quotes_are_read() {
        // Under NO_BACKSLASH_ESCAPES the string ends after the backslash and FOR UPDATE is code.
        let sql = b"SELECT 'a\\' FOR UPDATE -- '";
        assert_eq!(classify(sql).target, Replica);
        let mode = SqlMode {
            no_backslash_escapes: true,
            ..SqlMode::default()
        };
        assert_eq!(classify_with(sql, mode).target, Primary);

        let sql = b"USE \"my db\"";
        assert_eq!(classify(sql).effects.use_database, None);
        let ansi = SqlMode {
            ansi_quotes: true,
            ..SqlMode::default()
        };
        let got = classify_with(sql, ansi).effects.use_database;
        assert_eq!(got.as_deref(), Some("my db"));
        assert_eq!(
            classify_with(b"SELECT \"a\"\"b\" FROM t", ansi).target,
            Replica
        );
    }

    use ConsistencyMode as M;
    use LaglessCommand::{ResetConsistency, SetConsistency, ShowConsistency};

    const fn bounded(max_lag_ms: u64) -> Option<M> {
        Some(M::Bounded { max_lag_ms })
    }

    /// (statement, consistency hint, honoured route hint, target).
    #[rustfmt::skip]
    const HINTS: &[(&str, Option<M>, Option<RouteHint>, Target)] = &[
        ("/* lagless:consistency=session */ SELECT 1", Some(M::Session), None, Replica),
        ("SELECT 1 -- lagless:consistency=eventual", Some(M::Eventual), None, Replica),
        ("SELECT 1 # lagless:consistency=strict\n", Some(M::Strict), None, Replica),
        ("SELECT /* lagless:consistency=bounded(500ms) */ 1", bounded(500), None, Replica),
        ("/*lagless:consistency=bounded=250*/SELECT 1", bounded(250), None, Replica),
        ("/* lagless:consistency=bounded */ SELECT 1", bounded(1000), None, Replica),
        ("/* LAGLESS:Consistency=PROXY */ SELECT 1", Some(M::Proxy), None, Replica),
        ("/* lagless:consistency=bogus */ SELECT 1", None, None, Replica),
        ("/* lagless:consistency */ SELECT 1", None, None, Replica),
        ("/* a */ /* lagless:consistency=strict */ /* lagless:consistency=eventual */ SELECT 1",
            Some(M::Eventual), None, Replica),
        ("SELECT 'lagless:consistency=eventual'", None, None, Replica),
        ("/* lagless:route=primary */ SELECT 1", None, Some(RouteHint::Primary), Primary),
        ("SELECT 1 /*+ lagless:route=primary */", None, Some(RouteHint::Primary), Primary),
        ("/* lagless:route=replica */ SELECT 1", None, Some(RouteHint::Replica), Replica),
        ("/* lagless:route=replica */ UPDATE t SET a = 1", None, None, Primary),
        ("/* lagless:route=replica */ SELECT * FROM t FOR UPDATE", None, None, Primary),
        ("/* lagless:route=replica */ SHOW WARNINGS", None, None, LastBackend),
        ("/* lagless:route=primary */ SHOW WARNINGS", None, Some(RouteHint::Primary), LastBackend),
        ("/* lagless:route=sideways */ SELECT 1", None, None, Replica),
        ("/* lagless:consistency=session lagless:route=primary */ SELECT 1",
            Some(M::Session), Some(RouteHint::Primary), Primary),
        ("SELECT 1; /* lagless:route=replica */ INSERT INTO t VALUES (1)", None, None, Primary),
    ];

    #[test]
    fn hints_are_read_from_comments() {
        for (sql, consistency, route, target) in HINTS {
            let got = classify(sql.as_bytes());
            assert_eq!(got.hint, *consistency, "consistency hint of {sql:?}");
            assert_eq!(got.route_hint, *route, "route hint of {sql:?}");
            assert_eq!(got.target, *target, "target of {sql:?}");
        }
    }

    /// Statements the proxy answers itself, and look-alikes it must forward.
    #[rustfmt::skip]
    const LAGLESS: &[(&str, Option<LaglessCommand>)] = &[
        ("SET lagless_consistency = 'session'", Some(SetConsistency(M::Session))),
        ("SET SESSION lagless_consistency='strict'", Some(SetConsistency(M::Strict))),
        ("set @@lagless_consistency = \"eventual\"", Some(SetConsistency(M::Eventual))),
        ("SET @@session.lagless_consistency = 'bounded(250ms)'",
            Some(SetConsistency(M::Bounded { max_lag_ms: 250 }))),
        ("SET lagless_consistency = bounded(250ms)", Some(SetConsistency(M::Bounded { max_lag_ms: 250 }))),
        ("SET LAGLESS_CONSISTENCY = 'Bounded=2s';", Some(SetConsistency(M::Bounded { max_lag_ms: 2000 }))),
        ("SET lagless_consistency = proxy", Some(SetConsistency(M::Proxy))),
        ("SET lagless_consistency = DEFAULT", Some(ResetConsistency)),
        ("SHOW lagless_consistency", Some(ShowConsistency)),
        ("show LAGLESS_CONSISTENCY;", Some(ShowConsistency)),
        ("SELECT @@lagless_consistency", Some(ShowConsistency)),
        ("/* app */ SELECT @@session.lagless_consistency ;", Some(ShowConsistency)),
        ("SELECT 'lagless_consistency'", None),
        ("SELECT lagless_consistency FROM t", None),
        ("SET @lagless_consistency = 1", None),
    ];

    #[test]
    fn lagless_commands_are_recognised() {
        for (sql, want) in LAGLESS {
            let got = classify(sql.as_bytes());
            assert_eq!(got.lagless, *want, "{sql:?}");
            if want.is_some() {
                assert!(
                    got.effects.is_empty(),
                    "{sql:?} has effects {:?}",
                    got.effects
                );
            }
        }
    }

    #[test]
    fn misused_lagless_commands_are_errors() {
        let cases = [
            (
                "SET lagless_consistency = 'sometimes'",
                "unknown consistency mode",
            ),
            (
                "SET lagless_consistency = 'bounded(soon)'",
                "invalid staleness bound",
            ),
            ("SET lagless_consistency =", "needs a value"),
            (
                "SET GLOBAL lagless_consistency = 'strict'",
                "session setting",
            ),
            (
                "SET NAMES utf8, lagless_consistency = 'strict'",
                "of its own",
            ),
            ("SET lagless_consistency = 'strict'; SELECT 1", "on its own"),
            (
                "SELECT @@lagless_consistency, @@version",
                "only be read on its own",
            ),
            (
                "SELECT 1 FROM t WHERE @@lagless_consistency = 'strict'",
                "only be read on its own",
            ),
            (
                "SHOW lagless_consistency LIKE 'x'",
                "only be read on its own",
            ),
        ];
        for (sql, message) in cases {
            match classify(sql.as_bytes()).lagless {
                Some(LaglessCommand::Invalid(text)) => {
                    assert!(text.contains(message), "{sql:?}: {text:?}")
                }
                other => panic!("{sql:?}: expected an error, got {other:?}"),
            }
        }
    }

    #[test]
    fn lexer_produces_the_expected_tokens() {
        let sql =
            b"SELECT @@session.a, @@b.c, @x:=`i``d`, 'it''s' /* c */ -- d\n#e\n/*!50110 X */;";
        let mut p = Parser::new(sql, SqlMode::default());
        let mut tokens = Vec::new();
        loop {
            let tok = p.bump();
            tokens.push(tok);
            if tok == Tok::End {
                break;
            }
        }
        let expected = [
            Tok::Word(b"SELECT"),
            Tok::SysVar(VarScope::Session, b"a"),
            Tok::Punct(b','),
            Tok::SysVar(VarScope::Unqualified, b"b"),
            Tok::Punct(b'.'),
            Tok::Word(b"c"),
            Tok::Punct(b','),
            Tok::UserVar,
            Tok::Assign,
            Tok::Ident(b"i``d", b'`'),
            Tok::Punct(b','),
            Tok::Str(b"it''s"),
            Tok::Word(b"X"),
            Tok::Punct(b';'),
            Tok::End,
        ];
        assert_eq!(tokens, expected);
    }

    #[test]
    fn every_keyword_is_reachable() {
        for (text, kw) in KEYWORDS {
            let name = String::from_utf8_lossy(text);
            assert!(text.len() <= MAX_KEYWORD_LEN, "{name}");
            assert!(text.iter().all(|b| !b.is_ascii_lowercase()), "{name}");
            assert_eq!(keyword(&text.to_ascii_lowercase()), Some(*kw), "{name}");
        }
        let misses: [&[u8]; 9] = [
            b"SELECTED",
            b"SELEC",
            b"1",
            b"",
            b"X",
            b"WAIT_FOR_EXECUTED_GTID_SETS",
            b"SQL_CALC_FOUND_RX",
            b"SQL_CALC_FOUND_R",
            b"RELEASE_ALL_LOCKSMITH",
        ];
        for word in misses {
            assert_eq!(keyword(word), None, "{}", String::from_utf8_lossy(word));
        }
    }

    #[test]
    fn deep_nesting_is_handled_without_recursion() {
        let blocks = "BEGIN NOT ATOMIC ".repeat(200_000) + "START TRANSACTION";
        check(&blocks, Primary, &[E::Begin]);
        let parens = "(".repeat(500_000) + "SELECT 1";
        check(&parens, Replica, &[]);
        let body = "CREATE PROCEDURE p() ".to_owned() + &"BEGIN ".repeat(200_000) + "; COMMIT";
        check(&body, Primary, &[]);
    }

    #[test]
    fn unquote_undoubles_quotes() {
        assert_eq!(unquote(b"plain", b'`'), Cow::Borrowed(b"plain".as_slice()));
        assert_eq!(unquote(b"a``b````c", b'`').as_ref(), b"a`b``c");
    }

    // -----------------------------------------------------------------------------------------
    // Properties

    /// Statements whose classification must not depend on the comments around them.
    fn corpus() -> Vec<&'static str> {
        let mut all: Vec<&str> = READS
            .iter()
            .chain(PRIMARY)
            .chain(LAST_BACKEND)
            .copied()
            .collect();
        all.extend(EFFECTS.iter().map(|(sql, ..)| *sql));
        all
    }

    /// An ordinary comment, or whitespace. Its alphabet has no `*`, `!` or `:`, so it can
    /// neither close early, turn executable nor carry a hint.
    fn comment() -> impl Strategy<Value = String> {
        let body = "[a-zA-Z0-9 _=;'\"`().,#@/-]{0,24}";
        prop_oneof![
            body.prop_map(|b| format!("/*{b}*/")),
            body.prop_map(|b| format!("-- {b}\n")),
            body.prop_map(|b| format!("#{b}\n")),
            "[ \t\r\n]{1,3}",
        ]
    }

    /// Quotes `content` as a literal with `quote`, escaping by backslash or by doubling.
    fn quote_literal(content: &str, quote: char, doubling: bool) -> String {
        let mut out = String::from(quote);
        for c in content.chars() {
            if c == quote {
                out.push(if doubling { quote } else { '\\' });
            } else if c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push(quote);
        out
    }

    /// Reads with one `{}` where a literal goes.
    const READ_TEMPLATES: &[&str] = &[
        "SELECT * FROM t WHERE name = {}",
        "SELECT {} AS label, id FROM t ORDER BY id",
        "WITH c AS (SELECT {} AS x) SELECT x FROM c",
        "SHOW TABLES LIKE {}",
        "SELECT CONCAT({}, name) FROM users LIMIT 1",
        "/* lagless:consistency=session */ SELECT id FROM t WHERE a IN ({}, 'b')",
    ];

    /// What a hostile or unlucky literal might contain.
    const STRING_CONTENTS: &[&str] = &[
        "FOR UPDATE",
        "LOCK IN SHARE MODE",
        "INTO @x",
        "INTO OUTFILE '/tmp/f'",
        "@x := 1",
        "GET_LOCK('a', 1)",
        "LAST_INSERT_ID()",
        "; INSERT INTO t VALUES (1); --",
        "DELETE FROM t",
        "UPDATE",
        "*/",
        "/*",
        "/*!",
        "/*M!",
        "-- ",
        "#",
        "\n",
        "'",
        "\"",
        "`",
        "\\",
        "''",
        "lagless:route=primary",
        "lagless:consistency=eventual",
        "@@warning_count",
        "@@lagless_consistency",
        "SHOW WARNINGS",
        "BEGIN",
        "COMMIT",
        "NEXT VALUE FOR s",
        "SQL_CALC_FOUND_ROWS",
        "SET autocommit=0",
        " ",
        "é",
    ];

    /// Pieces of SQL that reach the lexer's and parser's corners when glued at random.
    const FRAGMENTS: &[&str] = &[
        "SELECT",
        "select",
        " ",
        "'",
        "\"",
        "`",
        "\\",
        "/*",
        "*/",
        "/*!",
        "/*M!",
        "50110",
        "--",
        "-- ",
        "#",
        "\n",
        ";",
        "(",
        ")",
        ",",
        "=",
        ":=",
        "@",
        "@@",
        "session.",
        "global.",
        "FOR",
        "UPDATE",
        "SET",
        "BEGIN",
        "NOT",
        "ATOMIC",
        "END",
        "CREATE",
        "PROCEDURE",
        "CASE",
        "IF",
        "INTO",
        "autocommit",
        "lagless_consistency",
        "lagless:consistency=",
        "lagless:route=",
        "bounded(",
        "ms",
        "0",
        "1",
        "NAMES",
        "USE",
        "x",
        "t",
        ".",
        "é",
        "\u{0}",
        "SHOW",
        "WARNINGS",
        "GET_LOCK",
        "GET",
        "DIAGNOSTICS",
        "WITH",
        "TABLE",
        "TEMPORARY",
        "LOCK",
        "UNLOCK",
        "TABLES",
        "COMMIT",
        "AND",
        "CHAIN",
        "XA",
        "START",
        "TRANSACTION",
        "DEFAULT",
        "CHARACTER",
        "NEXT",
        "VALUE",
        "FULL",
        "ANALYZE",
        "FORMAT",
        "EXPLAIN",
    ];

    const MODES: [SqlMode; 4] = [
        SqlMode {
            no_backslash_escapes: false,
            ansi_quotes: false,
        },
        SqlMode {
            no_backslash_escapes: true,
            ansi_quotes: false,
        },
        SqlMode {
            no_backslash_escapes: false,
            ansi_quotes: true,
        },
        SqlMode {
            no_backslash_escapes: true,
            ansi_quotes: true,
        },
    ];

    /// Invariants any classification must hold.
    fn assert_sound(got: &Classification) {
        if got.route_hint == Some(RouteHint::Replica) {
            assert_eq!(got.target, Replica, "{got:?}");
        }
        if got.effects.session_set.is_some() || got.effects.begins_transaction {
            assert_ne!(got.target, Replica, "{got:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            for mode in MODES {
                assert_sound(&classify_with(&bytes, mode));
            }
        }

        #[test]
        fn never_panics_on_sql_like_soup(
            parts in prop::collection::vec(prop::sample::select(FRAGMENTS), 0..48),
            spaces in prop::collection::vec(any::<bool>(), 48),
        ) {
            let mut sql = String::new();
            for (part, space) in parts.iter().zip(&spaces) {
                sql.push_str(part);
                if *space {
                    sql.push(' ');
                }
            }
            for mode in MODES {
                assert_sound(&classify_with(sql.as_bytes(), mode));
            }
        }

        #[test]
        fn comments_around_a_statement_change_nothing(
            sql in prop::sample::select(corpus()),
            before in prop::collection::vec(comment(), 0..3),
            after in prop::collection::vec(comment(), 0..3),
        ) {
            let wrapped = format!("{}{sql} {}", before.concat(), after.concat());
            prop_assert_eq!(classify(wrapped.as_bytes()), classify(sql.as_bytes()), "{:?}", wrapped);
        }

        #[test]
        fn keywords_inside_string_literals_keep_reads_reads(
            template in prop::sample::select(READ_TEMPLATES),
            words in prop::collection::vec(prop::sample::select(STRING_CONTENTS), 1..6),
            quote in prop::sample::select(vec!['\'', '"']),
            doubling in any::<bool>(),
        ) {
            let base = classify(template.replace("{}", "''").as_bytes());
            prop_assert_eq!(base.target, Replica);
            let literal = quote_literal(&words.join(" "), quote, doubling);
            let sql = template.replace("{}", &literal);
            prop_assert_eq!(classify(sql.as_bytes()), base, "{}", sql);
        }

        #[test]
        fn keywords_inside_quoted_identifiers_keep_reads_reads(
            words in prop::collection::vec(prop::sample::select(STRING_CONTENTS), 1..6),
        ) {
            let ident = quote_literal(&words.join(" "), '`', true);
            let sql = format!("SELECT {ident} FROM t WHERE id = 1");
            let got = classify(sql.as_bytes());
            prop_assert_eq!(got.target, Replica, "{}", sql);
            prop_assert!(got.effects.is_empty() && got.lagless.is_none() && got.hint.is_none());
        }
    }

    /// The properties above would notice a literal that leaks into the code around it.
    #[test]
    fn the_string_property_can_fail() {
        let template = READ_TEMPLATES[0];
        let base = classify(template.replace("{}", "''").as_bytes());
        let leaked = template.replace("{}", "'' FOR UPDATE");
        assert_ne!(classify(leaked.as_bytes()), base);
        let broken_escape = template.replace("{}", "'\\' FOR UPDATE -- '");
        assert_eq!(
            classify(broken_escape.as_bytes()),
            base,
            "the backslash escapes the quote"
        );
        let unescaped = template.replace("{}", &format!("'{}'", "it's FOR UPDATE"));
        assert_ne!(classify(unescaped.as_bytes()), base);
    }

    /// And the comment property would notice a comment that is code or never ends.
    #[test]
    fn the_comment_property_can_fail() {
        assert_ne!(classify(b"SELECT 1 /*!FOR UPDATE*/"), classify(b"SELECT 1"));
        assert_ne!(classify(b"SELECT 1 /* open"), classify(b"SELECT 1"));
        assert_ne!(
            classify(b"/* lagless:route=primary */ SELECT 1"),
            classify(b"SELECT 1")
        );
    }
}
