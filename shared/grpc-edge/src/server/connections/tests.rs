#![allow(clippy::unwrap_used)]

use super::{Connections, Counters, InFlight, Refused, StreamKind};
use crate::client_address::{ClientKey, TrustedProxies};
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
    Connections::new(&args, TrustedProxies::default(), "todo.test.v1", None)
}

fn register(connections: &Arc<Connections>, peer: SocketAddr) -> Arc<Counters> {
    connections.admit(peer).unwrap()
}

fn client(peer: SocketAddr) -> ClientKey {
    ClientKey::from_ip(peer.ip())
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
        rpc.admit_stream(StreamKind::Anonymous, client(one))
            .unwrap();
        held.push(rpc);
    }
    let mut third = InFlight::start(&c, Some(one));
    let refused = third
        .admit_stream(StreamKind::Anonymous, client(one))
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    let info = refused.get_error_details().error_info().cloned().unwrap();
    assert_eq!(info.reason, "TOO_MANY_STREAMS");
    assert_eq!(
        info.metadata["setting"],
        "MAX_STREAMING_RPCS_PER_CONNECTION"
    );
    // Another connection still can.
    InFlight::start(&c, Some(two))
        .admit_stream(StreamKind::Anonymous, client(two))
        .unwrap();
    // Ending one gives its slot back.
    held.pop();
    InFlight::start(&c, Some(one))
        .admit_stream(StreamKind::Anonymous, client(one))
        .unwrap();
}

#[test]
fn the_server_wide_stream_limit_holds_across_connections() {
    let c = connections(|a| a.max_streaming_rpcs = 3);
    let mut held = Vec::new();
    for port in 0..3 {
        let peer = SocketAddr::from(([127, 0, 0, 1], 2000 + port));
        register(&c, peer);
        let mut rpc = InFlight::start(&c, Some(peer));
        rpc.admit_stream(StreamKind::Anonymous, client(peer))
            .unwrap();
        held.push(rpc);
    }
    let peer = SocketAddr::from(([127, 0, 0, 2], 1));
    register(&c, peer);
    let refused = InFlight::start(&c, Some(peer))
        .admit_stream(StreamKind::Anonymous, client(peer))
        .unwrap_err();
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

#[test]
fn one_client_holds_at_most_its_share_of_connections() {
    let c = connections(|a| a.max_connections_per_client = 2);
    let held: Vec<_> = (0..2)
        .map(|port| register(&c, SocketAddr::from(([127, 0, 0, 1], 4000 + port))))
        .collect();
    let third = c.admit(SocketAddr::from(([127, 0, 0, 1], 4002)));
    assert_eq!(third.unwrap_err(), Refused::ClientShare);
    // Another address still gets in; an IPv6 neighbour in the same /64 does not.
    register(&c, SocketAddr::from(([127, 0, 0, 2], 4000)));
    let v6 = |last: u16| SocketAddr::from(([0x2001, 0xdb8, 0, 1, 0, 0, 0, last], 4000));
    register(&c, v6(1));
    register(&c, v6(2));
    assert_eq!(c.admit(v6(3)).unwrap_err(), Refused::ClientShare);
    drop(held);
}

#[test]
fn when_full_a_newcomer_takes_the_place_of_the_biggest_holders_idle_connection() {
    let c = connections(|a| a.max_connections = 4);
    let attacker = |port| SocketAddr::from(([127, 0, 0, 9], port));
    let busy = register(&c, attacker(1));
    let _rpc = InFlight::start(&c, Some(attacker(1)));
    let idle: Vec<_> = (2..5).map(|port| register(&c, attacker(port))).collect();
    // Full. The honest client gets in, in place of one of the attacker's idle connections.
    let honest = register(&c, SocketAddr::from(([127, 0, 0, 2], 1)));
    let evicted = idle
        .iter()
        .filter(|c| c.evicted.load(std::sync::atomic::Ordering::Acquire))
        .count();
    assert_eq!(evicted, 1);
    assert!(!busy.evicted.load(std::sync::atomic::Ordering::Acquire));
    // The attacker cannot take it back: it holds more than the honest client already.
    assert_eq!(c.admit(attacker(9)).unwrap_err(), Refused::Full);
    // More honest clients: the attacker's idle connections make way until every client holds
    // one; its busy connection stays.
    register(&c, SocketAddr::from(([127, 0, 0, 3], 1)));
    register(&c, SocketAddr::from(([127, 0, 0, 4], 1)));
    assert!(
        idle.iter()
            .all(|c| c.evicted.load(std::sync::atomic::Ordering::Acquire))
    );
    assert_eq!(
        c.admit(SocketAddr::from(([127, 0, 0, 5], 1))).unwrap_err(),
        Refused::Full,
        "every client holds one connection: none takes another's"
    );
    assert!(!busy.evicted.load(std::sync::atomic::Ordering::Acquire));
    drop(honest);
}

#[tokio::test(start_paused = true)]
async fn a_connection_whose_rpcs_move_no_data_gives_way_when_the_server_is_full() {
    let c = connections(|a| a.max_connections = 3);
    let attacker = |port| SocketAddr::from(([127, 0, 0, 9], port));
    let held: Vec<_> = (1..4).map(|port| register(&c, attacker(port))).collect();
    // One RPC on each that never gets its reply out (a window of 0): never idle.
    let _rpcs: Vec<_> = (1..4)
        .map(|port| InFlight::start(&c, Some(attacker(port))))
        .collect();
    let honest = SocketAddr::from(([127, 0, 0, 2], 1));
    assert_eq!(c.admit(honest).unwrap_err(), Refused::Full);
    tokio::time::advance(Duration::from_secs(11)).await;
    register(&c, honest);
    let evicted = held
        .iter()
        .filter(|c| c.evicted.load(std::sync::atomic::Ordering::Acquire))
        .count();
    assert_eq!(evicted, 1, "stalled for 10 s: one made way");
}

#[test]
fn streams_anyone_may_open_cannot_take_the_slots_of_watch_streams_nor_the_reverse() {
    let c = connections(|a| {
        a.max_streaming_rpcs = 2;
        a.max_watch_streams = 2;
    });
    let mut held = Vec::new();
    for port in 0..4 {
        let peer = SocketAddr::from(([127, 0, 0, 1 + port as u8], 5000));
        register(&c, peer);
        let kind = if port < 2 {
            StreamKind::Anonymous
        } else {
            StreamKind::Watch
        };
        let mut rpc = InFlight::start(&c, Some(peer));
        rpc.admit_stream(kind, client(peer)).unwrap();
        held.push(rpc);
    }
    // Both kinds are full now, each on its own.
    let peer = SocketAddr::from(([127, 0, 0, 9], 5000));
    register(&c, peer);
    for (kind, setting) in [
        (StreamKind::Anonymous, "MAX_STREAMING_RPCS"),
        (StreamKind::Watch, "MAX_WATCH_STREAMS"),
    ] {
        let refused = InFlight::start(&c, Some(peer))
            .admit_stream(kind, client(peer))
            .unwrap_err();
        let info = refused.get_error_details().error_info().cloned().unwrap();
        assert_eq!(info.metadata["setting"], setting);
    }
    // Ending an anonymous stream frees an anonymous slot only.
    held.remove(0);
    InFlight::start(&c, Some(peer))
        .admit_stream(StreamKind::Anonymous, client(peer))
        .unwrap();
    assert!(
        InFlight::start(&c, Some(peer))
            .admit_stream(StreamKind::Watch, client(peer))
            .is_err()
    );
}
