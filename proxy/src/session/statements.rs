//! The session's prepared statements, as data: the ids the client sees, what each was
//! prepared from, and where its cursor lives. Executing them is in `prepared`.

use std::collections::HashMap;

use bytes::Bytes;

use super::BackendRole;
use crate::route::Classification;

/// One client statement.
#[derive(Debug, Clone)]
pub struct Stmt {
    /// The COM_STMT_PREPARE payload, to prepare it again elsewhere.
    pub(super) prepare: Bytes,
    pub(super) classification: Classification,
    /// The statement's fingerprint for the digests, computed once at prepare.
    pub(super) digest: Option<u64>,
    pub(super) params: u16,
    /// Parameter types from the last execution that sent them (2 bytes per parameter).
    pub(super) types: Option<Vec<u8>>,
    /// COM_STMT_SEND_LONG_DATA went to the primary: the next execution must run there.
    pub(super) long_data: bool,
    /// Where the open cursor of this statement lives.
    pub(super) cursor_on: Option<BackendRole>,
}

/// A statement's id on one backend connection (the parameter types bound to it are kept
/// with the connection's statements, which other sessions may use too).
#[derive(Debug, Clone, Copy)]
pub struct BackendStmt {
    pub(super) id: u32,
}

/// The session's statements by client id.
#[derive(Debug, Default)]
pub struct Statements {
    pub(super) next_id: u32,
    pub(super) map: HashMap<u32, Stmt>,
    /// The statement prepared last, if that prepare succeeded.
    pub(super) last: Option<u32>,
}

/// The statement id MariaDB reads as "the statement prepared last": clients pipeline a
/// prepare and its execution with it (`mariadb_stmt_execute_direct`).
pub(super) const LAST_PREPARED: u32 = u32::MAX;

impl Statements {
    pub(super) fn allocate(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.next_id
    }

    /// A statement command naming [`LAST_PREPARED`], with the id of that statement instead.
    pub fn resolve_last(&self, payload: Bytes) -> Bytes {
        match (statement_id(&payload), self.last) {
            (Some(LAST_PREPARED), Some(last)) => {
                let mut v = payload.to_vec();
                v[1..5].copy_from_slice(&last.to_le_bytes());
                Bytes::from(v)
            }
            _ => payload,
        }
    }

    /// A backend connection was replaced: cursors on it are gone.
    pub fn forget_backend(&mut self, which: BackendRole) {
        for s in self.map.values_mut() {
            if s.cursor_on == Some(which) {
                s.cursor_on = None;
            }
        }
    }
}

pub(super) fn statement_id(payload: &[u8]) -> Option<u32> {
    payload
        .get(1..5)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}
