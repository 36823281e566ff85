// The browser test's page script, bundled with esbuild (see tests/tests/browser.rs).
//
// Connects to our WebTransport server through @moq/lite (WebSocket fallback disabled),
// trusting the server's self-signed certificate by its SHA-256, subscribes to a track and
// prints every frame to the console as `MOQTEST ...` lines, which the test reads from
// Chromium's stderr.
import * as Moq from "@moq/lite";

const params = new URLSearchParams(location.search);
const log = (...args) => console.log(["MOQTEST", ...args].join(" "));

function hexToBytes(hex) {
	const out = new Uint8Array(hex.length / 2);
	for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
	return out;
}

async function main() {
	const url = new URL(params.get("url"));
	const frames = Number(params.get("frames"));
	log("connecting", url.toString());
	const connection = await Moq.Connection.connect(url, {
		websocket: { enabled: false },
		webtransport: {
			serverCertificateHashes: [{ algorithm: "sha-256", value: hexToBytes(params.get("hash")) }],
		},
	});
	log("version", connection.version);
	const broadcast = connection.consume(Moq.Path.from(params.get("broadcast")));
	const track = broadcast.subscribe(params.get("track"), 0);
	for (let i = 0; i < frames; i++) {
		const frame = await track.readFrameSequence();
		if (!frame) {
			log("ended", "after", i);
			return;
		}
		log("frame", frame.group, frame.frame, new TextDecoder().decode(frame.data));
	}
	// PROBE replies from the server (moq-lite-04): the RTT they carry, in ms.
	log("probe-rtt", connection.rtt?.peek() ?? "none");
	log("done", frames);
	track.close();
	connection.close();
}

main().catch((err) => log("error", String(err?.stack ?? err)));
