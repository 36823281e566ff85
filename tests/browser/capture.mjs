// Screenshots of a live page in a running Chromium, through the DevTools protocol
// (Page.captureScreenshot): `node --experimental-websocket capture.mjs PORT OUT COUNT MS`
// writes OUT-1.png ... OUT-COUNT.png, MS milliseconds apart, and prints their paths.
import fs from "node:fs";

const [port, out, count, interval] = process.argv.slice(2);
const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
const page = targets.find((t) => t.type === "page");
if (!page) throw new Error("no page in the DevTools target list");
const ws = new WebSocket(page.webSocketDebuggerUrl);
await new Promise((resolve, reject) => {
	ws.onopen = resolve;
	ws.onerror = reject;
});
let id = 0;
const pending = new Map();
ws.onmessage = (m) => {
	const msg = JSON.parse(m.data);
	pending.get(msg.id)?.(msg);
	pending.delete(msg.id);
};
const call = (method, params = {}) =>
	new Promise((resolve) => {
		const i = ++id;
		pending.set(i, resolve);
		ws.send(JSON.stringify({ id: i, method, params }));
	});
for (let n = 1; n <= Number(count); n++) {
	if (n > 1) await new Promise((r) => setTimeout(r, Number(interval)));
	const { result, error } = await call("Page.captureScreenshot", { format: "png" });
	if (error) throw new Error(JSON.stringify(error));
	const path = `${out}-${n}.png`;
	fs.writeFileSync(path, Buffer.from(result.data, "base64"));
	console.log(path);
}
ws.close();
