//! Headless Chromium for the browser tests: find it, bundle a page script from an npm
//! package directory under `tests/` (`browser` for `@moq/lite`, `browser-net` for
//! `@moq/net`), serve it over HTTP on loopback (a secure context for WebTransport), open it,
//! and read the `MOQTEST ...` lines the script logs to the console.
//!
//! The npm packages are installed under `target/<dir>/` (`npm ci` from the directory's
//! `package-lock.json`), again only when the lock file changes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Headless Chromium: `$MOQ_CHROMIUM`, else the system's. Panics (the test fails, saying how
/// to install it) when there is none.
pub fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("MOQ_CHROMIUM") {
        return PathBuf::from(path);
    }
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "Chromium is not installed: the browser tests need /usr/bin/chromium \
         (apt-get install chromium, or run scripts/peers, which installs it) or MOQ_CHROMIUM=/path/to/chromium"
    );
}

/// Runs a command to completion, failing the test with its output if it fails.
async fn run(dir: &Path, program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {program}: {e}. The browser tests need Node.js and npm \
                 (apt-get install nodejs npm, or run scripts/peers, which installs them)"
            )
        });
    assert!(
        output.status.success(),
        "{program} {args:?} failed in {}:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Installs the npm packages of `tests/<package>` under `target/moq-<package>/` and bundles
/// its `client.js` with esbuild; returns the bundle.
pub async fn bundle(package: &str) -> String {
    bundle_with(package, &[]).await
}

/// [`bundle`] with more esbuild arguments (`--minify`, a `--banner:js=`...).
pub async fn bundle_with(package: &str, esbuild: &[&str]) -> String {
    let source = workspace().join("tests").join(package);
    let dir = workspace().join("target").join(format!("moq-{package}"));
    std::fs::create_dir_all(&dir).expect("create the bundle directory");
    // Tests of one binary run in parallel and share the directory: one installs and bundles
    // at a time (test binaries themselves run one after another).
    static BUNDLING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _bundling = BUNDLING.lock().await;
    let lock = std::fs::read(source.join("package-lock.json")).expect("package-lock.json");
    let stamp = dir.join("installed-lock.json");
    for file in ["package.json", "package-lock.json", "client.js"] {
        std::fs::copy(source.join(file), dir.join(file)).expect("copy the browser sources");
    }
    let installed = std::fs::read(&stamp).ok();
    if installed.as_deref() != Some(lock.as_slice())
        || !dir.join("node_modules/.bin/esbuild").exists()
    {
        run(&dir, "npm", &["ci", "--no-audit", "--no-fund"]).await;
        std::fs::write(&stamp, &lock).expect("write the install stamp");
    }
    let mut args = vec![
        "client.js",
        "--bundle",
        "--format=esm",
        "--target=es2022",
        "--log-level=warning",
        "--outfile=bundle.js",
    ];
    args.extend_from_slice(esbuild);
    run(&dir, "node_modules/.bin/esbuild", &args).await;
    std::fs::read_to_string(dir.join("bundle.js")).expect("bundle.js")
}

/// Serves a page that loads `bundle` over HTTP on loopback, until the test ends.
pub async fn serve_page(bundle: String) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind http");
    let addr = listener.local_addr().expect("http addr");
    let page = "<!doctype html><meta charset=utf-8><title>moq browser test</title>\
                <script type=module src=/bundle.js></script>";
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let bundle = bundle.clone();
            tokio::spawn(async move {
                let mut request = vec![0u8; 4096];
                let n = socket.read(&mut request).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&request[..n]);
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let (status, kind, body) = if path.starts_with("/bundle.js") {
                    ("200 OK", "text/javascript", bundle)
                } else if path == "/" || path.starts_with("/?") {
                    ("200 OK", "text/html", page.to_owned())
                } else {
                    ("404 Not Found", "text/plain", String::new())
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\n\
                     cache-control: no-store\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(body.as_bytes()).await;
            });
        }
    });
    addr
}

/// Lowercase hex, as pages take certificate hashes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The text of a `MOQTEST` console line in Chromium's log, e.g. from
/// `[...:INFO:CONSOLE(1)] "MOQTEST frame 1 0 5", source: http://... (1)`.
pub fn console_line(line: &str) -> Option<String> {
    let start = line.find("\"MOQTEST ")? + 1;
    let rest = &line[start..];
    let end = rest.rfind("\", source:").unwrap_or(rest.len());
    Some(rest[..end].trim_start_matches("MOQTEST ").to_owned())
}

/// One headless Chromium on one page; killed (and its profile removed) when dropped.
pub struct Page {
    child: Child,
    profile: PathBuf,
    /// Chromium's DevTools port (for screenshots of the live page).
    devtools: u16,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every `MOQTEST` line so far.
    pub log: Vec<String>,
    name: String,
}

impl Page {
    /// Opens `url` in a new headless Chromium; `name` prefixes its lines in the test output.
    pub fn open(name: &str, url: &str) -> Self {
        Self::open_with(name, url, &[])
    }

    /// [`Page::open`] with more Chromium flags (a fake camera, say).
    pub fn open_with(name: &str, url: &str, flags: &[&str]) -> Self {
        let chromium = chromium();
        let devtools = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port for DevTools");
        let profile = std::env::temp_dir().join(format!(
            "moq-chromium-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let mut child = Command::new(&chromium)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--remote-debugging-port={devtools}"))
            .args(flags)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Some(text) = console_line(&line)
                    && tx.send(text).is_err()
                {
                    return;
                }
            }
        });
        Self {
            child,
            profile,
            devtools,
            lines,
            log: Vec::new(),
            name: name.to_owned(),
        }
    }

    /// Reads the page's lines until one satisfies `done` (true) or says `error` (false),
    /// for at most `timeout`; panics when the time runs out or Chromium's output ends.
    pub async fn wait_for(&mut self, timeout: Duration, done: impl Fn(&str) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(text)) => {
                    println!("{}: {text}", self.name);
                    let finished = done(&text);
                    let failed = text.starts_with("error");
                    self.log.push(text);
                    if finished {
                        return true;
                    }
                    if failed {
                        return false;
                    }
                }
                Ok(None) => panic!(
                    "{}: Chromium's output ended; console: {:#?}",
                    self.name, self.log
                ),
                Err(_) => panic!(
                    "{}: no expected line within {timeout:?}; console: {:#?}",
                    self.name, self.log
                ),
            }
        }
    }
}

impl Page {
    /// `count` screenshots of the live page, `interval` apart, as PNG files `out-1.png`...
    /// (through the DevTools protocol, by `tests/browser/capture.mjs` under Node.js).
    pub async fn screenshots(&self, out: &Path, count: u32, interval: Duration) -> Vec<PathBuf> {
        let script = workspace().join("tests/browser/capture.mjs");
        let output = tokio::time::timeout(
            Duration::from_secs(60),
            Command::new("node")
                .arg("--experimental-websocket")
                .arg(&script)
                .arg(self.devtools.to_string())
                .arg(out)
                .arg(count.to_string())
                .arg(interval.as_millis().to_string())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("screenshots within a minute")
        .expect("node runs");
        assert!(
            output.status.success(),
            "{}: screenshots failed: {}",
            self.name,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(PathBuf::from)
            .collect()
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// The RGB pixels of a PNG file, and its width and height.
pub fn pixels(path: &Path) -> (Vec<[u8; 3]>, usize, usize) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a frame");
    buf.truncate(info.buffer_size());
    let channels = info.color_type.samples();
    let rgb = buf
        .chunks(channels)
        .map(|p| [p[0], p[1 % channels], p[2 % channels]])
        .collect();
    (rgb, info.width as usize, info.height as usize)
}

/// The indices of the pixels of the rectangle `x` × `y`, clipped to a `width` × `height`
/// image.
fn rectangle(
    width: usize,
    height: usize,
    x: std::ops::Range<usize>,
    y: std::ops::Range<usize>,
) -> impl Iterator<Item = usize> {
    let xs = x.start.min(width)..x.end.min(width);
    (y.start.min(height)..y.end.min(height))
        .flat_map(move |row| xs.clone().map(move |col| row * width + col))
}

/// Pixels that differ between two screenshots of the same size, within the rectangle
/// `x` × `y` (clipped to the images).
pub fn changed(a: &Path, b: &Path, x: std::ops::Range<usize>, y: std::ops::Range<usize>) -> usize {
    let ((a, width, height), (b, _, _)) = (pixels(a), pixels(b));
    rectangle(width, height, x, y)
        .filter(|&i| a.get(i) != b.get(i))
        .count()
}

/// Distinct colours within the rectangle `x` × `y` of a screenshot (a blank area has one).
pub fn colours(path: &Path, x: std::ops::Range<usize>, y: std::ops::Range<usize>) -> usize {
    let (px, width, height) = pixels(path);
    let set: std::collections::HashSet<[u8; 3]> = rectangle(width, height, x, y)
        .filter_map(|i| px.get(i).copied())
        .collect();
    set.len()
}

/// Writes a clock into `track` until aborted: groups of `per_group` frames, each frame the
/// next number in decimal (from 0), one every 20 ms.
pub fn run_clock(track: moq_quinn::TrackProducer, per_group: u64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            let group = track.append_group();
            for _ in 0..per_group {
                group.write_frame(bytes::Bytes::from(n.to_string()));
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            group.finish();
        }
    })
}
