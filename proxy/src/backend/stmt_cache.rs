//! The statements prepared on one backend connection, by their text and the scope they were
//! prepared in (default database and session state: a server resolves names and reads quotes
//! at prepare time), so that any session that lands on the connection in the same scope
//! executes them without preparing again. Bounded: past the
//! bound the least recently used statement no session is using is closed, so many
//! connections times many statements never exhaust a server's `max_prepared_stmt_count`.

use bytes::Bytes;

/// Statements kept per connection by default (a server allows 16,382 in all by default).
pub const DEFAULT_STATEMENTS_PER_CONNECTION: usize = 20;

#[derive(Debug, Clone)]
struct Entry {
    /// The COM_STMT_PREPARE payload it was prepared from.
    prepare: Bytes,
    /// The default database and session state it was prepared in (see `scope`).
    scope: u64,
    id: u32,
    /// Parameter types last bound to it (2 bytes a parameter).
    types: Option<Vec<u8>>,
    used: u64,
}

/// One connection's statements.
#[derive(Debug, Default, Clone)]
pub struct StmtCache {
    entries: Vec<Entry>,
    clock: u64,
}

impl StmtCache {
    /// A statement prepared from `prepare`, none of `taken` (ids the asking session maps
    /// already: one backend statement serves one client statement at a time).
    pub fn find(&mut self, prepare: &[u8], scope: u64, taken: &[u32]) -> Option<u32> {
        self.clock += 1;
        let now = self.clock;
        let e = self.entries.iter_mut().find(|e| {
            e.scope == scope && e.prepare.as_ref() == prepare && !taken.contains(&e.id)
        })?;
        e.used = now;
        Some(e.id)
    }

    /// Records a statement just prepared. Returns the ids to close to stay within `bound`
    /// (never one of `taken`).
    pub fn insert(
        &mut self,
        (prepare, scope): (Bytes, u64),
        id: u32,
        bound: usize,
        taken: &[u32],
    ) -> Vec<u32> {
        self.clock += 1;
        self.entries.push(Entry {
            prepare,
            scope,
            id,
            types: None,
            used: self.clock,
        });
        let mut closed = Vec::new();
        while self.entries.len() > bound.max(1) {
            let Some(at) = self
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| e.id != id && !taken.contains(&e.id))
                .min_by_key(|(_, e)| e.used)
                .map(|(i, _)| i)
            else {
                break;
            };
            closed.push(self.entries.swap_remove(at).id);
        }
        closed
    }

    /// The parameter types bound to statement `id` last.
    pub fn types(&self, id: u32) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|e| e.id == id)
            .and_then(|e| e.types.as_deref())
    }

    pub fn set_types(&mut self, id: u32, types: &[u8]) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.id == id) {
            e.types = Some(types.to_vec());
        }
    }

    /// Forgets statement `id` (closed on the server by the caller).
    pub fn remove(&mut self, id: u32) {
        self.entries.retain(|e| e.id != id);
    }

    /// The server dropped every statement (a reset).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The scope a statement is prepared in: the session's default database and the signature of
/// its replayable state.
pub fn scope(database: Option<&str>, state_sig: u64) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    database.hash(&mut h);
    state_sig.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_found_by_text_and_one_serves_one_client_statement() {
        let mut c = StmtCache::default();
        let q = Bytes::from_static(b"\x16SELECT ?");
        let here = scope(Some("a"), 0);
        assert!(c.insert((q.clone(), here), 1, 4, &[]).is_empty());
        assert_eq!(c.find(&q, here, &[]), Some(1));
        // Taken by another client statement of the session: not shared.
        assert_eq!(c.find(&q, here, &[1]), None);
        assert_eq!(c.find(b"\x16SELECT 2", here, &[]), None);
        // Prepared in another database or session state: another statement.
        assert_eq!(c.find(&q, scope(Some("b"), 0), &[]), None);
        assert_eq!(c.find(&q, scope(Some("a"), 7), &[]), None);
    }

    #[test]
    fn past_the_bound_the_least_recently_used_free_statement_is_closed() {
        let mut c = StmtCache::default();
        let q = |i: u32| Bytes::from(format!("\x16SELECT {i}"));
        for i in 1..=3 {
            assert!(c.insert((q(i), 0), i, 3, &[]).is_empty());
        }
        // 1 was used most recently; 2 is in use by the session: 3 goes.
        assert_eq!(c.find(&q(1), 0, &[]), Some(1));
        assert_eq!(c.insert((q(4), 0), 4, 3, &[2]), vec![3]);
        assert_eq!(c.len(), 3);
        // Everything in use: the bound gives way rather than close a statement in use.
        assert!(c.insert((q(5), 0), 5, 3, &[1, 2, 4]).is_empty());
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn bound_types_are_kept_per_statement() {
        let mut c = StmtCache::default();
        c.insert((Bytes::from_static(b"\x16SELECT ?"), 0), 9, 4, &[]);
        assert_eq!(c.types(9), None);
        c.set_types(9, &[3, 0]);
        assert_eq!(c.types(9), Some(&[3u8, 0][..]));
        c.clear();
        assert!(c.is_empty());
    }
}
