/* Live notifications: one websocket per page, toasts, a header list, and an event API for pages.
 *
 * Pages listen with:  window.addEventListener("reports:event", e => e.detail)  // every message
 * or:                 Notifications.on("report.progress", msg => ...)
 * Notifications.connected tells whether the socket is up (pages poll the API when it is not).
 */
(function () {
  "use strict";
  const root = document.getElementById("notifications");
  if (!root) return;
  const toasts = document.getElementById("toasts");
  const badge = root.querySelector("[data-badge]");
  const list = root.querySelector("[data-list]");
  const toggle = root.querySelector("[data-toggle]");
  const csrf = () => (document.cookie.match(/(?:^|; )csrftoken=([^;]+)/) || [])[1] || "";
  const shown = new Set();   // notification ids with a toast on this page
  let socket = null;
  let retry = 0;

  const Notifications = {
    connected: false,
    on(type, handler) {
      window.addEventListener("reports:event", (e) => { if (e.detail.type === type) handler(e.detail); });
    },
    markSeen(ids) {
      if (socket && socket.readyState === WebSocket.OPEN) {
        socket.send(JSON.stringify({ action: "seen", ids }));
      } else {
        fetch("/api/notifications/seen/", {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() },
          body: JSON.stringify({ ids }),
        }).then(refreshList);
      }
    },
  };
  window.Notifications = Notifications;

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws/notifications/");
    socket.addEventListener("open", () => {
      retry = 0;
      Notifications.connected = true;
      root.dataset.connected = "true";
      window.dispatchEvent(new CustomEvent("reports:connection", { detail: { connected: true } }));
    });
    socket.addEventListener("message", (e) => {
      let message;
      try { message = JSON.parse(e.data); } catch (err) { return; }
      window.dispatchEvent(new CustomEvent("reports:event", { detail: message }));
      if (message.notification && !message.notification.seen) showToast(message);
      if (message.notification || message.type === "seen") refreshList();
    });
    socket.addEventListener("close", (e) => {
      Notifications.connected = false;
      root.dataset.connected = "false";
      window.dispatchEvent(new CustomEvent("reports:connection", { detail: { connected: false } }));
      if (e.code === 4401 || e.code === 4403) return;  // not logged in: nothing to retry
      // Exponential backoff with jitter, at most 30 s; the replay on reconnect brings what was missed.
      const delay = Math.min(30000, 1000 * 2 ** retry) * (0.5 + Math.random() / 2);
      retry += 1;
      setTimeout(connect, delay);
    });
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text) node.textContent = text;
    return node;
  }

  function showToast(message) {
    const n = message.notification;
    if (shown.has(n.id)) return;
    shown.add(n.id);
    const kind = message.type.replace("report.", "");
    const toast = el("div", { class: "toast toast-" + kind, role: kind === "failed" ? "alert" : "status",
                              "data-type": message.type, "data-notification": n.id });
    toast.appendChild(el("strong", {}, n.title));
    toast.appendChild(el("p", {}, n.body));
    const actions = el("div", { class: "toast-actions" });
    const dismiss = () => { toast.remove(); shown.delete(n.id); Notifications.markSeen([n.id]); };
    if (n.link) {
      const download = el("a", { class: "button", href: n.link, "data-download": "" }, "Download");
      download.addEventListener("click", () => setTimeout(dismiss, 0));
      actions.appendChild(download);
    }
    const close = el("button", { type: "button", class: "link", "aria-label": "Dismiss" }, "Dismiss");
    close.addEventListener("click", dismiss);
    actions.appendChild(close);
    toast.appendChild(actions);
    toasts.appendChild(toast);
    // A cancellation only confirms what the user just did: it fades. Ready and failed stay until dismissed.
    if (kind === "cancelled") setTimeout(dismiss, 6000);
    // Never more than three at once: the oldest make room (they stay in the list under the bell).
    while (toasts.children.length > 3) toasts.firstElementChild.remove();
  }

  function refreshList() {
    fetch("/api/notifications/", { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : null))
      .then((data) => {
        if (!data) return;
        badge.textContent = data.unseen ? String(data.unseen) : "";
        badge.hidden = !data.unseen;
        list.replaceChildren(...data.notifications.map((m) => {
          const item = el("li", { class: m.notification.seen ? "seen" : "unseen" });
          item.appendChild(m.notification.link ? el("a", { href: m.notification.link }, m.notification.title)
                                               : el("span", {}, m.notification.title));
          item.appendChild(el("small", {}, m.notification.body));
          return item;
        }));
        if (!data.notifications.length) list.appendChild(el("li", {}, "Nothing yet."));
      });
  }

  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    list.hidden = !open;
  });

  refreshList();
  connect();
})();
