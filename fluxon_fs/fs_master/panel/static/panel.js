// Fluxon FS panel: CSRF-aware fetch, confirmations, and auto-refresh of [data-autorefresh] regions.
(function () {
  "use strict";

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  // JSON API helper: state-changing calls carry the session's CSRF token in X-CSRF-Token.
  async function fetchJson(url, options) {
    const opts = Object.assign({ credentials: "same-origin" }, options || {});
    opts.headers = Object.assign({ Accept: "application/json" }, opts.headers || {});
    if (opts.method && opts.method.toUpperCase() !== "GET") {
      opts.headers["X-CSRF-Token"] = csrfToken();
      if (opts.body && typeof opts.body !== "string") {
        opts.body = JSON.stringify(opts.body);
        opts.headers["Content-Type"] = "application/json";
      }
    }
    const response = await fetch(url, opts);
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    return { ok: response.ok, status: response.status, body: body };
  }

  window.fluxonPanel = { csrfToken: csrfToken, fetchJson: fetchJson };

  document.addEventListener("submit", function (event) {
    const message = event.target.dataset ? event.target.dataset.confirm : null;
    if (message && !window.confirm(message)) {
      event.preventDefault();
    }
  });

  // Re-fetch this page and swap in the fresh content of each [data-autorefresh] region (by id).
  // A region the user is typing in is left alone this round.
  async function refresh() {
    const regions = Array.from(document.querySelectorAll("[data-autorefresh][id]"));
    if (!regions.length) {
      return;
    }
    let response;
    try {
      response = await fetch(window.location.href, {
        credentials: "same-origin",
        headers: { "X-Requested-With": "fluxon-refresh" },
      });
    } catch (_) {
      return;
    }
    if (response.redirected && new URL(response.url).pathname === "/login") {
      window.location.assign(response.url);
      return;
    }
    if (!response.ok) {
      return;
    }
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const region of regions) {
      const replacement = fresh.getElementById(region.id);
      if (replacement && !region.contains(document.activeElement)) {
        region.replaceChildren(...Array.from(replacement.childNodes));
      }
    }
    document.dispatchEvent(new CustomEvent("fluxon:refreshed"));
  }

  document.addEventListener("DOMContentLoaded", function () {
    const seconds = Number(document.body.dataset.refreshSecs || 0);
    if (seconds > 0 && document.querySelector("[data-autorefresh]")) {
      window.setInterval(refresh, seconds * 1000);
    }
  });
})();
