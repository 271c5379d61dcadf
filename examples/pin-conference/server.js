"use strict";
// A PIN-protected conference line on Chorus, written only against the
// Catapult v1 SDK node-bandwidth 4.0.0 and node's http module.
//
// At start it creates an application whose incomingCallUrl is this
// server, allocates NUMBER and assigns it to the application, and creates
// one conference per PIN in PINS. A call to NUMBER then goes:
//
//   incomingcall -> answer the call
//   answer       -> gather a PIN ("... followed by the pound key")
//   gather       -> right PIN: add the call to that PIN's conference
//                   wrong PIN: ask again; after MAX_TRIES wrong tries,
//                   say goodbye and hang up once it has been said
//
// Configuration (environment):
//   CHORUS_URL      the API's base URL, without /v1 (http://127.0.0.1:8080)
//   CHORUS_USER_ID  the API user (required), with CHORUS_TOKEN and
//   CHORUS_TOKEN    CHORUS_SECRET, as given to chorus --user id:token:secret
//   CHORUS_SECRET
//   NUMBER          the number callers dial (+15550001234)
//   PINS            comma-separated PINs, one conference each (1234)
//   LISTEN          host:port of this server (127.0.0.1:8090; port 0 picks one)
//   PUBLIC_URL      how Chorus reaches this server (http://LISTEN)
//
// It logs one line per step to stdout; the lines below have a fixed form
// that cmd/chorus/pinconference_example_test.go reads:
//   room <pin> <conferenceId>
//   ready <number>
//   gather <callId> <try>
//   joined <callId> <conferenceId>
//   goodbye <callId>
// SIGINT or SIGTERM completes the conferences, releases the number and
// deletes the application before it exits.

const crypto = require("node:crypto");
const http = require("node:http");
const Bandwidth = require("node-bandwidth");

const MAX_TRIES = 3;

function env(name, def) {
	const v = process.env[name] || def;
	if (!v) {
		console.error(`pin-conference: environment variable ${name} is required`);
		process.exit(2);
	}
	return v;
}

const NUMBER = env("NUMBER", "+15550001234");
const PINS = env("PINS", "1234").split(",").map((p) => p.trim()).filter((p) => p !== "");
const LISTEN = env("LISTEN", "127.0.0.1:8090");
const client = new Bandwidth({
	userId: env("CHORUS_USER_ID"),
	apiToken: env("CHORUS_TOKEN"),
	apiSecret: env("CHORUS_SECRET"),
	baseUrl: env("CHORUS_URL", "http://127.0.0.1:8080"),
});

const rooms = new Map(); // PIN -> conference id
const calls = new Map(); // call id -> { tries, leaving }
let app; // the application
let number; // the phone number resource

// ask starts a gather for the PIN with a spoken, bargeable prompt: a
// caller who knows the PIN can key it while the prompt still plays.
async function ask(callId) {
	const c = calls.get(callId);
	c.tries++;
	const sentence = c.tries === 1
		? "Welcome. Please enter your PIN followed by the pound key."
		: "That PIN is not valid. Please enter your PIN followed by the pound key.";
	await client.Call.createGather(callId, {
		maxDigits: 10, terminatingDigits: "#", interDigitTimeout: "10", tag: "pin",
		prompt: { sentence, gender: "female", locale: "en_US", bargeable: true },
	});
	console.log("gather", callId, c.tries);
}

// goodbye says goodbye; the speak event for it hangs up. The timer hangs
// up anyway should that event never come (the call ended meanwhile, or
// the server could not speak).
async function goodbye(callId) {
	const c = calls.get(callId);
	c.leaving = setTimeout(() => hangup(callId), 15000);
	await client.Call.playAudioAdvanced(callId, { sentence: "Sorry, that PIN is not valid. Goodbye.", gender: "female", locale: "en_US", tag: "goodbye" });
	console.log("goodbye", callId);
}

async function hangup(callId) {
	const c = calls.get(callId);
	if (c) {
		clearTimeout(c.leaving);
		calls.delete(callId);
	}
	await client.Call.hangup(callId);
}

// onEvent handles one callback from Chorus.
async function onEvent(ev) {
	const callId = ev.callId;
	switch (ev.eventType) {
	case "incomingcall":
		console.log("incoming", callId, "from", ev.from, "to", ev.to);
		calls.set(callId, { tries: 0, leaving: null });
		await client.Call.answer(callId);
		return;
	case "answer":
		if (calls.has(callId)) {
			await ask(callId);
		}
		return;
	case "gather": {
		const c = calls.get(callId);
		if (!c || ev.tag !== "pin" || ev.reason === "hung-up") {
			return;
		}
		const conferenceId = rooms.get(ev.digits);
		if (conferenceId) {
			calls.delete(callId);
			await client.Conference.createMember(conferenceId, { callId });
			console.log("joined", callId, conferenceId);
		} else if (c.tries < MAX_TRIES) {
			console.log("wrong", callId, c.tries);
			await ask(callId);
		} else {
			await goodbye(callId);
		}
		return;
	}
	case "speak":
		if (ev.tag === "goodbye" && ev.status === "done" && calls.has(callId)) {
			await hangup(callId);
		}
		return;
	case "hangup":
		if (calls.has(callId)) {
			clearTimeout(calls.get(callId).leaving);
			calls.delete(callId);
		}
		console.log("hangup", callId, ev.cause);
		return;
	}
}

// The callback server: Chorus POSTs each event as JSON (GET with a query
// string when the application's callbackHttpMethod says so). It answers
// at once and acts afterwards: Chorus does not wait on the application.
const server = http.createServer((req, res) => {
	const chunks = [];
	req.on("data", (b) => chunks.push(b));
	req.on("end", () => {
		res.writeHead(200).end();
		let ev;
		try {
			const body = Buffer.concat(chunks).toString();
			ev = body ? JSON.parse(body) : Object.fromEntries(new URL(req.url, "http://x").searchParams);
		} catch (err) {
			console.error("bad callback body:", err.message);
			return;
		}
		onEvent(ev).catch((err) => console.error(`handling ${ev.eventType} of ${ev.callId}:`, err.message));
	});
});

async function start() {
	const i = LISTEN.lastIndexOf(":");
	await new Promise((resolve, reject) => {
		server.once("error", reject);
		server.listen(Number(LISTEN.slice(i + 1)), LISTEN.slice(0, i), resolve);
	});
	const addr = server.address();
	const publicUrl = process.env.PUBLIC_URL || `http://${addr.address}:${addr.port}`;
	console.log("listening", publicUrl);

	app = await client.Application.create({
		name: "pin-conference", incomingCallUrl: publicUrl + "/events", callbackHttpMethod: "post", autoAnswer: false,
	});
	console.log("application", app.id);
	try {
		number = await client.PhoneNumber.create({ number: NUMBER, applicationId: app.id });
	} catch (err) {
		if (err.statusCode !== 409) {
			throw err;
		}
		// Ours already, from an earlier run that did not clean up: take it over.
		number = await client.PhoneNumber.get(NUMBER);
		await client.PhoneNumber.update(number.id, { applicationId: app.id });
	}
	for (const pin of PINS) {
		// A dial-in to a live conference's from goes straight into that
		// conference, and each conference needs its own: a random one
		// keeps callers from skipping the PIN.
		const conf = await client.Conference.create({ from: "room-" + crypto.randomBytes(9).toString("hex") });
		rooms.set(pin, conf.id);
		console.log("room", pin, conf.id);
	}
	console.log("ready", NUMBER);
}

async function stop() {
	server.close();
	const steps = [...rooms.values()].map((id) => () => client.Conference.update(id, { state: "completed" }));
	if (number) {
		steps.push(() => client.PhoneNumber.delete(number.id));
	}
	if (app) {
		steps.push(() => client.Application.delete(app.id));
	}
	for (const step of steps) {
		await step().catch((err) => console.error("clean-up:", err.message));
	}
	console.log("stopped");
	process.exit(0);
}

process.once("SIGINT", stop);
process.once("SIGTERM", stop);
start().catch((err) => {
	console.error("pin-conference: start:", err.statusCode || "", err.message);
	process.exit(1);
});
