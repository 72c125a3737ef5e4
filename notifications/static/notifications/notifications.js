/* Live notifications: one websocket per page, toasts, a header list of the recent ones.
 *
 * Every message the server pushes is dispatched as a "notifications:message" event (e.detail is the
 * message, whose `type` is "<app>.<kind>", e.g. "report.ready"); the socket's state as a
 * "notifications:connection" event. Notifications.connected says whether the socket is up (pages
 * poll when it is not). The URLs come from the server, on the #notifications element.
 *
 * Before a toast is shown, a cancelable "notifications:toast" event asks the page: a page that already
 * shows what the notification says (the report page, its job's row in view) cancels it. One toast at
 * a time (a newer one takes its place; the bell keeps them all); a notification shown, as a toast or
 * by the page, counts as seen once it has been in view for SEEN_AFTER ms in a visible tab, so it
 * does not follow the user to the next page. A page being left (a form just submitted) may still
 * receive one: it does not count there, and the next page replays it. The page keeps room below its
 * content for the toast, so that nothing of it stays hidden underneath.
 */
(function () {
  "use strict";
  const root = document.getElementById("notifications");
  if (!root) return;
  const toasts = document.getElementById("toasts");
  const badge = root.querySelector("[data-badge]");
  const list = root.querySelector("[data-list]");
  const toggle = root.querySelector("[data-toggle]");
  const shown = new Set();   // notification ids with a toast on this page
  let socket = null;
  let retry = 0;

  const csrf = () => (document.cookie.match(/(?:^|; )csrftoken=([^;]+)/) || [])[1] || "";
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }
  const kindOf = (type) => String(type).split(".").pop();

  const Notifications = {
    connected: false,
    csrf, el,  // small helpers the pages share
    markSeen(ids) {
      if (socket && socket.readyState === WebSocket.OPEN) {
        socket.send(JSON.stringify({ action: "seen", ids }));
      } else {
        fetch(root.dataset.seenUrl, {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() },
          body: JSON.stringify({ ids }),
        }).then(refreshList);
      }
    },
  };
  window.Notifications = Notifications;

  function announce(name, detail) {
    window.dispatchEvent(new CustomEvent("notifications:" + name, { detail }));
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + root.dataset.socketPath);
    socket.addEventListener("open", () => {
      retry = 0;
      Notifications.connected = true;
      root.dataset.connected = "true";
      announce("connection", { connected: true });
    });
    socket.addEventListener("message", (e) => {
      let message;
      try { message = JSON.parse(e.data); } catch (err) { return; }
      announce("message", message);
      if (message.notification && !message.notification.seen) showToast(message);
      if (message.notification || message.type === "seen") refreshList();
    });
    socket.addEventListener("close", (e) => {
      Notifications.connected = false;
      root.dataset.connected = "false";
      announce("connection", { connected: false });
      if (e.code === 4401) return;  // not logged in (any more): nothing to retry
      // Exponential backoff with jitter, at most 30 s; the replay on reconnect brings what was missed.
      const delay = Math.min(30000, 1000 * 2 ** retry) * (0.5 + Math.random() / 2);
      retry += 1;
      setTimeout(connect, delay);
    });
  }

  function showToast(message) {
    const n = message.notification;
    if (shown.has(n.id)) return;
    shown.add(n.id);
    const wanted = window.dispatchEvent(new CustomEvent("notifications:toast", { detail: message, cancelable: true }));
    seenOnceInView(n.id);
    if (!wanted) return;
    const kind = kindOf(message.type);
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
    toasts.replaceChildren(toast);
  }

  // (See the top.) A page counts as being left from its beforeunload for LEAVING ms: a navigation
  // may turn out to be a download, and the page stays. A dismissed toast was marked seen then.
  const SEEN_AFTER = 1500, LEAVING = 10000;
  let leftAt = -Infinity;
  window.addEventListener("beforeunload", () => { leftAt = performance.now(); });
  function seenOnceInView(id) {
    setTimeout(() => {
      if (!shown.has(id)) return;
      const leaving = performance.now() - leftAt < LEAVING;
      if (leaving || document.visibilityState !== "visible") seenOnceInView(id);
      else Notifications.markSeen([id]);
    }, SEEN_AFTER);
  }

  // Room below the page's content as tall as the toast: whatever it covers can be scrolled above it.
  new ResizeObserver(() => {
    document.body.style.paddingBottom = toasts.offsetHeight ? toasts.offsetHeight + 24 + "px" : "";
  }).observe(toasts);

  function refreshList() {
    fetch(root.dataset.recentUrl, { credentials: "same-origin" })
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
