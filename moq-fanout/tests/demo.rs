//! The demo a person opens (`cargo run -p moq-fanout --example demo`), kept working: its
//! page publishes Chromium's fake camera and plays it back through the relay, and its
//! script is what the pinned npm packages build. Peer suite (Chromium, Node.js, npm).

#[allow(unreachable_pub, dead_code)]
#[path = "../examples/demo.rs"]
mod demo;

use std::path::Path;
use std::time::Duration;

use moq_tests::browser::{Page, bundle_with};

const BANNER: &str = "--banner:js=// npm @moq/publish 0.2.17 and @moq/watch 0.3.2 (MIT OR Apache-2.0) with tests/browser-media/client.js, bundled by esbuild 0.28.2: see moq-fanout/examples/demo.rs";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: needs Node.js and npm; run scripts/peers"]
async fn the_demo_script_is_what_the_pinned_packages_build() {
    let built = bundle_with("browser-media", &["--minify", BANNER]).await;
    if std::env::var_os("MOQ_WRITE_DEMO").is_some() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo/player.js");
        std::fs::write(&path, &built).unwrap();
        println!("wrote {}", path.display());
        return;
    }
    assert!(
        built == demo::PLAYER_JS,
        "examples/demo/player.js differs from what tests/browser-media builds \
         ({} bytes against {}): run this test with MOQ_WRITE_DEMO=1 to write it again",
        demo::PLAYER_JS.len(),
        built.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "peer: needs Chromium; run scripts/peers"]
async fn the_demo_page_publishes_the_camera_and_plays_it_back() {
    let any = "127.0.0.1:0".parse().unwrap();
    let demo = demo::start(any, any).await.expect("the demo starts");
    let url = format!("http://localhost:{}/", demo.http.port());
    let camera = [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        "--window-size=1280,800",
    ];
    // The page's two frames log to the same console: the player's reports prove playback.
    let mut page = Page::open_with("demo", &url, &camera);
    assert!(
        page.wait_for(Duration::from_secs(45), |l| l.starts_with("playing"))
            .await,
        "{:#?}",
        page.log
    );
    let mut decoded = 0;
    while decoded < 20 {
        page.wait_for(Duration::from_secs(20), |l| l.starts_with("decoded"))
            .await;
        decoded = page.log.last().unwrap()[8..].trim().parse().unwrap();
    }
    // Screenshots of the page playing, a second apart: the player's frame (the right half,
    // below the heading) shows a picture, and it moves.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let shots = page
        .screenshots(&dir.join("demo"), 2, Duration::from_secs(1))
        .await;
    let player = (660..1250, 150..620);
    let colours = moq_tests::browser::colours(&shots[1], player.0.clone(), player.1.clone());
    let moved = moq_tests::browser::changed(&shots[0], &shots[1], player.0, player.1);
    println!("demo screenshots {shots:?}: {colours} colours, {moved} pixels changed");
    assert!(
        colours > 50,
        "the player shows a picture ({colours} colours)"
    );
    assert!(moved > 1000, "the picture moves ({moved} pixels changed)");
    if std::env::var_os("MOQ_WRITE_DEMO").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/demo.png");
        std::fs::copy(&shots[1], &docs).unwrap();
    }
    drop(page);
    demo.stop().await;
}
