// A browser test's page script for moq-dev's media libraries, @moq/publish 0.2.17 and
// @moq/watch 0.3.2 (both on @moq/hang 0.2.16 and @moq/net 0.1.9), bundled with esbuild and
// loaded by headless Chromium (see tests/src/browser.rs for how the page is served and read).
//
// Connects to the relay over WebTransport (WebSocket fallback disabled), trusting its
// self-signed certificate by its SHA-256, and reports every step as a `MOQTEST ...` console
// line, which the test reads from Chromium's stderr:
//
//   ?mode=MODE&url=https://127.0.0.1:PORT/&hash=HEX&broadcast=NAME
//
//   mode=publish  captures the camera (Chromium's fake one under
//                 --use-fake-device-for-media-stream --use-fake-ui-for-media-stream) and
//                 publishes it as the hang broadcast NAME (catalog.json + video/hd, no audio);
//                 `width=W&height=H` ask for another size than the default 1280x720 (the
//                 encoder takes the frames' coded size, which may differ: 640x360 gives 640x480).
//                 Prints `codec CODEC WIDTHxHEIGHT` and `publishing NAME` once the encoder is
//                 configured and the broadcast is announced, then `serving` when the relay
//                 subscribes to the video track. Stays up until the page is closed.
//   mode=watch    plays the broadcast NAME into a <canvas> that fills the page, with the
//                 library's WebCodecs pipeline (Watch.MultiBackend, as <moq-watch> uses).
//                 Waits for NAME to be announced, so it may start before the publisher, and
//                 follows it when it is published again. Prints `announced PATH` /
//                 `unannounced PATH` (every broadcast the relay announces), `status S`
//                 (offline, loading, live: the catalog's state), `codec CODEC WIDTHxHEIGHT`
//                 (from the catalog), `playing WIDTHxHEIGHT` once the first decoded frame is
//                 painted on the canvas, then once a second
//                   `decoded N`     the player's count of frames handed to the decoder
//                                   (Video.Stats.frameCount),
//                   `rendered N T`  decoded frames the player released for display (changes
//                                   of its frame timestamp signal) and the latest one's
//                                   timestamp in ms,
//                   `shot N HASH`   the SHA-256 (hex) of the canvas pixels (its 2D context's
//                                   getImageData), the video area; successive hashes differ
//                                   while the video moves.
//
// Both modes first print `offered PROTOCOLS...` (the WebTransport subprotocols @moq/net
// asks for), then `version V` (the negotiated moq-lite version) and `transport T`.
// Failures of the page: `error ...`; what the libraries log as errors or as warnings about
// errors: `warning ...`.
import * as Publish from "@moq/publish";
import * as Watch from "@moq/watch";

const Net = Watch.Net;
const { Signal, Effect } = Watch.Signals;

const params = new URLSearchParams(location.search);
const log = (...args) => console.log(["MOQTEST", ...args].join(" "));
const fail = (err) => {
	// @moq/net races its transports with Promise.any: say why each one failed.
	const causes = err instanceof AggregateError ? err.errors.map((e) => `: ${e?.name}: ${e?.message}`) : [];
	log("error", (String(err?.stack ?? err) + causes.join("")).replaceAll("\n", " | "));
};

// What the libraries report through the console that a test should see, as `warning ...`
// lines: not `error`, since they also report expected events that way (e.g. `spawn error
// Received RESET_STREAM.` when the publisher goes away), and a failure of the page itself
// still shows as an `error` line or as counts that stop rising.
const forward = (original, always) => {
	const call = original.bind(console);
	return (...args) => {
		call(...args);
		const text = args.map((a) => String(a?.message ?? a)).join(" ");
		if (always || /error|unsupported|failed/i.test(text)) {
			log("warning", text.replaceAll("\n", " | "));
		}
	};
};
console.warn = forward(console.warn, false);
console.error = forward(console.error, true);

// @moq/net does not export the subprotocol list it offers, so record it where it is used:
// the options of the browser's WebTransport constructor.
const NativeWebTransport = globalThis.WebTransport;
globalThis.WebTransport = class extends NativeWebTransport {
	constructor(url, options) {
		log("offered", ...(options?.protocols ?? []));
		super(url, options);
	}
};

function fill(element) {
	document.body.style.cssText = "margin:0;background:#000;overflow:hidden";
	element.style.cssText = "display:block;width:100vw;height:100vh;object-fit:contain;background:#000";
	document.body.appendChild(element);
}

async function connect() {
	const url = new URL(params.get("url"));
	const connection = await Net.Connection.connect(url, {
		websocket: { enabled: false },
		// @moq/net decodes a hex `value` itself.
		webtransport: { serverCertificateHashes: [{ algorithm: "sha-256", value: params.get("hash") }] },
	});
	log("version", connection.version);
	// The WebSocket fallback is disabled, so a connection is a WebTransport one.
	log("transport", "webtransport");
	connection.closed.then(
		() => log("closed"),
		(err) => log("closed", String(err)),
	);
	return connection;
}

async function publish(connection, name) {
	// The camera: what Publish.Source.Camera does (same default constraints, 1280x720, which
	// `width` and `height` in the query override), but keeping getUserMedia's error.
	let stream;
	try {
		stream = await navigator.mediaDevices.getUserMedia({
			video: {
				width: { ideal: Number(params.get("width") ?? 1280) },
				height: { ideal: Number(params.get("height") ?? 720) },
			},
			audio: false,
		});
	} catch (err) {
		throw new Error(`getUserMedia: ${err?.name}: ${err?.message}`);
	}
	const track = stream.getVideoTracks()[0];
	if (!track) throw new Error("getUserMedia gave no video track");
	const settings = track.getSettings();
	log("camera", track.label.replaceAll(" ", "_") || "unnamed", `${settings.width}x${settings.height}`);

	const preview = document.createElement("video");
	preview.muted = true;
	preview.autoplay = true;
	preview.playsInline = true;
	preview.srcObject = new MediaStream([track]);
	fill(preview);

	const broadcast = new Publish.Broadcast({
		connection,
		enabled: true,
		name,
		audio: { enabled: false },
		video: { hd: { enabled: true }, sd: { enabled: false } },
	});
	broadcast.video.source.set(track);

	const effects = new Effect();
	let announced = false;
	effects.run((effect) => {
		const config = effect.get(broadcast.video.hd.catalog);
		if (!config || announced) return;
		announced = true;
		log("codec", config.codec, `${config.codedWidth}x${config.codedHeight}`);
		log("publishing", String(name));
	});
	let serving = false;
	effects.run((effect) => {
		if (effect.get(broadcast.video.hd.active) && !serving) {
			serving = true;
			log("serving");
		}
	});
	window.moqPublish = broadcast;
}

// The set of broadcast paths the relay announces, as <moq-watch>'s Connection.Reload keeps
// it: Watch.Broadcast waits for its name to be in it before subscribing, and resubscribes when
// it is announced again.
function announcements(connection, effects) {
	const active = new Signal(new Set());
	const announced = connection.announced(Net.Path.empty());
	effects.cleanup(() => announced.close());
	(async () => {
		for (;;) {
			const entry = await announced.next();
			if (!entry) break;
			log(entry.active ? "announced" : "unannounced", String(entry.path));
			active.mutate((set) => {
				if (entry.active) set.add(entry.path);
				else set.delete(entry.path);
			});
		}
	})().catch(fail);
	return active;
}

async function sha256(bytes) {
	const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
	return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function watch(connection, name) {
	const canvas = document.createElement("canvas");
	fill(canvas);

	const effects = new Effect();
	const broadcast = new Watch.Broadcast({
		connection,
		announced: announcements(connection, effects),
		enabled: true,
		name,
		reload: true,
	});
	const backend = new Watch.MultiBackend({
		element: canvas,
		broadcast,
		connection: new Signal(connection),
		// Download video whether or not the canvas is on screen / the tab visible.
		visible: "always",
	});
	backend.audio.muted.set(true);
	window.moqWatch = { broadcast, backend };

	effects.run((effect) => {
		const status = effect.get(broadcast.status);
		log("status", status);
	});
	effects.run((effect) => {
		const config = effect.get(backend.video.source.config);
		if (config) log("codec", config.codec, `${config.codedWidth ?? "?"}x${config.codedHeight ?? "?"}`);
	});
	effects.run((effect) => {
		if (effect.get(backend.video.source.error)) log("error", "video", effect.get(backend.video.source.error));
	});

	// Frames the player released for display: its timestamp signal moves once per frame.
	let rendered = 0;
	let latest;
	let playing = false;
	effects.run((effect) => {
		const timestamp = effect.get(backend.video.timestamp);
		if (timestamp === undefined || timestamp === latest || !(timestamp > 0)) return;
		latest = timestamp;
		rendered++;
		if (!playing) {
			playing = true;
			// The renderer paints the frame on the next animation frame; report after that.
			requestAnimationFrame(() =>
				requestAnimationFrame(() => log("playing", `${canvas.width}x${canvas.height}`)),
			);
		}
	});

	const context = canvas.getContext("2d");
	let shots = 0;
	for (;;) {
		await new Promise((resolve) => setTimeout(resolve, 1000));
		const stats = backend.video.stats.peek();
		log("decoded", stats?.frameCount ?? 0);
		log("rendered", rendered, latest ?? "none");
		if (playing && canvas.width > 0 && canvas.height > 0) {
			const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
			log("shot", ++shots, await sha256(pixels));
		}
	}
}

async function main() {
	const mode = params.get("mode");
	const name = Net.Path.from(params.get("broadcast") ?? "");
	log("mode", mode, String(name));
	if (mode !== "publish" && mode !== "watch") throw new Error(`unknown mode: ${mode}`);
	// @moq/publish and @moq/watch must share one @moq/net (the connection's classes); the
	// lock file pins both to the same copy, which this checks.
	if (Publish.Net.Connection.connect !== Net.Connection.connect) {
		throw new Error("@moq/publish and @moq/watch bundle different @moq/net copies");
	}
	const connection = await connect();
	if (mode === "publish") await publish(connection, name);
	else await watch(connection, name);
}

window.addEventListener("unhandledrejection", (event) => fail(event.reason));
main().catch(fail);
