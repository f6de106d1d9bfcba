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
            Some(path) if is_executable(path) => path.to_path_buf(),
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

fn find(name: &'static str, env: &'static str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(KitError::MissingBinary { name, env })
        };
    }
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/mysql/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
        .ok_or(KitError::MissingBinary { name, env })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
