// Chorus operator console. Every action is a fetch to the public API with
// HTTP Basic credentials; live updates come from the user's event stream
// (Server-Sent Events read with fetch, since EventSource cannot send an
// Authorization header and the secret must never appear in a URL).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { auth: null, rooms: [], room: null, members: new Map(), calls: new Map(), talking: new Map(),
  stream: null, lastEventId: "" };

function base() { return "/v1/users/" + encodeURIComponent(state.auth.user); }

function say(msg, isError) {
  const s = $("status");
  s.textContent = msg || "";
  s.className = isError ? "status error" : "status";
}

// api makes one request and returns the parsed JSON body (or null); it
// throws an Error with the API's message on a non-2xx answer.
async function api(method, path, body) {
  const opts = { method, headers: { Authorization: "Basic " + btoa(state.auth.token + ":" + state.auth.secret) },
    cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(base() + path, opts);
  const text = await r.text();
  let data = null;
  if (text) { try { data = JSON.parse(text); } catch (e) { data = null; } }
  if (!r.ok) {
    const err = new Error((data && data.message) || r.status + " " + r.statusText);
    err.status = r.status;
    throw err;
  }
  return { data, location: r.headers.get("Location") };
}

// act runs an action and reports its failure on the page.
async function act(what, fn) {
  try {
    await fn();
    say(what + ": done");
  } catch (e) {
    say(what + ": " + e.message, true);
    if (e.status === 401) signOut();
  }
}

// ---- sign in ----

async function signIn(auth) {
  state.auth = auth;
  try {
    await api("GET", "/conferences?size=1");
  } catch (e) {
    state.auth = null;
    $("signin-error").textContent = e.status === 401 ? "Wrong user id, token or secret." : e.message;
    return;
  }
  sessionStorage.setItem("chorus.auth", JSON.stringify(auth));
  $("signin").hidden = true;
  $("app").hidden = false;
  $("signout").hidden = false;
  $("who").textContent = auth.user;
  await loadRooms();
  startStream();
}

function signOut() {
  sessionStorage.removeItem("chorus.auth");
  if (state.stream) state.stream.abort();
  state.stream = null;
  state.auth = null;
  state.room = null;
  state.lastEventId = "";
  $("app").hidden = true;
  $("signin").hidden = false;
  $("signout").hidden = true;
  $("who").textContent = "";
  setLive(false);
}

// ---- conferences ----

async function loadRooms() {
  const { data } = await api("GET", "/conferences?size=200");
  const rooms = (data || []).slice();
  const live = (c) => (c.state === "completed" ? 1 : 0);
  rooms.sort((a, b) => live(a) - live(b) || (b.createdTime || "").localeCompare(a.createdTime || ""));
  state.rooms = rooms;
  const ul = $("room-list");
  ul.replaceChildren();
  for (const c of rooms) {
    const li = document.createElement("li");
    li.dataset.conference = c.id;
    li.className = state.room === c.id ? "sel" : "";
    const id = document.createElement("span");
    id.className = "id";
    id.textContent = (c.from ? c.from + " · " : "") + c.id;
    const meta = document.createElement("span");
    meta.className = "badge " + c.state;
    meta.textContent = c.state === "completed" ? "ended" : c.state === "created" ? "empty" : c.activeMembers + " live";
    li.append(id, meta);
    li.addEventListener("click", () => selectRoom(c.id));
    ul.append(li);
  }
  if (!rooms.length) {
    const li = document.createElement("li");
    li.className = "hint";
    li.textContent = "No conferences yet.";
    ul.append(li);
  }
  if (!state.room && rooms.length && rooms[0].state !== "completed") await selectRoom(rooms[0].id);
}

async function selectRoom(id) {
  state.room = id;
  $("dial-from").value = "";
  state.members.clear();
  for (const li of $("room-list").children) li.classList.toggle("sel", li.dataset.conference === id);
  $("room").hidden = false;
  await loadRoom();
}

async function loadRoom() {
  const id = state.room;
  if (!id) return;
  const [{ data: c }, { data: ms }] = await Promise.all([
    api("GET", "/conferences/" + encodeURIComponent(id)),
    api("GET", "/conferences/" + encodeURIComponent(id) + "/members")]);
  if (state.room !== id) return;
  $("room-title").textContent = (c.from ? c.from + " · " : "") + c.id;
  if (!$("dial-from").value) $("dial-from").value = c.from || "";
  $("room-state").textContent = c.state;
  $("room-state").className = "badge " + c.state;
  $("room-info").textContent = "created " + new Date(c.createdTime).toLocaleString() +
    (c.completedTime ? " · ended " + new Date(c.completedTime).toLocaleString() : "") +
    " · " + c.activeMembers + " active member" + (c.activeMembers === 1 ? "" : "s") +
    (c.mute ? " · room muted" : "") + (c.hold ? " · room on hold" : "");
  const ended = c.state === "completed";
  for (const f of ["end-room", "play-form", "speak-form", "dial-form"]) {
    const el = $(f);
    (el.tagName === "FORM" ? el.querySelectorAll("button,input") : [el]).forEach((x) => { x.disabled = ended; });
  }
  const active = (ms || []).filter((m) => m.state === "active");
  const left = (ms || []).length - active.length;
  $("left").textContent = left ? left + " member" + (left === 1 ? "" : "s") + " left the room." : "";
  state.members = new Map(active.map((m) => [m.id, m]));
  renderMembers();
  for (const m of active) loadCall(m);
}

// loadCall fetches a member's call once, for its caller id.
async function loadCall(m) {
  const callId = m.call.slice(m.call.lastIndexOf("/") + 1);
  if (state.calls.has(callId)) return;
  state.calls.set(callId, null);
  try {
    const { data } = await api("GET", "/calls/" + encodeURIComponent(callId));
    state.calls.set(callId, data);
    renderMembers();
  } catch (e) { state.calls.delete(callId); }
}

function renderMembers() {
  const box = $("members");
  const tpl = $("member-tpl");
  const seen = new Set();
  for (const m of state.members.values()) {
    seen.add(m.id);
    let el = box.querySelector('[data-member="' + CSS.escape(m.id) + '"]');
    if (!el) {
      el = tpl.content.firstElementChild.cloneNode(true);
      el.dataset.member = m.id;
      el.querySelectorAll("button").forEach((b) => b.addEventListener("click", () => memberAction(el.dataset.member, b)));
      box.append(el);
    }
    const call = state.calls.get(m.call.slice(m.call.lastIndexOf("/") + 1));
    el.querySelector(".name").textContent = call ? call.from + " → " + call.to : "member";
    el.querySelector(".mid").textContent = m.id;
    el.dataset.talking = String(state.talking.get(m.id) ?? m.talking);
    el.dataset.mute = String(m.mute);
    el.dataset.hold = String(m.hold);
    const mute = el.querySelector('[data-act="mute"]');
    mute.textContent = m.mute ? "Unmute" : "Mute";
    mute.classList.toggle("on", m.mute);
    const hold = el.querySelector('[data-act="hold"]');
    hold.textContent = m.hold ? "Resume" : "Hold";
    hold.classList.toggle("on", m.hold);
    el.querySelector(".flags").textContent = [m.codec, m.mute && "muted", m.hold && "on hold", m.phoneHold && "phone holds"]
      .filter(Boolean).join(" · ");
    for (const k of ["talkVolume", "receiveVolume", "sensitivity"]) el.querySelector('[data-v="' + k + '"]').textContent = m[k];
  }
  for (const el of [...box.children]) if (!seen.has(el.dataset.member)) el.remove();
  if (!state.members.size) box.innerHTML = '<p class="hint">Nobody in the room.</p>';
  else box.querySelectorAll("p.hint").forEach((p) => p.remove());
}

function memberPath(id) {
  return "/conferences/" + encodeURIComponent(state.room) + "/members/" + encodeURIComponent(id);
}

function memberAction(id, button) {
  const m = state.members.get(id);
  if (!m) return;
  const a = button.dataset.act;
  let body;
  if (a === "mute") body = { mute: !m.mute };
  else if (a === "hold") body = { hold: !m.hold };
  else if (a === "remove") body = { state: "completed" };
  else body = { [a]: Math.max(-4, Math.min(4, m[a] + Number(button.dataset.d))) };
  act(a + " " + id, async () => {
    await api("POST", memberPath(id), body);
    await loadRoom();
  });
}

// ---- event stream ----

function setLive(on) {
  $("live").textContent = on ? "live" : "offline";
  $("live").classList.toggle("on", on);
}

// startStream reads the user's events until signed out, reconnecting with
// Last-Event-ID so that nothing is missed.
async function startStream() {
  if (state.stream) state.stream.abort();
  const ctl = new AbortController();
  state.stream = ctl;
  let delay = 1000;
  while (!ctl.signal.aborted && state.auth) {
    try {
      const headers = { Authorization: "Basic " + btoa(state.auth.token + ":" + state.auth.secret), Accept: "text/event-stream" };
      if (state.lastEventId) headers["Last-Event-ID"] = state.lastEventId;
      const r = await fetch(base() + "/events", { headers, signal: ctl.signal, cache: "no-store", credentials: "omit" });
      if (r.status === 401) { signOut(); return; }
      if (!r.ok || !r.body) throw new Error("event stream: " + r.status);
      setLive(true);
      delay = 1000;
      await readSSE(r.body, onEvent);
    } catch (e) {
      if (ctl.signal.aborted) return;
    }
    setLive(false);
    await new Promise((res) => setTimeout(res, delay));
    delay = Math.min(delay * 2, 15000);
  }
}

// readSSE parses a text/event-stream body (HTML Living Standard,
// "Server-sent events"): id and data fields, comments ignored.
async function readSSE(body, handle) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "", data = [], id = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let nl;
    while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf.startsWith("\r\n", nl) ? 2 : 1));
      if (line === "") {
        if (id !== null) state.lastEventId = id;
        if (data.length) handle(data.join("\n"));
        data = []; id = null;
        continue;
      }
      if (line.startsWith(":")) continue;
      const c = line.indexOf(":");
      const field = c < 0 ? line : line.slice(0, c);
      let val = c < 0 ? "" : line.slice(c + 1);
      if (val.startsWith(" ")) val = val.slice(1);
      if (field === "data") data.push(val);
      else if (field === "id") id = val;
    }
  }
}

let reloadTimer = null;
function reloadSoon() {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(() => {
    loadRooms().then(loadRoom).catch((e) => say(e.message, true));
  }, 100);
}

function onEvent(text) {
  let ev;
  try { ev = JSON.parse(text); } catch (e) { return; }
  if (ev.eventType === "talking") {
    state.talking.set(ev.memberId, ev.talking);
    const el = $("members").querySelector('[data-member="' + CSS.escape(ev.memberId) + '"]');
    if (el) el.dataset.talking = String(ev.talking);
    return;
  }
  if (ev.eventType === "reset" || ev.eventType === "conference" || ev.eventType === "conference-member" ||
      ev.eventType === "hangup" || ev.eventType === "answer") reloadSoon();
}

// ---- room actions ----

function roomPath() { return "/conferences/" + encodeURIComponent(state.room); }

function onSubmit(id, fn) {
  $(id).addEventListener("submit", (e) => { e.preventDefault(); fn(); });
}

function init() {
  onSubmit("signin-form", () => {
    $("signin-error").textContent = "";
    signIn({ user: $("user").value.trim(), token: $("token").value.trim(), secret: $("secret").value });
  });
  $("signout").addEventListener("click", signOut);
  onSubmit("create-form", () => act("create room", async () => {
    const { location } = await api("POST", "/conferences", { from: $("create-from").value.trim() });
    $("create-from").value = "";
    await loadRooms();
    if (location) await selectRoom(location.slice(location.lastIndexOf("/") + 1));
  }));
  // Ending a room hangs everyone up: the button asks to be pressed again
  // within 4 s (no confirm() dialog, which blocks the page's updates).
  let endArmed = null;
  $("end-room").addEventListener("click", () => {
    const b = $("end-room");
    if (!endArmed) {
      b.textContent = "Really end?";
      b.classList.add("armed");
      endArmed = setTimeout(() => { endArmed = null; b.textContent = "End room"; b.classList.remove("armed"); }, 4000);
      return;
    }
    clearTimeout(endArmed);
    endArmed = null;
    b.textContent = "End room";
    b.classList.remove("armed");
    act("end room", async () => { await api("POST", roomPath(), { state: "completed" }); await loadRooms(); await loadRoom(); });
  });
  onSubmit("play-form", () => act("play", () => api("POST", roomPath() + "/audio", { fileUrl: $("play-url").value.trim() })));
  onSubmit("speak-form", () => act("speak", () => api("POST", roomPath() + "/audio", { sentence: $("speak-text").value })));
  onSubmit("dial-form", () => act("dial", async () => {
    await api("POST", "/calls", { from: $("dial-from").value.trim(), to: $("dial-to").value.trim(), conferenceId: state.room });
  }));
  const saved = sessionStorage.getItem("chorus.auth");
  if (saved) {
    try { signIn(JSON.parse(saved)); } catch (e) { sessionStorage.removeItem("chorus.auth"); }
  }
}

init();
