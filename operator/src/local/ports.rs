//! Checking that the ports a cluster needs are free before anything starts.

use std::net::{Ipv4Addr, TcpListener};

use super::LocalError;
use super::state::{Settings, proxy_ports};

/// Fails with what to do when `port` (wanted by `owner`) is taken.
pub fn ensure_free(port: u16, owner: &str) -> Result<(), LocalError> {
    match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
        Ok(_) => Ok(()),
        Err(e) => Err(LocalError::PortInUse {
            port,
            owner: owner.to_string(),
            detail: e.to_string(),
        }),
    }
}

/// Fails unless the ports of every member of `settings`'s cluster are free.
pub fn ensure_members_free(settings: &Settings) -> Result<(), LocalError> {
    for i in 0..settings.replicas {
        let port = settings
            .member_port(i)
            .ok_or_else(|| LocalError::Other("--base-port is too high".into()))?;
        ensure_free(port, &settings.member_name(i))?;
    }
    Ok(())
}

/// Fails unless the SQL and admin ports of `count` proxies, from `first`, are free.
pub fn ensure_proxies_free(first: u16, count: usize) -> Result<(), LocalError> {
    for i in 0..count {
        let (port, admin) = proxy_ports(first, i)
            .ok_or_else(|| LocalError::Other("--proxy-port is too high".into()))?;
        ensure_free(port, &format!("proxy-{i}"))?;
        ensure_free(admin, &format!("proxy-{i} admin"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_reported_with_its_owner() {
        let held = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = held.local_addr().unwrap().port();
        let err = ensure_free(port, "shop-0").unwrap_err().to_string();
        assert!(
            err.contains(&port.to_string()) && err.contains("shop-0"),
            "{err}"
        );
        assert!(err.contains("--base-port"), "says what to do: {err}");
        drop(held);
        ensure_free(port, "shop-0").unwrap();
    }
}
