//! The scenario suite over WebTransport (wtransport, HTTP/3) on loopback: the same test code
//! as `quic.rs`, every scenario included (`peer_vanishes` gets the same idle timeout and UDP
//! relay through `Options::quic`).

use moq_tests::{WebTransport, scenarios};

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                scenarios::$name::<WebTransport>().await;
            }
        )*
    };
}

suite!(
    announce_discovery,
    subscribe_server_to_client,
    subscribe_client_to_server,
    update_and_drop,
    subscribe_not_found,
    fetch,
    probe,
    goaway,
    goaway_timeout,
    close_with_code,
    many_subscriptions,
    large_frame,
    peer_vanishes,
    slow_subscriber,
    unread_budget_never_blocks_the_group_being_read,
);
