//! What goes wrong talking to the directory.

/// What went wrong talking to the directory.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// No connection, a lost one, or no answer in time: cached routes are still the best
    /// knowledge.
    #[error("directory unreachable: {0}")]
    Unreachable(String),
    /// The server refused a statement.
    #[error("directory query failed: {0}")]
    Query(String),
    /// The request cannot be done as asked: bad input, a tenant in the wrong state, a row the
    /// directory should not hold, or a step outside the directory (creating a database) that
    /// failed.
    #[error("{0}")]
    Invalid(String),
}
