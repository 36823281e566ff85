//! Twenty seconds of the randomized adversary (`examples/adversary.rs`) against the relay
//! with its default limits: no connection's ledger passes its cap, the process stays under
//! the server-wide bound, good clients are served, and no group reaches a good subscriber as
//! complete that was not.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/adversary.rs"]
mod adversary;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_seconds_of_random_attacks_leave_every_bound_standing() {
    let report = adversary::run(moq_fanout::RelayConfig::default(), 20, 7, 4).await;
    println!("{}", adversary::summary(&report));
    assert!(
        report.attacks.iter().all(|&n| n > 0),
        "every attack ran: {:?}",
        report.attacks
    );
    assert!(
        report.peak_ledger <= report.cap,
        "a connection's ledger peaked at {} > {}",
        report.peak_ledger,
        report.cap
    );
    assert!(
        report.peak_rss_growth <= report.server_bound,
        "RSS grew {} > {}",
        report.peak_rss_growth,
        report.server_bound
    );
    assert_eq!(report.corrupt, 0, "groups complete but wrong");
    assert!(
        report.good_groups > 50,
        "{} good groups",
        report.good_groups
    );
    assert!(report.served > 0);
    assert_eq!(report.unserved, 0, "fresh good clients not served");
}
