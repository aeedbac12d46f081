// Live captions for /r/<room>/captions: EventSource, pause without losing lines.
"use strict";
(function () {
  var list = document.getElementById("lines");
  if (!list || !window.EventSource) return;
  var last = list.getAttribute("data-after") || "0";
  var url = list.getAttribute("data-stream");
  var status = document.getElementById("status");
  var fixes = document.getElementById("fixes");
  var pause = document.getElementById("pause");
  var page = document.documentElement.lang;
  var lang = /^[a-z]{2,3}(-[A-Za-z0-9]{1,8})*$/;
  // Times in the room's zone (named in the header), as the server writes them.
  var clock = new Intl.DateTimeFormat("en-GB", {timeZone: list.getAttribute("data-zone") || "UTC",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23"});
  var held = [];
  var paused = false;
  var source = null;

  function line(c) {
    var li = document.createElement("li");
    li.id = "c" + Number(c.seq);
    var time = document.createElement("time");
    var who = document.createElement("b");
    if (c.language !== page && lang.test(c.language)) li.lang = c.language;
    time.textContent = clock.format(new Date(c.at));
    who.textContent = c.speaker;
    li.appendChild(time);
    li.appendChild(document.createTextNode(" "));
    li.appendChild(who);
    li.appendChild(document.createTextNode(": " + c.text + (c.revision ? " (corrected)" : "")));
    return li;
  }
  // A correction changes the line's text in place (text node data, not new nodes: the
  // list announces additions only) and is said once in the polite #fixes region.
  function fix(f) {
    var li = document.getElementById("c" + Number(f.seq));
    var said = f.speaker + ": " + f.text;
    if (li) {
      var who = li.querySelector("b");
      if (who && who.firstChild) who.firstChild.data = f.speaker;
      var rest = who && who.nextSibling;
      var marked = li.querySelector(".rev");  // a line served corrected has the marker
      if (rest && rest.nodeType === 3) rest.data = ": " + f.text + (marked ? "" : " (corrected)");
      li.setAttribute("data-revision", String(f.revision));
      list.setAttribute("data-fixed", String(Number(list.getAttribute("data-fixed") || 0) + 1));
    } else {
      held.forEach(function (c) {
        if (c.seq === f.seq) { c.text = f.text; c.speaker = f.speaker; c.revision = f.revision; }
      });
    }
    if (fixes) fixes.textContent = "Corrected: " + said;
  }
  function show(c) {
    var follow = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
    list.appendChild(line(c));
    if (follow) window.scrollTo(0, document.body.scrollHeight);
  }
  function connect() {
    source = new EventSource(url + (url.indexOf("?") < 0 ? "?" : "&") + "after=" + encodeURIComponent(last));
    source.addEventListener("caption", function (e) {
      var c = JSON.parse(e.data);
      if (Number(c.seq) <= Number(last)) return;
      last = String(c.seq);
      if (paused) { held.push(c); pause.textContent = "Resume (" + held.length + " new)"; }
      else show(c);
    });
    source.addEventListener("correction", function (e) {
      var f = JSON.parse(e.data);
      if (Number(f.pos) <= Number(last)) return;
      last = String(f.pos);
      fix(f);
    });
    source.addEventListener("end", function () {
      // Dropped (too slow) or the server restarts: resume from the last line.
      source.close();
      setTimeout(connect, 2000);
    });
    source.onopen = function () { status.textContent = "Live."; };
    source.onerror = function () {
      status.textContent = "Reconnecting…";
      // The browser gave up (a busy node's 503, or a refusal): ask why, from the headers
      // only. Refused (no longer allowed, gone): stop and say so; else go on later.
      if (source.readyState !== EventSource.CLOSED) return;
      var stop = new AbortController();
      fetch(url, { signal: stop.signal, credentials: "same-origin" }).then(function (r) {
        stop.abort();
        if ([401, 403, 404, 410].indexOf(r.status) >= 0) {
          status.textContent = "Stopped: these captions are not available to you now. Reload the page to log in again.";
        } else setTimeout(connect, 2000 + Math.random() * 3000);
      }, function () { setTimeout(connect, 2000 + Math.random() * 3000); });
    };
  }
  pause.hidden = false;
  pause.addEventListener("click", function () {
    paused = !paused;
    if (!paused) { held.forEach(show); held = []; }
    pause.textContent = paused ? "Resume" : "Pause";
    pause.setAttribute("aria-pressed", String(paused));
  });
  pause.setAttribute("aria-pressed", "false");
  connect();
})();
