use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{KitError, Result};

/// The MariaDB programs the kit runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub mariadbd: PathBuf,
    pub install_db: PathBuf,
    /// `mariadbd --version`, also used to key the template directory.
    pub version: String,
}

impl Binaries {
    /// Finds `mariadbd` and `mariadb-install-db`; `$LAGLESS_MARIADBD` and
    /// `$LAGLESS_MARIADB_INSTALL_DB` override the search.
    pub fn locate() -> Result<Self> {
        Self::locate_with(None)
    }

    /// Like [`Binaries::locate`], with an explicit `mariadbd` that must exist.
    pub fn locate_with(mariadbd: Option<&Path>) -> Result<Self> {
        let mariadbd = match mariadbd {
            Some(path) if lagless_mariadbd::server::is_executable(path) => path.to_path_buf(),
            Some(_) => {
                return Err(KitError::MissingBinary {
                    name: "mariadbd",
                    env: "LAGLESS_MARIADBD",
                });
            }
            None => find("mariadbd", "LAGLESS_MARIADBD")?,
        };
        let install_db = find("mariadb-install-db", "LAGLESS_MARIADB_INSTALL_DB")?;
        let out = Command::new(&mariadbd)
            .arg("--version")
            .output()
            .map_err(|e| KitError::Command {
                command: format!("{} --version", mariadbd.display()),
                detail: e.to_string(),
            })?;
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok(Self {
            mariadbd,
            install_db,
            version,
        })
    }
}

/// The runtime's own search (`PATH`, then the usual system directories), in the kit's errors.
fn find(name: &'static str, env: &'static str) -> Result<PathBuf> {
    lagless_mariadbd::find(name, env).map_err(|_| KitError::MissingBinary { name, env })
}
