//! The MySQL client/server protocol: framing, handshake, authentication and response shapes.

pub mod auth;
pub mod compress;
pub mod constants;
pub mod handshake;
pub mod io;
pub mod messages;
pub mod packet;
pub mod response;
pub mod session_state;
pub mod wire;
