"use strict";
// A whole conference lifecycle against a running Chorus, driven only through
// the Catapult v1 SDK node-bandwidth 4.0.0.
//
// Env: BASE_URL (e.g. http://127.0.0.1:8080, without /v1), USER_ID, TOKEN,
// SECRET, AUDIO_URL (a short WAV the server can fetch).
//
// Protocol with the driver (cmd/chorus/sdk_test.go), one line each on stdout:
//   READY <conferenceId> <from>   a SIP caller should now dial <from>
//   REMOVING <memberId>           the caller is about to be removed (still up)
//   REMOVED <memberId>            removeMember returned: the caller gets a BYE
//   PASS                          everything passed (exit 0)
// Anything else on stdout/stderr is diagnostics. Exit status 1 on failure.

const assert = require("node:assert/strict");
const Bandwidth = require("node-bandwidth");

function env(name) {
	const v = process.env[name];
	if (!v) {
		console.error(`lifecycle.js: environment variable ${name} is required`);
		process.exit(2);
	}
	return v;
}

const BASE_URL = env("BASE_URL");
const USER_ID = env("USER_ID");
const TOKEN = env("TOKEN");
const SECRET = env("SECRET");
const AUDIO_URL = env("AUDIO_URL");
const FROM = process.env.FROM || "+15550001111";
const JOIN_TIMEOUT_MS = Number(process.env.JOIN_TIMEOUT_MS || 20000);

const client = new Bandwidth({ userId: USER_ID, apiToken: TOKEN, apiSecret: SECRET, baseUrl: BASE_URL });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const show = (v) => JSON.stringify(v);

let current = "start";

// step runs one SDK operation, logging it; a failure names the step.
async function step(name, fn) {
	current = name;
	const t0 = Date.now();
	const out = await fn();
	console.log(`ok   ${name} (${Date.now() - t0} ms)${out === undefined ? "" : " -> " + show(out)}`);
	return out;
}

// expectReject asserts that p rejects with an UnexpectedResponseError of
// the given status and returns the error.
async function expectReject(p, status) {
	let got;
	try {
		const v = await p;
		assert.fail(`expected an UnexpectedResponseError ${status}, but the SDK resolved with ${show(v)}`);
	} catch (err) {
		got = err;
	}
	if (got instanceof assert.AssertionError) {
		throw got;
	}
	assert.ok(got instanceof Bandwidth.UnexpectedResponseError,
		`expected Bandwidth.UnexpectedResponseError, got ${got && got.name}: ${got && got.message}`);
	assert.equal(got.statusCode, status, `status code (message ${show(got.message)})`);
	assert.equal(typeof got.message, "string");
	assert.ok(got.message.length > 0, "the error body's message reaches the SDK (body.message)");
	return { statusCode: got.statusCode, message: got.message };
}

// poll calls fn until check(result) is true or timeoutMs passes.
async function poll(what, fn, check, timeoutMs) {
	const deadline = Date.now() + timeoutMs;
	let last;
	for (;;) {
		last = await fn();
		if (check(last)) {
			return last;
		}
		if (Date.now() > deadline) {
			assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${show(last)}`);
		}
		await sleep(100);
	}
}

const lastSegment = (url) => String(url).substring(String(url).lastIndexOf("/") + 1);

async function main() {
	const C = client.Conference;

	// --- conference 1: created, a SIP caller joins ---
	const created = await step("Conference.create", () => C.create({ from: FROM }));
	assert.equal(typeof created.id, "string");
	assert.ok(created.id.length > 0, "id from the Location header");
	assert.equal(created.from, FROM);
	const confId = created.id;

	const fresh = await step("Conference.get (created)", () => C.get(confId));
	assert.equal(fresh.id, confId);
	assert.equal(fresh.from, FROM);
	assert.equal(fresh.state, "created");
	assert.equal(fresh.activeMembers, 0);

	console.log(`READY ${confId} ${FROM}`);

	const members = await step("Conference.getMembers (wait for the caller)", () =>
		poll("one active member", () => C.getMembers(confId),
			(ms) => Array.isArray(ms) && ms.filter((m) => m.state === "active").length === 1,
			JOIN_TIMEOUT_MS));
	const member = members.find((m) => m.state === "active");
	const memberId = member.id;
	assert.equal(typeof memberId, "string");
	assert.ok(/\/calls\/[^/]+$/.test(member.call), `member.call is a call URL: ${member.call}`);
	const callId = lastSegment(member.call);

	const m0 = await step("Conference.getMember", () => C.getMember(confId, memberId));
	assert.equal(m0.id, memberId);
	assert.equal(m0.state, "active");
	assert.equal(m0.mute, false);
	assert.equal(m0.hold, false);
	assert.equal(m0.call, member.call);
	assert.equal(typeof m0.addedTime, "string");

	// --- the dial-in call through the Call API ---
	const calls = await step("Call.list({conferenceId})", () => client.Call.list({ conferenceId: confId }));
	assert.ok(Array.isArray(calls), "Call.list resolves to an array");
	assert.ok(calls.some((c) => c.id === callId), `Call.list has the member's call ${callId}: ${show(calls)}`);
	const allCalls = await step("Call.list()", () => client.Call.list());
	assert.ok(Array.isArray(allCalls) && allCalls.some((c) => c.id === callId), "Call.list() has the call");
	const call = await step("Call.get", () => client.Call.get(callId));
	assert.equal(call.id, callId);
	assert.equal(call.state, "active");
	assert.equal(call.direction, "in");
	assert.equal(call.conferenceId, confId);

	// --- member mute / hold ---
	assert.equal(await step("updateMember mute true", () => C.updateMember(confId, memberId, { mute: true })), undefined);
	assert.equal((await step("getMember (muted)", () => C.getMember(confId, memberId))).mute, true);
	await step("updateMember mute false", () => C.updateMember(confId, memberId, { mute: false }));
	assert.equal((await step("getMember (unmuted)", () => C.getMember(confId, memberId))).mute, false);
	await step("updateMember hold true", () => C.updateMember(confId, memberId, { hold: true }));
	assert.equal((await step("getMember (held)", () => C.getMember(confId, memberId))).hold, true);
	await step("updateMember hold false", () => C.updateMember(confId, memberId, { hold: false }));
	assert.equal((await step("getMember (unheld)", () => C.getMember(confId, memberId))).hold, false);

	// --- audio ---
	await step("speakSentenceToMember", () => C.speakSentenceToMember(confId, memberId, "Hello from the Catapult SDK."));
	await step("playAudioFileToMember", () => C.playAudioFileToMember(confId, memberId, AUDIO_URL));
	await step("speakSentence (conference)", () => C.speakSentence(confId, "Welcome to the conference."));
	await step("stopSpeaking", () => C.stopSpeaking(confId));
	await step("playAudioAdvanced (sentence, male voice)", () =>
		C.playAudioAdvanced(confId, { sentence: "Advanced audio.", gender: "male", locale: "en_US", tag: "adv" }));
	await step("playAudioFile (conference)", () => C.playAudioFile(confId, AUDIO_URL));
	await sleep(800); // let the caller hear some of the file
	await step("stopAudioFilePlayback", () => C.stopAudioFilePlayback(confId));

	// --- conference state, mute and back ---
	const active = await step("Conference.get (active)", () => C.get(confId));
	assert.equal(active.state, "active");
	assert.equal(active.activeMembers, 1);
	assert.equal(active.from, FROM);
	assert.equal(await step("Conference.update mute true", () => C.update(confId, { mute: true })), undefined);
	assert.equal((await step("Conference.get (muted)", () => C.get(confId))).mute, true);
	await step("Conference.update mute false", () => C.update(confId, { mute: false }));
	assert.equal((await step("Conference.get (unmuted)", () => C.get(confId))).mute, false);

	// --- remove the caller: it gets a BYE, the conference completes ---
	console.log(`REMOVING ${memberId}`);
	assert.equal(await step("removeMember", () => C.removeMember(confId, memberId)), undefined);
	console.log(`REMOVED ${memberId}`);
	const gone = await step("getMember (removed)", () => C.getMember(confId, memberId));
	assert.equal(gone.state, "completed");
	assert.equal(typeof gone.removedTime, "string");
	const done = await step("Conference.get (completed after the last member left)", () =>
		poll("state completed", () => C.get(confId), (c) => c.state === "completed", 5000));
	assert.equal(done.activeMembers, 0);
	assert.equal(typeof done.completedTime, "string");
	const after = await step("getMembers (completed members kept)", () => C.getMembers(confId));
	assert.ok(after.some((m) => m.id === memberId && m.state === "completed"), "the list keeps the removed member");
	const ended = await step("Call.get (after removal)", () =>
		poll("call completed", () => client.Call.get(callId), (c) => c.state === "completed", 5000));
	assert.equal(ended.id, callId);
	const history = await step("Call.list({conferenceId}) (after removal)", () => client.Call.list({ conferenceId: confId }));
	assert.ok(history.some((c) => c.id === callId && c.state === "completed"),
		"Call.list({conferenceId}) keeps the conference's completed call");
	await step("Conference.update on a completed conference rejects 403", () =>
		expectReject(C.update(confId, { mute: true }), 403));

	// --- conference 2: create, terminate ---
	const second = await step("Conference.create (second)", () => C.create({ from: "+15550002222" }));
	assert.notEqual(second.id, confId);
	assert.equal((await step("Conference.get (second, created)", () => C.get(second.id))).state, "created");
	assert.equal(await step("Conference.remove (terminate)", () => C.remove(second.id)), undefined);
	const term = await step("Conference.get (second, completed)", () => C.get(second.id));
	assert.equal(term.state, "completed");

	// --- error paths ---
	await step("Conference.get unknown id rejects 404", () => expectReject(C.get("conf-does-not-exist"), 404));
	await step("getMember unknown id rejects 404", () => expectReject(C.getMember(confId, "member-does-not-exist"), 404));
	await step("Call.get unknown id rejects 404", () => expectReject(client.Call.get("c-does-not-exist"), 404));
	const wrong = new Bandwidth({ userId: USER_ID, apiToken: TOKEN, apiSecret: SECRET + "-wrong", baseUrl: BASE_URL });
	await step("wrong secret rejects 401", () => expectReject(wrong.Conference.get(confId), 401));
	await step("wrong secret rejects 401 (create)", () => expectReject(wrong.Conference.create({ from: FROM }), 401));

	// the node-style callback form works as well
	await step("Conference.get with a callback", () => new Promise((resolve, reject) => {
		C.get(confId, (err, conf) => {
			if (err) {
				reject(err);
				return;
			}
			try {
				assert.equal(conf.id, confId);
				resolve(conf.state);
			} catch (e) {
				reject(e);
			}
		});
	}));

	console.log("PASS");
}

main().catch((err) => {
	console.error(`FAIL in step "${current}":`);
	if (err instanceof Bandwidth.UnexpectedResponseError) {
		console.error(`  the SDK rejected: UnexpectedResponseError statusCode=${err.statusCode} message=${show(err.message)}`);
	} else if (err instanceof assert.AssertionError) {
		console.error(`  ${err.message}`);
		if (err.actual !== undefined || err.expected !== undefined) {
			console.error(`  actual:   ${show(err.actual)}\n  expected: ${show(err.expected)}`);
		}
	}
	console.error(err && err.stack ? err.stack : err);
	process.exit(1);
});
