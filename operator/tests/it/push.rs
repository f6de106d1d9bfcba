//! The operator's push of a new topology, against a real lagless-proxy admin listener.

use lagless_core::topology::{Flavor, Member, Topology, TopologyState};
use lagless_operator::kube::push::{Pushed, push_to};
use lagless_proxy::config::Config;
use lagless_proxy::server::Proxy;

fn topology(epoch: u64, primary_port: u16) -> Topology {
    Topology {
        cluster: "push".into(),
        flavor: Flavor::Mariadb,
        epoch,
        state: TopologyState::Ready,
        primary: Some(Member::new("m0", "127.0.0.1", primary_port)),
        replicas: Vec::new(),
        consistency: None,
        read_only: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_topology_is_taken_at_once_and_only_with_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.json");
    // Nothing needs to listen there: the proxy only routes to it.
    topology(1, 1).write_atomically(&path).unwrap();
    let mut config = Config::new(path);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    config.admin_token = Some(lagless_proxy::config::AdminToken("t0ken".into()));
    config.lookup = Some(lagless_proxy::users::LookupCredentials {
        user: "nobody".into(),
        password: "none".into(),
        tls: None,
    });
    let proxy = Proxy::bind(config).await.unwrap();
    let admin = proxy.admin_addr().unwrap().to_string();
    let stop = proxy.shutdown_handle();
    let task = tokio::spawn(proxy.run());

    let doc = |epoch| serde_json::to_vec(&topology(epoch, 2)).unwrap();
    assert_eq!(push_to(&admin, "t0ken", &doc(2)).await, Ok(Pushed::Applied));
    assert_eq!(push_to(&admin, "t0ken", &doc(2)).await, Ok(Pushed::Kept));
    assert_eq!(
        push_to(&admin, "wrong", &doc(3)).await,
        Ok(Pushed::Refused(401))
    );
    assert!(push_to("127.0.0.1:1", "t0ken", &doc(3)).await.is_err());

    let _ = stop.send(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
}
