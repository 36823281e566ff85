// A browser test's page script for @moq/net 0.3.4, bundled with esbuild and loaded by
// headless Chromium (see tests/tests/browser.rs for how the page is served and read).
//
// Connects to our WebTransport server through @moq/net (WebSocket fallback disabled),
// trusting the server's self-signed certificate by its SHA-256, then does one thing,
// chosen by the query string, and reports every step as a `MOQTEST ...` console line,
// which the test reads from Chromium's stderr:
//
//   ?url=https://127.0.0.1:PORT/PATH&hash=HEX&mode=MODE&...
//
//   mode=subscribe  broadcast, track, frames=N: reads N frames of the track and prints
//                   `frame GROUP INDEX TEXT` for each, then `done N`, and closes.
//   mode=publish    broadcast, track, frames=N: publishes the broadcast; each subscription
//                   to the track gets N frames, the numbers 0, 1, 2, ... as text, five to a
//                   group, one every 20 ms, then the track finishes (`served N`). Stays
//                   connected until the server closes the session.
//   mode=discover   prefix: prints `announced PATH` / `unannounced PATH` (full paths) for
//                   the broadcasts announced under the prefix, until the session closes.
//
// Every mode first prints `offered PROTOCOLS...` (the WebTransport subprotocols @moq/net
// asks for), then `version V` (the one it negotiated) and `transport T`. Failures: `error ...`.
import * as Moq from "@moq/net";

const params = new URLSearchParams(location.search);
const log = (...args) => console.log(["MOQTEST", ...args].join(" "));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const GROUP_FRAMES = 5;
const FRAME_INTERVAL_MS = 20;

// @moq/net does not export the subprotocol list it offers, so record it where it is used:
// the options of the browser's WebTransport constructor.
const NativeWebTransport = globalThis.WebTransport;
globalThis.WebTransport = class extends NativeWebTransport {
	constructor(url, options) {
		log("offered", ...(options?.protocols ?? []));
		super(url, options);
	}
};

async function subscribe(connection) {
	const frames = Number(params.get("frames"));
	const broadcast = connection.consume(Moq.Path.from(params.get("broadcast")));
	const track = broadcast.subscribe(params.get("track"));
	for (let i = 0; i < frames; i++) {
		const frame = await track.readFrameSequence();
		if (!frame) {
			log("ended", "after", i);
			return;
		}
		log("frame", frame.group, frame.frame, new TextDecoder().decode(frame.payload));
	}
	// PROBE replies from the server (moq-lite-04+): the RTT they carry, in ms. Waits up to 2 s.
	let rtt = connection.probe.peek().rtt;
	for (let i = 0; rtt === undefined && i < 20; i++) {
		await sleep(100);
		rtt = connection.probe.peek().rtt;
	}
	log("probe-rtt", rtt ?? "none");
	log("done", frames);
	track.close();
	connection.close();
}

// Serves one subscription: `frames` frames, GROUP_FRAMES to a group, then finishes the track.
async function serve(track, frames) {
	let n = 0;
	while (n < frames) {
		const group = track.appendGroup();
		for (let i = 0; i < GROUP_FRAMES && n < frames; i++) {
			group.writeString(String(n++));
			await sleep(FRAME_INTERVAL_MS);
		}
		group.close();
	}
	track.close();
	log("served", n);
}

async function publish(connection) {
	const frames = Number(params.get("frames"));
	const path = Moq.Path.from(params.get("broadcast"));
	const name = params.get("track");
	const broadcast = new Moq.Broadcast.Producer();
	// Announced to every ANNOUNCE_REQUEST (announce interest) whose prefix covers the path.
	connection.publish(path, broadcast);
	log("published", path);
	// One request per SUBSCRIBE the server sends; nothing is written before one arrives.
	for (;;) {
		const request = await broadcast.requested();
		if (!request) return;
		if (request.name !== name) {
			log("rejected", request.name);
			request.reject(new Error("no such track"));
			continue;
		}
		log("requested", request.name);
		serve(request.accept(), frames).catch((err) => log("error", String(err?.stack ?? err)));
	}
}

async function discover(connection) {
	const prefix = Moq.Path.from(params.get("prefix") ?? "");
	const announced = connection.announced(prefix);
	for (;;) {
		const event = await announced.next();
		if (!event) break;
		log(event.active ? "announced" : "unannounced", Moq.Path.join(prefix, event.path));
	}
	log("announced-ended");
}

async function main() {
	const url = new URL(params.get("url"));
	const mode = params.get("mode") ?? "subscribe";
	log("connecting", url.toString(), mode);
	const connection = await Moq.Connection.connect(url, {
		websocket: { enabled: false },
		// @moq/net decodes a hex `value` itself.
		webtransport: { serverCertificateHashes: [{ algorithm: "sha-256", value: params.get("hash") }] },
	});
	log("version", connection.version);
	log("transport", connection.transport);
	connection.closed.then(
		() => log("closed"),
		(err) => log("closed", String(err)),
	);
	if (mode === "subscribe") await subscribe(connection);
	else if (mode === "publish") await publish(connection);
	else if (mode === "discover") await discover(connection);
	else throw new Error(`unknown mode: ${mode}`);
}

main().catch((err) => log("error", String(err?.stack ?? err)));
