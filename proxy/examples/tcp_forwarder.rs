//! The floor for any proxy on this path: a plain TCP forwarder (tokio, TCP_NODELAY, no protocol
//! work at all). `bench/proxy.sh` measures it beside lagless-proxy to separate the cost of an
//! extra hop from the cost of the proxy's own work.
//!
//!     cargo run --release -p lagless-proxy --example tcp_forwarder -- LISTEN_ADDR TARGET_ADDR

use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(target)) = (args.next(), args.next()) else {
        eprintln!("usage: tcp_forwarder LISTEN_ADDR TARGET_ADDR");
        std::process::exit(2);
    };
    let listener = TcpListener::bind(&listen).await?;
    loop {
        let (mut client, _) = listener.accept().await?;
        let target = target.clone();
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(&target).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
    }
}
