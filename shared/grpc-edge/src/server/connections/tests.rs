#![allow(clippy::unwrap_used)]

use super::{Connections, Counters, InFlight};
use crate::settings::ConnectionArgs;
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tonic_types::StatusExt;

#[derive(clap::Parser)]
struct Defaults {
    #[command(flatten)]
    args: ConnectionArgs,
}

pub(super) fn connections(configure: impl FnOnce(&mut ConnectionArgs)) -> Arc<Connections> {
    let mut args = crate::settings::defaults::<Defaults>("test").unwrap().args;
    configure(&mut args);
    Connections::new(&args, "todo.test.v1")
}

fn register(connections: &Arc<Connections>, peer: SocketAddr) -> Arc<Counters> {
    let counters = Arc::new(Counters::default());
    connections
        .open
        .lock()
        .unwrap()
        .insert(peer, Arc::clone(&counters));
    counters
}

#[test]
fn a_connection_takes_at_most_its_share_of_streams_and_gives_them_back() {
    let c = connections(|a| a.max_streaming_rpcs_per_connection = 2);
    let (one, two): (SocketAddr, SocketAddr) = (
        "127.0.0.1:1000".parse().unwrap(),
        "127.0.0.1:1001".parse().unwrap(),
    );
    register(&c, one);
    register(&c, two);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut rpc = InFlight::start(&c, Some(one));
        rpc.admit_stream().unwrap();
        held.push(rpc);
    }
    let mut third = InFlight::start(&c, Some(one));
    let refused = third.admit_stream().unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    let info = refused.get_error_details().error_info().cloned().unwrap();
    assert_eq!(info.reason, "TOO_MANY_STREAMS");
    assert_eq!(
        info.metadata["setting"],
        "MAX_STREAMING_RPCS_PER_CONNECTION"
    );
    // Another connection still can.
    InFlight::start(&c, Some(two)).admit_stream().unwrap();
    // Ending one gives its slot back.
    held.pop();
    InFlight::start(&c, Some(one)).admit_stream().unwrap();
}

#[test]
fn the_server_wide_stream_limit_holds_across_connections() {
    let c = connections(|a| a.max_streaming_rpcs = 3);
    let mut held = Vec::new();
    for port in 0..3 {
        let peer = SocketAddr::from(([127, 0, 0, 1], 2000 + port));
        register(&c, peer);
        let mut rpc = InFlight::start(&c, Some(peer));
        rpc.admit_stream().unwrap();
        held.push(rpc);
    }
    let peer = SocketAddr::from(([127, 0, 0, 2], 1));
    register(&c, peer);
    let refused = InFlight::start(&c, Some(peer)).admit_stream().unwrap_err();
    let info = refused.get_error_details().error_info().cloned().unwrap();
    assert_eq!(info.metadata["setting"], "MAX_STREAMING_RPCS");
}

#[tokio::test(start_paused = true)]
async fn a_connection_is_idle_only_with_nothing_in_flight_for_the_whole_timeout() {
    let c = connections(|a| a.connection_idle_timeout_secs = 10);
    let peer = SocketAddr::from(([127, 0, 0, 1], 3000));
    let counters = register(&c, peer);
    let timeout = Duration::from_secs(10);
    assert!(c.idle_deadline(&counters, timeout).is_some());
    let rpc = InFlight::start(&c, Some(peer));
    tokio::time::advance(Duration::from_secs(60)).await;
    // Still in flight: never idle.
    assert!(c.idle_deadline(&counters, timeout).is_some());
    drop(rpc);
    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(c.idle_deadline(&counters, timeout).is_some());
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(c.idle_deadline(&counters, timeout).is_none());
}
