//! The `cam` example, kept working: publishers on both transports, the relay, a subscriber
//! by URL, and a publisher restart the subscriber reads through.

#[allow(unreachable_pub, dead_code)]
#[path = "../examples/cam.rs"]
mod cam;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriber_reads_through_the_camera_restart() {
    let outcome = cam::run(Duration::from_secs(3), false).await;
    let mut discovered = outcome.discovered.clone();
    discovered.sort();
    assert_eq!(discovered, ["/cam", "/mic"]);
    assert!(outcome.restart_at > 0);
    let before = outcome
        .groups
        .iter()
        .filter(|(_, _, at)| *at < outcome.restart_at)
        .count();
    let after = outcome
        .groups
        .iter()
        .filter(|(_, _, at)| *at > outcome.restart_at + 300)
        .count();
    assert!(before >= 3 && after >= 3, "{outcome:?}");
    assert!(
        outcome.groups.windows(2).all(|w| w[0].0 < w[1].0),
        "group numbers increase across the restart: {outcome:?}"
    );
}
