//! What a cluster's proxies say on their admin endpoint (`GET /topology`): which topology
//! they follow and what they run on each member, so a member is stopped only once they no
//! longer use it.

use std::time::Duration;

/// A proxy's admin `/topology` document, or nothing if it does not answer within a second.
pub async fn topology(port: u16) -> Option<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let request = "GET /topology HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8(response).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.to_string())
    };
    tokio::time::timeout(Duration::from_secs(1), exchange)
        .await
        .ok()
        .flatten()
}

/// From a proxy's `/topology`: whether it routes no reads to `member` and runs no statement
/// on it. A document that cannot be read says nothing was drained.
pub fn drained(json: &str, member: &str) -> bool {
    let read = || {
        let doc: serde_json::Value = serde_json::from_str(json).ok()?;
        let routed = doc["document"]["replicas"]
            .as_array()?
            .iter()
            .any(|r| r["name"] == member && r["weight"].as_u64().is_none_or(|w| w > 0));
        let primary = doc["document"]["primary"]["name"] == member;
        let busy = doc["members"]
            .as_array()?
            .iter()
            .any(|m| m["name"] == member && m["outstanding"].as_u64().is_none_or(|n| n > 0));
        Some(!routed && !primary && !busy)
    };
    read().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_has_drained_a_member_it_routes_no_reads_to_and_runs_nothing_on() {
        let doc = |weight: u32, outstanding: u32| {
            serde_json::json!({
                "epoch": 7,
                "members": [
                    {"name": "s-0", "outstanding": 3},
                    {"name": "s-2", "outstanding": outstanding},
                ],
                "document": {
                    "primary": {"name": "s-0", "weight": 100},
                    "replicas": [{"name": "s-1", "weight": 100}, {"name": "s-2", "weight": weight}],
                },
            })
            .to_string()
        };
        assert!(drained(&doc(0, 0), "s-2"));
        assert!(!drained(&doc(100, 0), "s-2"), "still routed");
        assert!(!drained(&doc(0, 1), "s-2"), "a statement runs");
        assert!(!drained(&doc(0, 0), "s-0"), "the primary");
        assert!(!drained("not json", "s-2"), "unreadable");
    }
}
