// Anchor live updates: one websocket per page; when it says something changed, re-fetch the
// server-rendered fragment of each affected part and swap it in. The server stays the only renderer.
//
// Markup contract (no inline script: the CSP allows only files from /static/):
//   <body data-live-socket="/ws/live/?task=..&obj=..">
//   <div id="x" data-live-src="/fragment/url" data-live-on="healing. run."   kind prefixes to react to
//        data-live-except="run.step"   kinds to ignore
//        data-live-task="task_…"       only messages of this task
//        data-live-event="heal_…"      only messages whose data.event is this id, or that name no event
//                                      (the task's new version: whether the heal can be approved)
//        data-live-mark-new="tr[data-id]"   highlight children that were not there before
//        data-live-rows="50">          a live table of events (the queue): one changed event fetches
//                                      only its row (?only=) or the rows above the top (?newer=)
//   <ol data-live-steps="run_…">       run.step messages append their server-rendered html here
//   <form data-confirm="question">      asks before submitting
// The fragment response contains elements with the same ids; their children replace ours, so our
// data-live-* attributes survive the swap.
(function () {
  "use strict";

  var body = document.body;
  var socketPath = body && body.getAttribute("data-live-socket");
  if (!socketPath) return;

  var statusEl = document.getElementById("live-status");
  var announcer = document.getElementById("live-announcer");
  var pending = new Map(); // element -> timer: coalesce bursts (a heal sends several messages at once)
  var inflight = new Map(); // element -> true while a fetch runs; a message during it re-fetches after
  var stepBuffer = new Map(); // run id -> [[index, html]]: steps that arrived before their run was on the page
  var MAX_STEPS_KEPT = 200; // per run
  var MAX_RUNS_KEPT = 20; // a page left open for days must not keep every run's steps
  var retryDelay = 500;
  var socket = null;

  function setStatus(state, text) {
    if (!statusEl) return;
    statusEl.setAttribute("data-state", state);
    statusEl.textContent = text;
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + socketPath);
    socket.addEventListener("open", function () {
      var wasRetry = retryDelay > 500;
      retryDelay = 500;
      setStatus("on", "Live");
      body.setAttribute("data-live-ready", "1");
      // Messages sent while we were away are lost; re-fetch everything once to catch up. So are the steps a
      // running run took between this page's rendering and now.
      if (wasRetry || document.querySelector("[data-live-steps][data-running]")) refreshAll();
    });
    socket.addEventListener("message", function (e) {
      var message;
      try { message = JSON.parse(e.data); } catch (err) { return; }
      handle(message);
    });
    socket.addEventListener("close", function () {
      body.removeAttribute("data-live-ready");
      setStatus("off", "Reconnecting…");
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 15000);
    });
  }

  function handle(message) {
    var kind = message.kind || "";
    var data = message.data || {};
    if (kind === "run.step" && data.run && message.html) {
      appendStep(data.run, data.step && data.step.index, message.html);
      return;
    }
    var parts = document.querySelectorAll("[data-live-src]");
    for (var i = 0; i < parts.length; i++) {
      if (matches(parts[i], kind, message.task_id, data)) schedule(parts[i], data.event);
    }
  }

  function matches(el, kind, taskId, data) {
    var on = (el.getAttribute("data-live-on") || "").split(/\s+/).filter(Boolean);
    var except = (el.getAttribute("data-live-except") || "").split(/\s+/).filter(Boolean);
    if (except.indexOf(kind) !== -1) return false;
    if (!on.some(function (prefix) { return kind.indexOf(prefix) === 0; })) return false;
    var task = el.getAttribute("data-live-task");
    if (task && task !== taskId) return false;
    var event = el.getAttribute("data-live-event");
    if (event && data.event && event !== data.event) return false;
    return true;
  }

  var changed = new Map(); // element -> Set of event ids (null: refresh the whole part)

  function schedule(el, eventId) {
    var ids = changed.get(el) || new Set();
    ids.add(eventId && el.hasAttribute("data-live-rows") ? eventId : null);
    changed.set(el, ids);
    if (inflight.get(el) || pending.has(el)) return;
    pending.set(el, setTimeout(function () { pending.delete(el); flush(el); }, 15));
  }

  function refreshAll() {
    document.querySelectorAll("[data-live-src]").forEach(function (el) { schedule(el, null); });
  }

  function flush(el) {
    var ids = changed.get(el) || new Set([null]);
    changed.delete(el);
    inflight.set(el, true);
    // One changed event in a live table: fetch just its row, or the rows above the top. Anything
    // else (several at once, no event id, an empty table) re-fetches the whole part.
    var only = ids.size === 1 && !ids.has(null) ? ids.values().next().value : null;
    var work = only ? refreshRow(el, only) : fetchHtml(el.getAttribute("data-live-src")).then(swap);
    work.catch(function () { /* a failed fetch is retried by the next message or the reconnect */ })
      .then(function () {
        inflight.delete(el);
        if (changed.has(el)) flush(el);
      });
  }

  function fetchHtml(url) {
    return fetch(url, { credentials: "same-origin", headers: { "X-Live-Fragment": "1" } }).then(function (response) {
      if (response.redirected && response.url.indexOf("/accounts/login/") !== -1) {
        location.reload(); // the session ended: show the login page instead of swapping it in
        return "";
      }
      return response.ok ? response.text() : "";
    });
  }

  function refreshRow(el, eventId) {
    var src = el.getAttribute("data-live-src");
    var sep = src.indexOf("?") === -1 ? "?" : "&";
    var existing = el.querySelector('tr[data-id="' + cssEscape(eventId) + '"]');
    var top = el.querySelector("tr[data-cursor]");
    if (!existing && !top) return fetchHtml(src).then(swap);
    var url = src + sep + (existing ? "only=" + encodeURIComponent(eventId) : "newer=" + encodeURIComponent(top.getAttribute("data-cursor")));
    return fetchHtml(url).then(function (html) {
      var template = document.createElement("template");
      template.innerHTML = html;
      var part = template.content.getElementById("queue-rows-changed");
      if (!part || part.getAttribute("data-more") === "1") return fetchHtml(src).then(swap);
      swap(html); // the counts beside the table
      var rows = Array.prototype.slice.call(part.querySelectorAll("tr[data-id]"));
      if (existing) {
        var refocus = keepFocus(el);
        if (rows.length) existing.replaceWith(rows[0]);
        else existing.remove(); // it no longer matches the filters
        refocus();
        // The last row gone: the whole part brings the "no events" line (or the next page's rows).
        if (!el.querySelector("tr[data-id]")) return fetchHtml(src).then(swap);
        return;
      }
      // Not newer than the top row: an older event that now matches the filters (it became pending) has its
      // place somewhere below, so the whole part is fetched.
      if (!rows.length) return fetchHtml(src).then(swap);
      var before = idsOf(el, "tr[data-id]");
      el.querySelectorAll("tr:not([data-id])").forEach(function (tr) { tr.remove(); }); // "no events" placeholder
      for (var i = rows.length - 1; i >= 0; i--) el.insertBefore(rows[i], el.firstChild);
      var size = parseInt(el.getAttribute("data-live-rows"), 10) || 50;
      var all = el.querySelectorAll("tr[data-id]");
      for (var j = size; j < all.length; j++) all[j].remove();
      markNew(el, "tr[data-id]", before);
    });
  }

  function swap(html) {
    var template = document.createElement("template");
    template.innerHTML = html;
    var incoming = template.content.querySelectorAll("[id]");
    for (var i = 0; i < incoming.length; i++) {
      var fresh = incoming[i];
      if (fresh.parentElement && fresh.parentElement.closest && fresh.parentElement.closest("[id]")) continue; // nested: swapped with its parent
      var target = document.getElementById(fresh.id);
      if (!target) continue;
      var oldVersion = target.querySelector("[data-live-version]");
      var newVersion = fresh.querySelector("[data-live-version]");
      if (oldVersion && newVersion && oldVersion.getAttribute("data-live-version") === newVersion.getAttribute("data-live-version")) continue;
      var markSelector = target.getAttribute("data-live-mark-new");
      var before = markSelector ? idsOf(target, markSelector) : null;
      var refocus = keepFocus(target);
      keepSteps(target);
      target.replaceChildren.apply(target, Array.prototype.slice.call(fresh.childNodes));
      refocus();
      if (before) markNew(target, markSelector, before);
      applyDiffMode();
      replaySteps();
    }
  }

  // Swapping a part must not drop a keyboard user's focus to <body>: what had it gets it back after the swap, by
  // its id, or as the same control of the same row (tr[data-id]) when it has none; a row that left the table
  // hands it to the row that took its place.
  var FOCUSABLE = "a[href], button, input, select, textarea, [tabindex]";

  function keepFocus(root) {
    var focused = document.activeElement;
    if (!focused || focused === root || !root.contains(focused)) return function () {};
    var row = focused.closest("tr[data-id]");
    var position = row ? Array.prototype.indexOf.call(row.querySelectorAll(FOCUSABLE), focused) : -1;
    var rowId = row && row.getAttribute("data-id");
    var rowIndex = row ? Array.prototype.indexOf.call(root.querySelectorAll("tr[data-id]"), row) : -1;
    return function () {
      if (document.activeElement && document.activeElement !== body) return; // the swap left it where it was
      var again = focused.id && document.getElementById(focused.id);
      if (!again && row) {
        var rows = root.querySelectorAll("tr[data-id]");
        var sameRow = root.querySelector('tr[data-id="' + cssEscape(rowId) + '"]') || rows[Math.min(rowIndex, rows.length - 1)];
        again = sameRow && sameRow.querySelectorAll(FOCUSABLE)[Math.max(position, 0)];
      }
      if (again) again.focus();
    };
  }

  function idsOf(root, selector) {
    var ids = new Set();
    root.querySelectorAll(selector).forEach(function (el) { ids.add(el.getAttribute("data-id")); });
    return ids;
  }

  function markNew(root, selector, before) {
    var added = 0;
    root.querySelectorAll(selector).forEach(function (el) {
      if (!before.has(el.getAttribute("data-id"))) {
        el.classList.add("row-new");
        added++;
      }
    });
    if (added && announcer) announcer.textContent = added === 1 ? "1 new healing event" : added + " new healing events";
  }

  // A re-fetched card has the running run's steps the database holds (its first fifty, and only until the
  // moment it was rendered): the ones the page got live are put aside before the swap and put back by
  // replaySteps (which skips steps already there).
  function keepSteps(root) {
    root.querySelectorAll("[data-live-steps]").forEach(function (list) {
      var steps = Array.prototype.map.call(list.children, function (item) {
        return [item.getAttribute("data-index"), item.outerHTML];
      });
      if (steps.length) bufferSteps(list.getAttribute("data-live-steps"), steps);
    });
  }

  function bufferSteps(runId, steps) {
    stepBuffer.delete(runId); // re-inserted last: the map's order is oldest run first
    stepBuffer.set(runId, steps.slice(-MAX_STEPS_KEPT));
    if (stepBuffer.size > MAX_RUNS_KEPT) stepBuffer.delete(stepBuffer.keys().next().value);
  }

  function appendStep(runId, index, html) {
    var list = document.querySelector('[data-live-steps="' + cssEscape(runId) + '"]');
    if (!list) {
      bufferSteps(runId, (stepBuffer.get(runId) || []).concat([[index, html]]));
      return;
    }
    if (index !== undefined && index !== null && list.querySelector('[data-index="' + index + '"]')) return;
    list.insertAdjacentHTML("beforeend", html);
    var count = document.querySelector('[data-step-count="' + cssEscape(runId) + '"]');
    if (count) count.textContent = String(list.children.length);
  }

  function replaySteps() {
    stepBuffer.forEach(function (steps, runId) {
      if (!document.querySelector('[data-live-steps="' + cssEscape(runId) + '"]')) return;
      stepBuffer.delete(runId);
      steps.forEach(function (s) { appendStep(runId, s[0], s[1]); });
    });
  }

  function cssEscape(value) {
    return window.CSS && CSS.escape ? CSS.escape(value) : String(value).replace(/[^\w-]/g, "");
  }

  // Diff layout toggle: the choice lives on <body>, so swapped-in diffs keep it.
  function applyDiffMode() {
    var mode = body.getAttribute("data-diff-mode") || "side";
    document.querySelectorAll("button[data-diff-mode]").forEach(function (b) {
      b.setAttribute("aria-pressed", b.getAttribute("data-diff-mode") === mode ? "true" : "false");
    });
  }

  // <form data-confirm="question">: a change that is one click to make but matters (deploying a version)
  // asks first. Delegated, so forms swapped in by live updates are covered too.
  document.addEventListener("submit", function (e) {
    var question = e.target.getAttribute && e.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) e.preventDefault();
  });

  document.addEventListener("click", function (e) {
    var button = e.target.closest && e.target.closest("button[data-diff-mode]");
    if (!button) return;
    body.setAttribute("data-diff-mode", button.getAttribute("data-diff-mode"));
    try { localStorage.setItem("anchor-diff-mode", button.getAttribute("data-diff-mode")); } catch (err) { /* private mode */ }
    applyDiffMode();
  });

  try {
    var saved = localStorage.getItem("anchor-diff-mode");
    if (saved === "inline" || saved === "side") body.setAttribute("data-diff-mode", saved);
  } catch (err) { /* private mode */ }
  applyDiffMode();
  setStatus("off", "Connecting…");
  connect();
})();
