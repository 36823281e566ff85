//! The live status page in headless Chromium while media flows through the relay: the page
//! shows the broadcast, and its plots move (two screenshots a couple of seconds apart differ
//! in the plot area). Peer suite (`scripts/peers` installs Chromium).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use tokio::process::Command;

/// Runs headless Chromium on `url` with `args` (a screenshot, a DOM dump); its stdout.
async fn chromium(url: &str, args: &[String]) -> Vec<u8> {
    let profile = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "status-chromium-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let run = Command::new(moq_tests::chromium())
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--disable-background-networking",
            "--disable-component-update",
            "--window-size=1280,900",
            // Lets the page fetch /status.json and draw before the capture.
            "--virtual-time-budget=4000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("Chromium finishes within a minute")
        .expect("Chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "Chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: headless Chromium (scripts/peers)"]
async fn the_status_page_shows_the_broadcast_and_its_plots_move() {
    let mut config = config();
    config.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    let relay = relay(config).await;
    let page = format!("http://{}/", relay.metrics_addr().unwrap());
    let url = url(&relay);
    let client = client();
    let publisher = publisher(&client, &url, "/live/cam", &["video", "audio"], 4).await;
    known(&relay, 1).await;
    let viewers: Vec<_> =
        futures_util::future::join_all((0..3).map(|_| connect(&client, &url, None))).await;

    // Media flows for the whole test: a group every 100 ms, its size changing over time so
    // that the bitrate plot has a shape; three viewers read everything.
    let video = publisher.tracks[0].clone();
    let audio = publisher.tracks[1].clone();
    let feed = tokio::spawn(async move {
        for i in 0..600u64 {
            write_group(&video, 3, 2000 + (i % 20) as usize * 800);
            write_group(&audio, 1, 200);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut reading = Vec::new();
    for viewer in &viewers {
        for track in ["video", "audio"] {
            let mut reader = viewer.subscribe("/live/cam", track, ordered()).unwrap();
            reading.push(tokio::spawn(async move {
                while let Ok(Some(mut group)) = reader.next_group().await {
                    let _ = group.read_all().await;
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(4)).await;

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let first = dir.join("status-page-1.png");
    let second = dir.join("status-page-2.png");
    chromium(&page, &[format!("--screenshot={}", first.display())]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    chromium(&page, &[format!("--screenshot={}", second.display())]).await;
    let dom = String::from_utf8(chromium(&page, &["--dump-dom".into()]).await).unwrap();
    assert!(
        dom.contains("live/cam"),
        "the page lists the broadcast:\n{dom}"
    );
    assert!(
        dom.contains(">video<") && dom.contains(">audio<"),
        "and its tracks"
    );
    // The plots fill the band below the summary: rows 60 to 560 of a 1280×900 window.
    let moved = moq_tests::browser::changed(&first, &second, 0..1280, 60..560);
    println!(
        "status page: {moved} pixels of the plots changed; screenshot {}",
        second.display()
    );
    assert!(
        moved > 500,
        "the plots did not move ({moved} pixels changed)"
    );

    feed.abort();
    for r in reading {
        r.abort();
    }
    drop((viewers, publisher));
    relay.shutdown().await;
}
