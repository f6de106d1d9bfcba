//! Running real `mariadbd` processes, for the local runtime and for tests: the programs found
//! on the machine, children that die with their parent (even on SIGKILL), template data
//! directories built once and copied, servers started, awaited and stopped.

pub mod process;
pub mod server;

pub use server::{
    Binaries, ServerError, build_template, connect_while_alive, find, on_path, stop,
    stop_discarding, tail,
};
