//! Pushing each published topology straight to the proxies: a mounted ConfigMap reaches a pod
//! when the kubelet next syncs it, up to a minute later, and writes sent meanwhile would go to a
//! demoted primary (refused with 1290, so held, but held for that minute). The operator puts the
//! document to every proxy pod's admin port (`PUT /topology`, with the token of the Secret
//! `<cluster>-proxy-admin`); a proxy applies it by the same epoch rule as the file. Best effort:
//! the ConfigMap, written first, stays the durable source, and a proxy that misses a push
//! catches up from it.

use std::time::Duration;

use ::kube::api::{Api, ListParams};
use ::kube::{Client, ResourceExt};
use futures::future::join_all;
use k8s_openapi::api::core::v1::{Pod, Secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::builders::{self, Component, Credential, PROXY_ADMIN_PORT};
use crate::crd::MySQLCluster;

/// How long one proxy may take to take a push.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// What one proxy said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// It now follows this document.
    Applied,
    /// It already follows this epoch or a later one.
    Kept,
    Refused(u16),
}

/// Puts `document` to the proxy admin endpoint at `addr` (`host:port`).
pub async fn push_to(addr: &str, token: &str, document: &[u8]) -> Result<Pushed, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let head = format!(
            "PUT /topology HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            document.len()
        );
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        stream
            .write_all(document)
            .await
            .map_err(|e| e.to_string())?;
        let mut reply = Vec::new();
        // The answer is a status line and a word: a few hundred bytes at most.
        let mut limited = (&mut stream).take(4096);
        limited
            .read_to_end(&mut reply)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(reply)
    };
    let reply = tokio::time::timeout(PUSH_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {} ms", PUSH_TIMEOUT.as_millis()))??;
    Ok(outcome(&reply))
}

/// Reads a proxy's answer: its status, and for a 200 whether it applied the document.
fn outcome(reply: &[u8]) -> Pushed {
    let text = String::from_utf8_lossy(reply);
    let status = text
        .lines()
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .unwrap_or(0);
    match status {
        200 if text.ends_with("applied\n") => Pushed::Applied,
        200 => Pushed::Kept,
        other => Pushed::Refused(other),
    }
}

/// Pushes `document` to every running proxy pod of `cluster`. Returns how many took it.
pub async fn push_all(client: &Client, cluster: &MySQLCluster, document: &[u8]) -> usize {
    let Some(namespace) = cluster.namespace() else {
        return 0;
    };
    let name = cluster.name_any();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let token = match Credential::ProxyAdmin.secret_name(cluster) {
        Ok(secret) => secrets
            .get_opt(&secret)
            .await
            .ok()
            .flatten()
            .and_then(|s| s.data)
            .and_then(|d| d.get("password").map(|v| v.0.clone()))
            .and_then(|v| String::from_utf8(v).ok()),
        Err(_) => None,
    };
    let Some(token) = token else {
        tracing::debug!(cluster = %name, "no proxy token yet; the proxies follow the ConfigMap");
        return 0;
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let selector = builders::selector_labels(&name, Component::Proxy)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let listed = match pods.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => list.items,
        Err(e) => {
            tracing::warn!(cluster = %name, error = %e, "cannot list the proxy pods to push to");
            return 0;
        }
    };
    let port = u16::try_from(PROXY_ADMIN_PORT).unwrap_or(9104);
    let addrs: Vec<String> = listed
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.as_deref()?.parse().ok())
        // `SocketAddr` brackets an IPv6 address.
        .map(|ip: std::net::IpAddr| std::net::SocketAddr::new(ip, port).to_string())
        .collect();
    let results = join_all(addrs.iter().map(|a| push_to(a, &token, document))).await;
    let mut took = 0;
    for (addr, result) in addrs.iter().zip(results) {
        match result {
            Ok(Pushed::Applied | Pushed::Kept) => took += 1,
            Ok(Pushed::Refused(status)) => {
                tracing::warn!(cluster = %name, proxy = %addr, status, "a proxy refused the pushed topology");
            }
            Err(e) => {
                tracing::debug!(cluster = %name, proxy = %addr, error = %e, "push failed; it follows the ConfigMap");
            }
        }
    }
    took
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_by_status_and_word() {
        let ok = |body: &str| format!("HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{body}");
        assert_eq!(outcome(ok("applied\n").as_bytes()), Pushed::Applied);
        assert_eq!(outcome(ok("kept\n").as_bytes()), Pushed::Kept);
        assert_eq!(
            outcome(b"HTTP/1.1 401 Unauthorized\r\n\r\nunauthorized\n"),
            Pushed::Refused(401)
        );
        assert_eq!(outcome(b"garbage"), Pushed::Refused(0));
    }
}
