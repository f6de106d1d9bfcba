//! Keeping passwords out of log lines: statements the operator runs (`CHANGE MASTER TO …
//! MASTER_PASSWORD='…'`, `CREATE USER … IDENTIFIED BY '…'`) appear in its errors, and a
//! server's syntax error quotes the statement back.

/// `text` with every quoted string that follows `PASSWORD` or `IDENTIFIED BY` (any case,
/// with `=`, `(` and blanks between) replaced by `'***'`.
pub fn redact(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut at = 0;
    while let Some(found) = next_keyword(&lower, at) {
        // Skip what may stand between the keyword and the value.
        let mut i = found;
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b'\n' | b'=' | b'(') {
            i += 1;
        }
        let Some(&quote) = bytes.get(i).filter(|q| matches!(q, b'\'' | b'"')) else {
            at = found;
            continue;
        };
        let end = closing_quote(bytes, i + 1, quote);
        out.push_str(&text[copied..i]);
        out.push_str("'***'");
        copied = end.map_or(bytes.len(), |e| e + 1);
        at = copied;
    }
    out.push_str(&text[copied..]);
    out
}

/// The end of the next `password` or `identified by` at or after `from`.
fn next_keyword(lower: &str, from: usize) -> Option<usize> {
    let rest = lower.get(from..)?;
    ["password", "identified by"]
        .iter()
        .filter_map(|k| rest.find(k).map(|i| from + i + k.len()))
        .min()
}

/// The index of the quote closing a string that starts at `from`; a doubled quote or a
/// backslash escapes one.
fn closing_quote(bytes: &[u8], from: usize, quote: u8) -> Option<usize> {
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b if b == quote && bytes.get(i + 1) == Some(&quote) => i += 2,
            b if b == quote => return Some(i),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_statements_and_errors_are_hidden() {
        assert_eq!(
            redact("CHANGE MASTER TO MASTER_USER='r', MASTER_PASSWORD='s3cr''et', MASTER_PORT=1"),
            "CHANGE MASTER TO MASTER_USER='r', MASTER_PASSWORD='***', MASTER_PORT=1"
        );
        assert_eq!(
            redact("CREATE USER IF NOT EXISTS 'u'@'%' identified by \"p\\\"w\""),
            "CREATE USER IF NOT EXISTS 'u'@'%' identified by '***'"
        );
        assert_eq!(
            redact("near 'PASSWORD = 'abc' at line 1"),
            "near 'PASSWORD = '***' at line 1"
        );
        assert_eq!(
            redact("SET PASSWORD = PASSWORD('x')"),
            "SET PASSWORD = PASSWORD('***')"
        );
        // Nothing to hide, or nothing after the keyword.
        assert_eq!(redact("SELECT 1"), "SELECT 1");
        assert_eq!(redact("password"), "password");
        assert_eq!(redact("password='unterminated"), "password='***'");
    }
}
