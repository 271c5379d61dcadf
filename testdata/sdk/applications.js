"use strict";
// Applications, phone numbers and the inbound call flow against a running
// Chorus, driven only through the Catapult v1 SDK node-bandwidth 4.0.0
// (issue 13).
//
// Env: BASE_URL (without /v1), USER_ID, TOKEN, SECRET (Alice), OTHER_ID,
// OTHER_TOKEN, OTHER_SECRET (Bob), CALLBACK_URL (the application's
// incomingCallUrl), NUMBER (the number to allocate), FROM (a conference's).
//
// Protocol with the driver (cmd/chorus/sdk_test.go), one line each on stdout:
//   DIAL <number>   a SIP caller should now dial <number> (it will ring)
//   PASS            everything passed (exit 0)
// Anything else is diagnostics. Exit status 1 on failure.

const assert = require("node:assert/strict");
const Bandwidth = require("node-bandwidth");

function env(name) {
	const v = process.env[name];
	if (!v) {
		console.error(`applications.js: environment variable ${name} is required`);
		process.exit(2);
	}
	return v;
}

const BASE_URL = env("BASE_URL");
const client = new Bandwidth({ userId: env("USER_ID"), apiToken: env("TOKEN"), apiSecret: env("SECRET"), baseUrl: BASE_URL });
const other = new Bandwidth({ userId: env("OTHER_ID"), apiToken: env("OTHER_TOKEN"), apiSecret: env("OTHER_SECRET"), baseUrl: BASE_URL });
const CALLBACK_URL = env("CALLBACK_URL");
const NUMBER = env("NUMBER");
const FROM = env("FROM");

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const show = (v) => JSON.stringify(v);
let current = "start";

async function step(name, fn) {
	current = name;
	const t0 = Date.now();
	const out = await fn();
	console.log(`ok   ${name} (${Date.now() - t0} ms)${out === undefined ? "" : " -> " + show(out)}`);
	return out;
}

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
	assert.ok(got instanceof Bandwidth.UnexpectedResponseError, `got ${got && got.name}: ${got && got.message}`);
	assert.equal(got.statusCode, status, `status code (message ${show(got.message)})`);
	return { statusCode: got.statusCode, message: got.message };
}

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

// ringing waits for a new call to NUMBER in state started.
async function ringing(seen) {
	const list = await poll("a ringing call to " + NUMBER, () => client.Call.list({ state: "started" }),
		(calls) => calls.some((c) => c.to === NUMBER && !seen.has(c.id)), 20000);
	const call = list.find((c) => c.to === NUMBER && !seen.has(c.id));
	seen.add(call.id);
	return call;
}

async function main() {
	const A = client.Application;
	const P = client.PhoneNumber;

	const app = await step("Application.create", () => A.create({ name: "pin", incomingCallUrl: CALLBACK_URL, autoAnswer: false }));
	assert.ok(/^a-/.test(app.id), `application id from Location: ${app.id}`);
	const got = await step("Application.get", () => A.get(app.id));
	assert.equal(got.name, "pin");
	assert.equal(got.incomingCallUrl, CALLBACK_URL);
	assert.equal(got.autoAnswer, false);
	await step("Application.update", () => A.update(app.id, { name: "pin2", incomingCallUrlCallbackTimeout: 5000 }));
	const upd = await step("Application.get (updated)", () => A.get(app.id));
	assert.equal(upd.name, "pin2");
	assert.equal(upd.incomingCallUrlCallbackTimeout, 5000);
	const apps = await step("Application.list", () => A.list({ size: 10 }));
	assert.deepEqual(apps.applications.map((a) => a.id), [app.id]);
	assert.equal(apps.hasNextPage, false);

	const num = await step("PhoneNumber.create", () => P.create({ number: NUMBER, applicationId: app.id }));
	assert.ok(/^n-/.test(num.id), `number id from Location: ${num.id}`);
	const byId = await step("PhoneNumber.get (id)", () => P.get(num.id));
	const byNumber = await step("PhoneNumber.get (number)", () => P.get(NUMBER));
	assert.deepEqual(byNumber, byId);
	assert.equal(byId.number, NUMBER);
	assert.equal(byId.applicationId, app.id);
	await step("PhoneNumber.update", () => P.update(num.id, { name: "main" }));
	const nums = await step("PhoneNumber.list (applicationId)", () => P.list({ applicationId: app.id }));
	assert.equal(nums.phoneNumbers.length, 1);
	assert.equal(nums.phoneNumbers[0].name, "main");

	await step("another user: Application.get rejects 404", () => expectReject(other.Application.get(app.id), 404));
	await step("another user: PhoneNumber.get rejects 404", () => expectReject(other.PhoneNumber.get(NUMBER), 404));
	await step("another user: PhoneNumber.create rejects 409", () => expectReject(other.PhoneNumber.create({ number: NUMBER }), 409));

	const conf = await step("Conference.create", () => client.Conference.create({ from: FROM }));

	// An incoming call: answered by the application and added to the room.
	const seen = new Set();
	console.log(`DIAL ${NUMBER}`);
	const call = await step("Call.list (state started)", () => ringing(seen));
	assert.equal(call.direction, "in");
	await step("Call.answer", () => client.Call.answer(call.id));
	await step("Call.get (active)", () => poll("active", () => client.Call.get(call.id), (c) => c.state === "active", 10000));
	const member = await step("Conference.createMember", () => client.Conference.createMember(conf.id, { callId: call.id }));
	const m = await step("Conference.getMember", () => client.Conference.getMember(conf.id, member.id));
	assert.equal(m.state, "active");

	// Another: rejected.
	console.log(`DIAL ${NUMBER}`);
	const call2 = await step("Call.list (second call)", () => ringing(seen));
	await step("Call.reject", () => client.Call.reject(call2.id));
	await step("Call.get (completed)", () => poll("completed", () => client.Call.get(call2.id), (c) => c.state === "completed", 10000));
	await step("Call.reject again rejects 403", () => expectReject(client.Call.reject(call2.id), 403));

	await step("Call.hangup", () => client.Call.hangup(call.id));
	await step("Application.delete", () => A.delete(app.id));
	await step("Application.get (deleted) rejects 404", () => expectReject(A.get(app.id), 404));
	const after = await step("PhoneNumber.get (application deleted)", () => P.get(num.id));
	assert.equal(after.applicationId, undefined);
	await step("PhoneNumber.delete", () => P.delete(num.id));
	await step("PhoneNumber.get (deleted) rejects 404", () => expectReject(P.get(num.id), 404));
	console.log("PASS");
}

main().catch((err) => {
	console.error(`FAIL in step "${current}":`);
	if (err instanceof Bandwidth.UnexpectedResponseError) {
		console.error(`  the SDK rejected: UnexpectedResponseError statusCode=${err.statusCode} message=${show(err.message)}`);
	} else if (err instanceof assert.AssertionError) {
		console.error(`  ${err.message}`);
	}
	console.error(err && err.stack ? err.stack : err);
	process.exit(1);
});
