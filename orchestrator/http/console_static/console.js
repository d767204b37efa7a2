// The developer console: get a token, play the digital person's side of the
// control socket (as the Web SDK does in via-browser mode), and follow the
// session through the sessions API and its Server-Sent Events.
//
// No framework, no build step. Text from the server is only ever put into the
// page with textContent / createTextNode, never as HTML.
"use strict";

(function () {
  const PERSONA_ID = 1;
  const MAX_FRAMES = 200;
  const CARD_MARKER = /@showcards\(([^)]*)\)/g;
  const mode = document.documentElement.dataset.mode === "production" ? "production" : "development";

  const state = {
    jwt: null,
    header: null,
    claims: null,
    sessionId: null,
    socket: null,
    events: null,
    countdown: null,
    flagsKey: "",
    speechTimer: null,
    session: { status: "–", dpSessionId: null, speech: "idle", recognizing: false, variables: {}, transcript: [] },
  };

  const $ = (id) => document.getElementById(id);

  // --- small DOM helpers -----------------------------------------------------------

  function el(tag, className, ...children) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    for (const child of children) {
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function setText(id, text) {
    $(id).textContent = text;
  }

  function setStatus(text) {
    setText("status", text);
  }

  function randomHex(bytes) {
    const values = crypto.getRandomValues(new Uint8Array(bytes));
    return Array.from(values, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // --- token ----------------------------------------------------------------------

  function decodeSegment(segment) {
    const base64 = segment.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  }

  async function getToken() {
    disconnect();
    closeEvents();
    setStatus("Getting a token…");
    let body;
    try {
      const response = await fetch("api/jwt", { headers: { Accept: "application/json" }, cache: "no-store" });
      body = await response.json();
      if (!response.ok) throw new Error(`${response.status} ${body.error || ""}: ${body.detail || ""}`);
    } catch (error) {
      setStatus(`No token: ${error.message}`);
      return;
    }
    const [header, claims] = body.jwt.split(".").slice(0, 2).map(decodeSegment);
    Object.assign(state, { jwt: body.jwt, header, claims, sessionId: body.session_id, flagsKey: "" });
    state.session = { status: "issued", dpSessionId: null, speech: "idle", recognizing: false, variables: {}, transcript: [] };
    setText("session-id", body.session_id);
    setText("session-server", body.url);
    setText("control-url", claims["sm-control"] || "(none)");
    setText("claims", JSON.stringify({ header, claims }, null, 2));
    $("chat").replaceChildren();
    $("frames").replaceChildren();
    for (const id of ["var-name", "var-value", "var-set", "end-session", "archive-mine"]) $(id).disabled = false;
    clearInterval(state.countdown);
    state.countdown = setInterval(tick, 1000);
    tick();
    renderSession();
    openEvents();
    setStatus("Token issued. Connect to start the conversation.");
  }

  function formatSeconds(total) {
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = total % 60;
    const mm = String(m).padStart(h ? 2 : 1, "0");
    return `${h ? h + ":" : ""}${mm}:${String(s).padStart(2, "0")}`;
  }

  function tick() {
    const now = Math.floor(Date.now() / 1000);
    const left = state.claims.exp - now;
    setText("countdown", left > 0 ? formatSeconds(left) : "expired");
    $("countdown").classList.toggle("bad", left <= 60);
    $("connect").disabled = left <= 0 || state.socket !== null;
    renderFlags(tokenFlags(now));
  }

  // Problems (and notes) about the current token, worst first.
  function tokenFlags(now) {
    const { header, claims } = state;
    const flags = [];
    const control = claims["sm-control"];
    if (claims.exp <= now) flags.push(["bad", "Expired: get a new token."]);
    else if (claims.exp - now <= 60) flags.push(["warn", "Expires within a minute."]);
    if (claims.nbf && claims.nbf > now) flags.push(["warn", "Not valid yet: is this machine's clock behind?"]);
    if (header.alg !== "HS256") flags.push(["bad", `Algorithm ${header.alg}: Soul Machines expects HS256.`]);
    if (!control) flags.push(["bad", "No sm-control claim: there is no control socket to open."]);
    else if (control.startsWith("ws://") && location.protocol === "https:") {
      flags.push(["bad", "sm-control is ws:// but this page is https: the browser blocks it."]);
    }
    if (claims["sm-control-via-browser"] === true && mode === "production") {
      flags.push(["bad", "sm-control-via-browser in production: the vendor refuses this."]);
    }
    if (mode === "production") flags.push(["warn", "The server runs in production mode."]);
    if (claims.iss === "dev-ephemeral") {
      flags.push(["warn", "Ephemeral signing key: a real Soul Machines server refuses this token."]);
    }
    if (claims["sm-control-via-browser"] !== true) {
      flags.push(["note", "sm-control-via-browser is off: in a real session the video host opens the control socket; this page stands in for it."]);
    }
    if (!flags.some(([level]) => level === "bad")) flags.unshift(["ok", "Token usable for this console."]);
    return flags;
  }

  function renderFlags(flags) {
    const key = JSON.stringify(flags);
    if (key === state.flagsKey) return;
    state.flagsKey = key;
    $("flags").replaceChildren(
      ...flags.map(([level, text]) => el("li", `flag flag-${level}`, el("span", "flag-level", level), " ", text))
    );
  }

  // --- the control socket (the digital person's side) ---------------------------------

  function envelope(kind, name, body, extra) {
    return { category: "scene", kind, name, body, ...extra };
  }

  function send(message) {
    if (!state.socket || state.socket.readyState !== WebSocket.OPEN) return;
    state.socket.send(JSON.stringify(message));
    logFrame("→", message);
  }

  function controlSocketUrl() {
    const base = state.claims["sm-control"];
    return `${base}${base.includes("?") ? "&" : "?"}access_token=${encodeURIComponent(state.jwt)}`;
  }

  function connect() {
    if (!state.jwt || state.socket) return;
    const dpSessionId = `console-${randomHex(6)}`;
    let socket;
    try {
      socket = new WebSocket(controlSocketUrl());
    } catch (error) {
      setStatus(`Cannot open the control socket: ${error.message}`);
      return;
    }
    state.socket = socket;
    setSocketState("connecting…");
    socket.addEventListener("open", () => {
      setSocketState("open");
      // What the host sends first: the DP session, then the init conversation request.
      send(envelope("event", "state", {
        session: {
          sessionId: dpSessionId,
          state: "connected",
          userInfo: "",
          meta: {
            keyName: state.claims.iss,
            soulId: "developer-console",
            sceneId: 1,
            server: "developer-console",
            region: "local",
            headers: { "User-Agent": [navigator.userAgent], "Accept-Language": [navigator.language] },
          },
        },
        persona: { [PERSONA_ID]: { speechState: "idle" } },
        recognizing: false,
      }));
      send(conversationRequest("", true));
      for (const id of ["say-input", "say-button", "disconnect"]) $(id).disabled = false;
      $("say-input").focus();
      setStatus("Connected: say something.");
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        logFrame("←", event.data);
        return;
      }
      logFrame("←", message);
      onServerMessage(message);
    });
    socket.addEventListener("close", (event) => {
      if (state.socket === socket) state.socket = null;
      clearTimeout(state.speechTimer);
      for (const id of ["say-input", "say-button", "disconnect"]) $(id).disabled = true;
      const reason = event.reason ? `: ${event.reason}` : "";
      const hint = event.code === 1006 ? " (refused or unreachable: check the token checks)" : "";
      setSocketState(`closed (${event.code}${reason})`);
      setStatus(`Control socket closed ${event.code}${reason}${hint}.`);
      if (state.claims) tick();
    });
  }

  function disconnect() {
    if (state.socket) state.socket.close(1000, "console disconnect");
  }

  function setSocketState(text) {
    setText("socket-state", `socket ${text}`);
    $("connect").disabled = state.socket !== null || !state.jwt;
  }

  function conversationRequest(text, init) {
    return envelope("event", "conversationRequest", {
      personaId: PERSONA_ID,
      input: { text },
      variables: { Turn_Id: randomHex(4), is_speaking: state.session.speech === "speaking" },
      optionalArgs: init ? { kind: "init" } : {},
    });
  }

  function onServerMessage(message) {
    if (message.kind === "request" && message.transaction !== undefined && message.transaction !== null) {
      send(envelope("response", message.name, {}, { transaction: message.transaction, status: 0 }));
    }
    if (message.kind !== "request") return;
    const body = message.body || {};
    if (message.name === "conversationResponse") {
      showReply(body);
      pretendToSpeak(String((body.output && body.output.text) || ""));
    } else if (message.name === "startSpeaking") {
      addChat("dp", String(body.text || ""), "startSpeaking (unprompted)");
      pretendToSpeak(String(body.text || ""));
    } else if (message.name === "stopSpeaking") {
      addChat("note", "The server asked the DP to stop speaking.");
      clearTimeout(state.speechTimer);
      speechState("idle");
    }
  }

  // The DP "speaks" for a while, so speech state goes speaking -> idle as it would.
  function pretendToSpeak(text) {
    clearTimeout(state.speechTimer);
    speechState("speaking");
    const millis = Math.min(3000, 300 + 25 * text.length);
    state.speechTimer = setTimeout(() => speechState("idle"), millis);
  }

  function speechState(value) {
    send(envelope("event", "state", { persona: { [PERSONA_ID]: { speechState: value } } }));
  }

  function say(event) {
    event.preventDefault();
    const input = $("say-input");
    const text = input.value.trim();
    if (!text || !state.socket) return;
    addChat("user", text);
    send(conversationRequest(text, false));
    input.value = "";
  }

  // --- the chat view --------------------------------------------------------------------

  function addChat(role, text, note) {
    const who = { user: "You", dp: "Digital person", note: "Note" }[role];
    const item = el("li", `msg msg-${role}`, el("span", "who", who), el("p", "text", text));
    if (note) item.append(el("span", "badge", note));
    $("chat").append(item);
    scrollToEnd($("chat"));
    return item;
  }

  function scrollToEnd(list) {
    list.scrollTop = list.scrollHeight;
  }

  function showReply(body) {
    const text = String((body.output && body.output.text) || "");
    const variables = body.variables || {};
    const spoken = text.replace(CARD_MARKER, "").replace(/\s+/g, " ").trim();
    const item = addChat("dp", spoken);
    for (const match of text.matchAll(CARD_MARKER)) {
      const id = match[1].trim();
      item.append(renderCard(id, variables[`public-${id}`]));
    }
    if (body.fallback) {
      item.append(el("span", "badge badge-warn", "fallback: a Studio fallback skill would answer instead"));
    }
    scrollToEnd($("chat"));
  }

  function renderCard(id, card) {
    const figure = el("figure", "card");
    figure.setAttribute("aria-label", `Content card ${id}`);
    if (!card || typeof card !== "object") {
      figure.append(el("figcaption", "", `card ${id}: no public-${id} variable was sent`));
      figure.classList.add("card-missing");
      return figure;
    }
    figure.append(el("figcaption", "", `card ${id} (${card.component || "?"})`));
    const data = card.data || {};
    if (card.component === "markdown" && typeof data.text === "string") {
      figure.append(renderMarkdown(data.text));
    } else {
      figure.append(el("pre", "code", JSON.stringify(data, null, 2)));
    }
    return figure;
  }

  // A safe subset of markdown: paragraphs, "# " headings, "- " lists, **bold** and
  // `code`. Everything is built from text nodes; no HTML from the card is parsed.
  function renderMarkdown(source) {
    const root = el("div", "markdown");
    for (const block of source.split(/\n{2,}/)) {
      const lines = block.split("\n").filter((line) => line.trim());
      if (!lines.length) continue;
      if (lines.every((line) => /^\s*[-*] /.test(line))) {
        root.append(el("ul", "", ...lines.map((line) => el("li", "", ...inline(line.replace(/^\s*[-*] /, ""))))));
      } else if (lines.length === 1 && /^#{1,6} /.test(lines[0])) {
        root.append(el("h4", "", ...inline(lines[0].replace(/^#+ /, ""))));
      } else {
        const paragraph = el("p");
        lines.forEach((line, index) => {
          if (index) paragraph.append(document.createElement("br"));
          paragraph.append(...inline(line));
        });
        root.append(paragraph);
      }
    }
    return root;
  }

  function inline(text) {
    return text.split(/(\*\*[^*]+\*\*|`[^`]+`)/).filter(Boolean).map((part) => {
      if (part.startsWith("**") && part.endsWith("**") && part.length > 4) return el("strong", "", part.slice(2, -2));
      if (part.startsWith("`") && part.endsWith("`") && part.length > 2) return el("code", "", part.slice(1, -1));
      return document.createTextNode(part);
    });
  }

  function logFrame(direction, message) {
    const text = typeof message === "string" ? message : JSON.stringify(message);
    const list = $("frames");
    list.append(el("li", "", `${direction} ${text.length > 600 ? text.slice(0, 600) + "…" : text}`));
    while (list.childElementCount > MAX_FRAMES) list.firstElementChild.remove();
  }

  // --- the session panel (SSE + sessions API) ---------------------------------------

  function sessionPath(suffix) {
    return `sessions/${encodeURIComponent(state.sessionId)}${suffix}`;
  }

  function openEvents() {
    const source = new EventSource(sessionPath(`/events?access_token=${encodeURIComponent(state.jwt)}`));
    state.events = source;
    setText("s-stream", "connecting…");
    source.addEventListener("open", () => setText("s-stream", "open"));
    source.addEventListener("error", () => {
      setText("s-stream", source.readyState === EventSource.CLOSED ? "closed" : "reconnecting…");
    });
    const on = (type, apply) => source.addEventListener(type, (event) => {
      apply(JSON.parse(event.data));
      renderSession();
    });
    const s = () => state.session;
    on("snapshot", applySnapshot);
    on("connected", () => { s().status = "connected"; });
    on("ended", () => { s().status = "ended"; s().speech = "idle"; });
    on("terminated", () => { s().status = "ended (terminated)"; source.close(); setText("s-stream", "closed"); });
    on("speech", (e) => { s().speech = e.data.speech_state; s().recognizing = e.data.recognizing; });
    on("variables", (e) => { s().variables = e.data.variables || {}; });
    on("turn", (e) => {
      s().transcript.push(transcriptEntry(e.data));
      // No event says which DP session the host bound: read the record once it has one.
      if (!s().dpSessionId) refreshSession();
    });
  }

  function applySnapshot(d) {
    state.session = {
      status: d.terminated ? "ended (terminated)" : d.status,
      dpSessionId: d.dp_session_id,
      speech: d.speech_state,
      recognizing: d.recognizing,
      variables: d.variables || {},
      transcript: (d.transcript || []).map(transcriptEntry),
    };
  }

  function transcriptEntry(t) {
    return { role: t.role, text: t.text, fallback: !!t.fallback, latency: t.latency_ms || null };
  }

  // A reply's latency: milliseconds from the user's frame to each stage, known stages first.
  const STAGES = { handler_done: "handler", first_token: "first token", first_sentence: "first sentence", first_frame: "first frame" };

  function formatLatency(latency) {
    const known = Object.keys(STAGES).filter((stage) => stage in latency);
    const others = Object.keys(latency).filter((stage) => !(stage in STAGES)).sort();
    return [...known, ...others]
      .filter((stage) => typeof latency[stage] === "number")
      .map((stage) => `${STAGES[stage] || stage} ${latency[stage].toFixed(1)} ms`)
      .join(" · ");
  }

  function latencyBadge(latency) {
    const badge = el("span", "latency", formatLatency(latency));
    badge.title = "Milliseconds from the user's turn arriving to each stage of this reply";
    return badge;
  }

  async function refreshSession() {
    try {
      applySnapshot(await api("GET", ""));
      renderSession();
    } catch (error) {
      setStatus(`Session not read: ${error.message}`);
    }
  }

  function closeEvents() {
    if (state.events) state.events.close();
    state.events = null;
    setText("s-stream", "closed");
  }

  function renderSession() {
    const s = state.session;
    setText("s-status", s.status);
    setText("s-dp-session", s.dpSessionId || "–");
    setText("s-speech", s.speech + (s.recognizing ? ", recognizing" : ""));
    $("vars").replaceChildren(
      ...Object.entries(s.variables).map(([name, value]) => {
        const remove = el("button", "small", "Remove");
        remove.type = "button";
        remove.setAttribute("aria-label", `Remove variable ${name}`);
        remove.addEventListener("click", () => patchVariables({ [name]: null }));
        return el("tr", "", el("th", "", name), el("td", "", el("code", "", JSON.stringify(value))), el("td", "", remove));
      })
    );
    $("transcript").replaceChildren(
      ...s.transcript.map(transcriptItem)
    );
    scrollToEnd($("transcript"));
  }

  function transcriptItem(t) {
    const item = el("li", `turn turn-${t.role}`, el("span", "who", t.role === "user" ? "user" : "DP"), " ", t.text, t.fallback ? " (fallback)" : "");
    if (t.latency) item.append(" ", latencyBadge(t.latency));
    return item;
  }

  function parseValue(raw) {
    try {
      return JSON.parse(raw);
    } catch {
      return raw;
    }
  }

  function api(method, suffix, body) {
    return call(method, sessionPath(suffix), state.jwt, body);
  }

  async function call(method, path, credential, body) {
    const headers = { Authorization: `Bearer ${credential}`, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
    const result = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(`${response.status} ${result.error || ""}: ${result.detail || ""}`);
    return result;
  }

  async function patchVariables(patch) {
    try {
      const result = await api("PATCH", "/variables", patch);
      state.session.variables = result.variables || state.session.variables;
      renderSession();
      setStatus(`Variables updated: ${Object.keys(patch).join(", ")}.`);
    } catch (error) {
      setStatus(`Variables not changed: ${error.message}`);
    }
  }

  function setVariable(event) {
    event.preventDefault();
    const name = $("var-name").value.trim();
    if (!name) {
      setStatus("A variable needs a name.");
      $("var-name").focus();
      return;
    }
    patchVariables({ [name]: parseValue($("var-value").value) });
  }

  async function endSession() {
    try {
      await api("DELETE", "");
      setStatus("Session ended through the API.");
    } catch (error) {
      setStatus(`Session not ended: ${error.message}`);
    }
  }

  // --- the archive (ended sessions, read back from the database) ------------------------

  function formatTime(seconds) {
    return seconds ? new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "–";
  }

  function archiveKey() {
    return $("archive-key").value.trim();
  }

  async function listArchive(event) {
    event.preventDefault();
    if (!archiveKey()) {
      setStatus("Listing the archive needs the backend API key.");
      $("archive-key").focus();
      return;
    }
    try {
      const page = await call("GET", "archive/sessions?limit=20", archiveKey());
      $("archive-sessions").replaceChildren(
        ...page.sessions.map((s) => {
          const open = el("button", "small", `${formatTime(s.ended_at)} · ${s.end_reason} · ${s.turns} turns · ${s.id}`);
          open.type = "button";
          open.dataset.sessionId = s.id;
          open.addEventListener("click", () => openArchived(s.id, archiveKey()));
          return el("li", "", open);
        })
      );
      setStatus(`Archive: ${page.sessions.length} recent session${page.sessions.length === 1 ? "" : "s"}.`);
    } catch (error) {
      setStatus(`Archive not listed: ${error.message}`);
    }
  }

  async function openArchived(sessionId, credential) {
    try {
      const record = await call("GET", `archive/sessions/${encodeURIComponent(sessionId)}`, credential);
      for (const button of $("archive-sessions").querySelectorAll("button")) {
        button.setAttribute("aria-current", String(button.dataset.sessionId === sessionId));
      }
      const facts = [
        ["Session", record.id],
        ["DP session", record.dp_session_id || "–"],
        ["Issuer", record.issuer || "–"],
        ["Started", formatTime(record.created_at)],
        ["Ended", `${formatTime(record.ended_at)} (${record.end_reason})`],
        ["Variables", JSON.stringify(record.variables || {})],
      ];
      $("archive-facts").replaceChildren(...facts.flatMap(([name, value]) => [el("dt", "", name), el("dd", "", value)]));
      $("archive-transcript").replaceChildren(
        ...record.transcript.map(transcriptEntry).map(transcriptItem)
      );
      setStatus(`Archived session ${record.id} opened.`);
    } catch (error) {
      setStatus(`Archived session not opened: ${error.message}`);
    }
  }

  // --- wiring ------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    setText("mode", mode);
    $("get-token").addEventListener("click", getToken);
    $("connect").addEventListener("click", connect);
    $("disconnect").addEventListener("click", disconnect);
    $("say-form").addEventListener("submit", say);
    $("var-form").addEventListener("submit", setVariable);
    $("end-session").addEventListener("click", endSession);
    $("archive-form").addEventListener("submit", listArchive);
    $("archive-mine").addEventListener("click", () => openArchived(state.sessionId, archiveKey() || state.jwt));
  });
})();
