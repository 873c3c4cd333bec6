// The demo chat page. Every piece of user data goes into the page with textContent, never parsed as markup.
//
// Connecting: mint a one-time ticket with a same-origin POST (the CSRF token and the session
// cookie prove it is this page asking), then open the socket presenting the ticket in
// Sec-WebSocket-Protocol. A page on another origin cannot read that POST's answer, so it has no
// ticket to present. After a drop the page reconnects with a fresh ticket and exponential back-off.
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("chat-config").textContent);
  const stateEl = document.getElementById("state");
  const messagesEl = document.getElementById("messages");
  const onlineEl = document.getElementById("online");
  const form = document.getElementById("send");
  const input = document.getElementById("text");
  const counter = document.getElementById("counter");

  const PROTOCOL = "wsguard";
  const TICKET_PROTOCOL_PREFIX = "wsguard.ticket.";
  const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000, 30000];
  // Close codes after which reconnecting cannot help: the server withdrew its trust.
  const FINAL_CLOSES = {
    4401: "signed out, or your credentials were revoked",
    4403: "this page's origin is no longer trusted by the server",
    4404: "no such room",
  };
  const CLOSE_REASONS = {
    1000: "closed normally",
    1001: "the server is going away",
    1006: "connection lost",
    1009: "message too big",
    1011: "server error",
    4429: "too many messages or connections; slowing down",
  };

  let socket = null;
  let attempt = 0;
  let retryTimer = null;
  let stopped = false;
  let me = null;
  // Messages typed but not yet acknowledged (stored) by the server, by nonce, in send order.
  const pending = new Map();
  const shown = new Set();

  // For people poking at the demo in the console, and for the browser tests.
  const debug = { pending, shown, closedAt: null, closeCode: null };
  window.wsguardChat = debug;

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function nonce() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function setState(state, detail, code) {
    stateEl.dataset.state = state;
    stateEl.dataset.code = code === undefined ? "" : String(code);
    stateEl.textContent = detail ? `${state}: ${detail}` : state;
    input.disabled = false;
    document.getElementById("send-button").disabled = state !== "connected";
  }

  function socketUrl() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    return `${scheme}://${location.host}${config.socketPath}`;
  }

  async function mintTicket() {
    const response = await fetch(config.ticketUrl, {
      method: "POST",
      credentials: "same-origin",
      redirect: "manual",
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
    });
    if (response.type === "opaqueredirect" || response.status === 401 || response.status === 403) {
      return { signedOut: true };
    }
    if (!response.ok) {
      throw new Error(`ticket endpoint answered ${response.status}`);
    }
    const body = await response.json();
    return { ticket: body.ticket };
  }

  async function connect() {
    clearTimeout(retryTimer);
    if (stopped) return;
    setState("connecting", attempt ? `attempt ${attempt + 1}` : "");
    let protocols = [PROTOCOL];
    try {
      const minted = await mintTicket();
      if (minted.signedOut) {
        finish("signed out; sign in again to chat", 4401);
        return;
      }
      protocols = [PROTOCOL, TICKET_PROTOCOL_PREFIX + minted.ticket];
    } catch (error) {
      scheduleReconnect("could not get a ticket", undefined);
      return;
    }
    const ws = new WebSocket(socketUrl(), protocols);
    socket = ws;
    ws.addEventListener("open", () => {
      attempt = 0;
      setState("connected");
      // Anything typed while disconnected goes out again with the same nonce: the server stores
      // a nonce once, so a message that was stored but not acknowledged is not duplicated.
      for (const [key, item] of pending) sendRaw(ws, key, item.text);
    });
    ws.addEventListener("message", (event) => handle(event.data));
    ws.addEventListener("close", (event) => {
      if (socket !== ws) return;
      socket = null;
      debug.closedAt = Date.now();
      debug.closeCode = event.code;
      if (event.code in FINAL_CLOSES) {
        finish(FINAL_CLOSES[event.code], event.code);
      } else {
        scheduleReconnect(CLOSE_REASONS[event.code] || "closed", event.code);
      }
    });
  }

  function finish(detail, code) {
    stopped = true;
    setState("closed", `${detail} (${code})`, code);
    renderOnline([]);
  }

  function scheduleReconnect(detail, code) {
    const base = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    attempt += 1;
    const suffix = code === undefined ? "" : ` (${code})`;
    setState("closed", `${detail}${suffix}; reconnecting in ${Math.ceil(delay / 1000)} s`, code);
    retryTimer = setTimeout(connect, delay);
  }

  function handle(data) {
    let event;
    try {
      event = JSON.parse(data);
    } catch (error) {
      return;
    }
    switch (event.type) {
      case "history":
        me = event.you;
        for (const message of event.messages) renderMessage(message);
        break;
      case "message":
        renderMessage(event.message);
        break;
      case "ack":
        acknowledge(event.nonce, event.message);
        break;
      case "presence":
        renderOnline(event.users);
        break;
      case "error":
        showError(event);
        break;
    }
  }

  function messageElement(author, text, when) {
    const item = document.createElement("li");
    item.className = "message";
    const who = document.createElement("span");
    who.className = "author";
    who.textContent = author;
    const time = document.createElement("time");
    time.className = "at";
    if (when) {
      time.dateTime = when;
      time.textContent = new Date(when).toLocaleTimeString();
    }
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    item.append(who, time, body);
    return item;
  }

  function renderMessage(message) {
    const key = String(message.id);
    if (shown.has(key)) return;
    shown.add(key);
    const item = messageElement(message.author, message.text, message.at);
    item.dataset.id = key;
    if (message.author === me) item.classList.add("mine");
    // Keep pending (unacknowledged) messages at the bottom.
    const firstPending = messagesEl.querySelector(".pending");
    messagesEl.insertBefore(item, firstPending);
    item.scrollIntoView({ block: "nearest" });
  }

  function acknowledge(key, message) {
    const item = pending.get(key);
    if (!item) return;
    pending.delete(key);
    const id = String(message.id);
    if (shown.has(id)) {
      item.element.remove();
      return;
    }
    shown.add(id);
    const stored = messageElement(message.author, message.text, message.at);
    stored.dataset.id = id;
    stored.classList.add("mine");
    item.element.replaceWith(stored);
  }

  function showError(event) {
    const item = event.nonce ? pending.get(event.nonce) : null;
    const note = document.createElement("span");
    note.className = "problem";
    note.textContent = ` not sent: ${event.detail || event.code}`;
    if (item && event.code !== "not-saved") {
      pending.delete(event.nonce);
      item.element.classList.remove("pending");
      item.element.classList.add("failed");
      item.element.append(note);
    } else if (!item) {
      const line = document.createElement("li");
      line.className = "message failed";
      line.append(note);
      messagesEl.append(line);
    }
  }

  function renderOnline(users) {
    onlineEl.replaceChildren(
      ...users.map((name) => {
        const item = document.createElement("li");
        item.textContent = name;
        return item;
      })
    );
  }

  function sendRaw(ws, key, text) {
    ws.send(JSON.stringify({ type: "message", text, nonce: key }));
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text || !socket || socket.readyState !== WebSocket.OPEN) return;
    if (text.length > config.maxChars) {
      counter.textContent = `at most ${config.maxChars} characters`;
      return;
    }
    const key = nonce();
    const element = messageElement(me || "you", text, null);
    element.classList.add("pending");
    messagesEl.append(element);
    pending.set(key, { text, element });
    sendRaw(socket, key, text);
    input.value = "";
    counter.textContent = "";
  });

  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  input.addEventListener("input", () => {
    const left = config.maxChars - input.value.length;
    counter.textContent = left < 200 ? `${left} left` : "";
  });

  window.addEventListener("online", () => {
    if (!socket && !stopped) {
      attempt = 0;
      connect();
    }
  });

  connect();
})();
