/* A list of columns to tick and put in order: the report page's forms and the admin's export page.
 * Markup: <ol data-columns data-storage-key="…"> of <li data-column="name"> each holding a checkbox
 * and two buttons [data-move="-1"] / [data-move="1"]. Keyboard: the buttons, or Alt+↑/↓ on a column's
 * checkbox. The order and the ticks are remembered in this browser under the list's storage key
 * (columns no longer offered are forgotten, new ones come last, ticked). No build step, no CDN. */
(function () {
  "use strict";

  function items(list) { return [...list.querySelectorAll(":scope > li[data-column]")]; }

  function announce(list, text) {
    let live = list.parentNode.querySelector("[data-columns-live]");
    if (!live) {
      live = document.createElement("span");
      live.className = "visually-hidden";
      live.setAttribute("aria-live", "polite");
      live.dataset.columnsLive = "";
      list.after(live);
    }
    live.textContent = text;
  }

  function save(list) {
    const key = list.dataset.storageKey;
    if (!key) return;
    const state = items(list).map((li) => [li.dataset.column, li.querySelector("input[type=checkbox]").checked]);
    try { localStorage.setItem(key, JSON.stringify(state)); } catch (err) { /* private mode: not remembered */ }
    list.dispatchEvent(new CustomEvent("columns:change", { bubbles: true }));
  }

  function restore(list) {
    let state = null;
    try { state = JSON.parse(localStorage.getItem(list.dataset.storageKey) || "null"); } catch (err) { state = null; }
    if (!Array.isArray(state)) return;
    const byName = new Map(items(list).map((li) => [li.dataset.column, li]));
    const placed = [];
    state.forEach((entry) => {
      if (!Array.isArray(entry) || !byName.has(entry[0])) return;
      const li = byName.get(entry[0]);
      li.querySelector("input[type=checkbox]").checked = entry[1] !== false;
      placed.push(li);
      byName.delete(entry[0]);
    });
    [...placed, ...byName.values()].forEach((li) => list.appendChild(li));
  }

  function move(list, li, step) {
    const all = items(list);
    const at = all.indexOf(li);
    const to = at + step;
    if (to < 0 || to >= all.length) return false;
    if (step < 0) list.insertBefore(li, all[to]); else all[to].after(li);
    const label = li.querySelector("label").textContent.trim();
    announce(list, label + " moved to position " + (to + 1) + " of " + all.length + ".");
    save(list);
    return true;
  }

  function enhance(list) {
    if (list.dataset.enhanced) return;
    list.dataset.enhanced = "true";
    restore(list);
    list.addEventListener("click", (e) => {
      const button = e.target.closest("button[data-move]");
      if (!button) return;
      move(list, button.closest("li"), Number(button.dataset.move));
      button.focus();  // the same button, on the column it moved: press again to move it further
    });
    list.addEventListener("keydown", (e) => {
      if (!e.altKey || (e.key !== "ArrowUp" && e.key !== "ArrowDown") || e.target.type !== "checkbox") return;
      e.preventDefault();
      move(list, e.target.closest("li"), e.key === "ArrowUp" ? -1 : 1);
      e.target.focus();
    });
    list.addEventListener("change", () => save(list));
  }

  /* The ticked columns, in their order. */
  function chosen(list) {
    return items(list).filter((li) => li.querySelector("input[type=checkbox]").checked).map((li) => li.dataset.column);
  }

  window.ColumnPicker = { enhance, chosen };
  document.querySelectorAll("ol[data-columns]").forEach(enhance);
})();
