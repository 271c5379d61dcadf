"use strict";
// Call-level media (issue 13) driven only through the Catapult v1 SDK
// node-bandwidth 4.0.0: dial a call, play a file and speak to it, send it
// DTMF, gather the digits its far end keys, stop a gather, hang up.
//
// Env: BASE_URL (without /v1), USER_ID, TOKEN, SECRET, AUDIO_URL (a short
// WAV the server can fetch), CALLEE (a SIP URI that answers).
//
// Protocol with the driver (cmd/chorus/sdk_callmedia_test.go), one line
// each on stdout:
//   GATHER <callId>   a gather runs: the far end should key 123#
//   PASS              everything passed (exit 0)
// Anything else on stdout/stderr is diagnostics. Exit status 1 on failure.

const assert = require("node:assert/strict");
const Bandwidth = require("node-bandwidth");

function env(name) {
	const v = process.env[name];
	if (!v) {
		console.error(`callmedia.js: environment variable ${name} is required`);
		process.exit(2);
	}
	return v;
}

const client = new Bandwidth({ userId: env("USER_ID"), apiToken: env("TOKEN"), apiSecret: env("SECRET"), baseUrl: env("BASE_URL") });
const AUDIO_URL = env("AUDIO_URL");
const CALLEE = env("CALLEE");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// until polls fn every 50 ms until it returns a truthy value, for up to ms.
async function until(what, ms, fn) {
	const deadline = Date.now() + ms;
	for (;;) {
		const v = await fn();
		if (v) {
			return v;
		}
		if (Date.now() > deadline) {
			throw new Error(`timed out waiting for ${what}`);
		}
		await sleep(50);
	}
}

async function main() {
	const call = await client.Call.create({ from: "+15550002222", to: CALLEE, tag: "sdk" });
	assert.match(call.id, /^c-/);
	await until("the call to be answered", 10000, async () => (await client.Call.get(call.id)).state === "active");
	console.log("ok   answered", call.id);

	await client.Call.playAudioFile(call.id, AUDIO_URL);
	await client.Call.stopAudioFilePlayback(call.id);
	await client.Call.speakSentence(call.id, "Please enter your PIN.");
	await client.Call.stopSpeaking(call.id);
	await client.Call.playAudioAdvanced(call.id, { fileUrl: AUDIO_URL, loopEnabled: false, tag: "file" });
	console.log("ok   audio");

	await client.Call.sendDtmf(call.id, "12#");
	console.log("ok   dtmf");

	const stopped = await client.Call.createGather(call.id, { maxDigits: 5 });
	assert.match(stopped.id, /^gather-/);
	await client.Call.completeGather(call.id, stopped.id);
	let g = await client.Call.getGather(call.id, stopped.id);
	assert.equal(g.state, "completed");
	assert.equal(g.reason, "stopped");

	const gather = await client.Call.createGather(call.id, {
		maxDigits: 10, interDigitTimeout: "5", terminatingDigits: "#", tag: "pin",
		prompt: { sentence: "Enter your PIN", gender: "female", locale: "en_US", bargeable: true },
	});
	console.log("GATHER", call.id);
	g = await until("the gather to complete", 15000, async () => {
		const v = await client.Call.getGather(call.id, gather.id);
		return v.state === "completed" ? v : null;
	});
	assert.equal(g.digits, "123");
	assert.equal(g.reason, "terminating-digit");
	assert.equal(g.tag, "pin");
	console.log("ok   gather", JSON.stringify(g));

	await client.Call.hangup(call.id);
	await until("the call to end", 10000, async () => (await client.Call.get(call.id)).state === "completed");
	let err;
	try {
		await client.Call.sendDtmf(call.id, "1");
	} catch (e) {
		err = e;
	}
	assert.equal(err && err.statusCode, 403);
	console.log("PASS");
}

main().catch((e) => {
	console.error("callmedia.js failed:", e && e.stack ? e.stack : e);
	process.exit(1);
});
