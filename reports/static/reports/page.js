/* The report page: ask for reports without reloading, follow them live, cancel, retry, download.
 * What it needs to know (URLs, status labels, which statuses are active or may be retried, the
 * reports' filters and formats) comes from the server in the "reports-page" JSON script. */
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("reports-page").textContent);
  const tbody = document.querySelector("#jobs tbody");
  const empty = document.querySelector("[data-empty]");
  const liveState = document.querySelector("[data-live-state]");
  const ACTIVE = new Set(config.active);
  const RETRYABLE = new Set(config.retryable);
  const jobs = new Map();
  const { csrf, el } = window.Notifications;
  const jobUrl = (name, id) => config.urls[name].replace(config.urls.placeholder, id);
  const scheduleBody = document.querySelector("#schedules tbody");
  const schedulesEmpty = document.querySelector("[data-schedules-empty]");
  const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const scheduleUrl = (name, id) => config.urls[name].replace(config.urls.schedule_placeholder, id);
  const fmtWhen = (iso) => iso ? new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }) : "—";

  function api(method, url, body) {
    return fetch(url, {
      method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() },
      body: body ? JSON.stringify(body) : undefined,
    }).then((r) => r.json().catch(() => ({})).then((data) => ({ status: r.status, data })));
  }

  const fmtNumber = (n) => (n === null || n === undefined ? "—" : n.toLocaleString());
  function fmtSize(bytes) {
    if (bytes === null || bytes === undefined) return "—";
    const units = ["B", "KB", "MB", "GB"];
    let i = 0;
    while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i += 1; }
    return (i ? bytes.toFixed(1) : bytes) + " " + units[i];
  }
  function fmtSeconds(s) {
    s = Math.max(0, Math.round(s));
    return s < 60 ? s + "s" : Math.floor(s / 60) + "m " + (s % 60) + "s";
  }
  function elapsed(job) {
    if (!job.started_at) return "";
    const end = job.finished_at ? Date.parse(job.finished_at) : Date.now();
    return fmtSeconds((end - Date.parse(job.started_at)) / 1000);
  }
  // The filters of a job in words, with the report's labels: "Status: Paid, Created from: 2025-06-01".
  const FILTERS = Object.fromEntries(config.reports.map((r) => [r.slug,
    Object.fromEntries(r.filters.map((f) => [f.name, f]))]));
  function describeParams(job) {
    const filters = FILTERS[job.report] || {};
    const entries = Object.entries(job.params || {});
    if (!entries.length) return "no filters";
    return entries.map(([name, value]) => {
      const filter = filters[name];
      if (!filter) return name + ": " + (Array.isArray(value) ? value.length + " selected" : value);
      const choice = (filter.choices || []).find(([v]) => v === String(value));
      const shown = choice ? choice[1] : value === true || value === "true" ? "Yes"
                  : value === false || value === "false" ? "No" : value;
      return filter.label + ": " + shown;
    }).join(", ");
  }

  function render(job) {
    const known = jobs.get(job.id);
    // Messages can arrive out of order (poll vs push): never go back from an ended state or in rows.
    if (known && !ACTIVE.has(known.status) && ACTIVE.has(job.status)) return;
    if (known && known.status === job.status && job.rows_done < known.rows_done) return;
    jobs.set(job.id, job);
    let row = tbody.querySelector('tr[data-job="' + job.id + '"]');
    if (!row) {
      row = el("tr", { "data-job": job.id });
      tbody.prepend(row);
    }
    row.dataset.status = job.status;
    row.replaceChildren();
    const title = el("td");
    title.appendChild(el("strong", {}, job.report_title || job.report));
    title.appendChild(el("small", { class: "muted" }, describeParams(job)));
    row.appendChild(title);
    row.appendChild(el("td", {}, config.formats[job.format] || job.format));
    const label = job.waiting_for_queue ? "Waiting for the queue" : config.statuses[job.status] || job.status;
    const status = el("span", { class: "status status-" + job.status }, label);
    if (job.waiting_for_queue) status.title = "Accepted; it starts as soon as the job queue can be reached again.";
    row.appendChild(el("td", {}, "")).appendChild(status);

    const progress = el("td", { class: "progress-cell" });
    const percent = Math.round((job.progress || 0) * 100);
    const bar = el("div", { class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
                            "aria-valuenow": String(percent), "aria-label": "Progress" });
    const filled = bar.appendChild(el("span"));
    filled.style.width = percent + "%";  // (through the CSSOM: the Content-Security-Policy allows no style attributes)
    progress.appendChild(bar);
    // While it runs: rows so far of how many, and for how long; once it ended, how long it took (the
    // rows have their own column).
    const detail = ACTIVE.has(job.status)
      ? fmtNumber(job.rows_done) + (job.rows_total !== null ? " / " + fmtNumber(job.rows_total) : "") +
        " · " + percent + "%" + (job.started_at ? " · " + elapsed(job) : "")
      : job.started_at ? "took " + elapsed(job) : "";
    progress.appendChild(el("small", { class: "muted", "data-progress-text": "" }, detail));
    if (job.error) progress.appendChild(el("small", { class: "error" }, job.error));
    row.appendChild(progress);

    const nothing = job.status === "succeeded" && job.rows_done === 0;
    row.appendChild(el("td", nothing ? { class: "empty-result" } : {}, nothing ? "0 — nothing matched the filters"
                       : job.status === "succeeded" ? fmtNumber(job.rows_done) : "—"));
    row.appendChild(el("td", { class: "nowrap" }, fmtSize(job.file_size)));
    row.appendChild(el("td", { class: "nowrap" }, new Date(job.created_at).toLocaleString(undefined,
      { dateStyle: "short", timeStyle: "short" })));
    const actions = el("div", { class: "actions" });
    if (job.status === "succeeded" && job.download_url) {
      actions.appendChild(el("a", { class: "button", href: job.download_url, "data-action": "download" }, "Download"));
    } else if (job.status === "succeeded" && job.delivery === "instant") {
      actions.appendChild(el("small", { class: "muted", title: "Small reports are written straight into the " +
        "download and not kept: export it again for a new copy." }, "Downloaded at once"));
    }
    if (ACTIVE.has(job.status)) {
      const cancel = el("button", { type: "button", class: "secondary", "data-action": "cancel" }, "Cancel");
      cancel.addEventListener("click", () => api("POST", jobUrl("cancel", job.id))
        .then(({ data }) => render(data.job || data)));
      actions.appendChild(cancel);
    }
    if (RETRYABLE.has(job.status)) {
      const retry = el("button", { type: "button", class: "secondary", "data-action": "retry" }, "Retry");
      retry.addEventListener("click", () => api("POST", jobUrl("retry", job.id))
        .then(({ status, data }) => { if (status === 202) render(data); else alert(data.error || "Retry failed."); }));
      actions.appendChild(retry);
    }
    row.appendChild(el("td")).appendChild(actions);
    empty.hidden = jobs.size > 0;
  }

  function showErrors(form, errors) {
    form.querySelectorAll("[data-error-for]").forEach((n) => { n.textContent = ""; n.classList.remove("form-note"); });
    form.querySelectorAll("[aria-invalid]").forEach((n) => n.removeAttribute("aria-invalid"));
    Object.entries(errors || {}).forEach(([name, messages]) => {
      const slot = form.querySelector('[data-error-for="' + name + '"]') || form.querySelector('[data-error-for="__all__"]');
      slot.textContent = [].concat(messages).join(" ");
      const input = form.querySelector('[name="' + name + '"]');
      if (input) input.setAttribute("aria-invalid", "true");
    });
  }

  // What a form asks for: report, format, filters (a relative date where one is chosen) and columns;
  // null, with the errors shown, when the browser can already tell it is wrong.
  function requestOf(form) {
    // The browser's own check first: a half-typed date has no value but is not empty either.
    const invalid = [...form.querySelectorAll(".filters [name]")].filter((input) => !input.checkValidity());
    if (invalid.length) {
      showErrors(form, Object.fromEntries(invalid.map((input) => [input.name,
        input.validity.badInput && input.type === "date" ? "Enter a complete date, or clear the field."
                                                         : input.validationMessage])));
      invalid[0].focus();
      return null;
    }
    const params = {};
    form.querySelectorAll(".filters [name]").forEach((input) => {
      const relative = form.querySelector('[data-relative-for="' + input.name + '"]');
      if (relative && relative.value) params[input.name] = relative.value;
      else if (input.value !== "") params[input.name] = input.value;
    });
    const list = form.querySelector("[data-columns]");
    const columns = window.ColumnPicker.chosen(list);
    if (!columns.length) {
      form.querySelector("details.columns").open = true;
      showErrors(form, { columns: "Choose at least one column." });
      return null;
    }
    return { report: form.dataset.report, format: form.elements.format.value, params, columns };
  }

  // A small report answers 201 with where to fetch it: the browser saves it at once (no toast, no wait).
  function startDownload(url) {
    const link = el("a", { href: url, download: "", hidden: "" });
    document.body.appendChild(link);
    link.click();
    link.remove();
  }

  function describeColumns(form) {
    const list = form.querySelector("[data-columns]");
    const total = list.querySelectorAll("li").length;
    const chosen = window.ColumnPicker.chosen(list);
    const declared = config.reports.find((r) => r.slug === form.dataset.report).columns;
    const inOrder = [...list.querySelectorAll("li")].every((li, i) => li.dataset.column === declared[i].name);
    form.querySelector("[data-columns-summary]").textContent = chosen.length === total
      ? (inOrder ? "all " + total : "all " + total + ", reordered") : chosen.length + " of " + total;
  }

  const forms = document.querySelectorAll(".report-form");
  forms.forEach((form) => {
    describeColumns(form);
    form.addEventListener("columns:change", () => { describeColumns(form); showErrors(form, {}); });
    form.querySelectorAll("[data-relative-for]").forEach((select) => {
      const input = form.querySelector('[name="' + select.dataset.relativeFor + '"]');
      const sync = () => { input.disabled = select.value !== ""; };
      select.addEventListener("change", sync);
      sync();
    });
    setUpSchedule(form);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const request = requestOf(form);
      if (!request) return;
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      api("POST", config.urls.jobs, request)
        .then(({ status, data }) => {
          if (status === 201) { showErrors(form, {}); render(data); startDownload(data.download_url); }
          else if (status === 202 || status === 200) { showErrors(form, {}); render(data); }
          else if (status === 400) showErrors(form, data.fields || { __all__: data.error });
          else if (status === 429) { form.dataset.limited = "true"; showErrors(form, { __all__: data.error }); }
          else showErrors(form, { __all__: data.error || "Something went wrong (" + status + ")." });
        })
        .catch(() => showErrors(form, { __all__: "The server could not be reached. Try again." }))
        .finally(() => { button.disabled = false; });
    });
  });

  // -- Schedules ---------------------------------------------------------------------------------

  function renderSchedule(schedule) {
    let row = scheduleBody.querySelector('tr[data-schedule="' + schedule.id + '"]');
    if (!row) {
      row = el("tr", { "data-schedule": String(schedule.id) });
      scheduleBody.appendChild(row);
    }
    row.replaceChildren();
    const title = el("td");
    title.appendChild(el("strong", {}, (schedule.report_title || schedule.report) + " · " +
                                      (config.formats[schedule.format] || schedule.format)));
    title.appendChild(el("small", { class: "muted" }, describeParams(schedule) +
      (schedule.columns ? " · " + schedule.columns.length + " columns" : "")));
    row.appendChild(title);
    row.appendChild(el("td", {}, schedule.description));
    row.appendChild(el("td", { class: "nowrap" }, schedule.paused ? "Paused" : fmtWhen(schedule.next_run_at)));
    const last = el("td");
    if (schedule.last_run) {
      last.appendChild(el("span", { class: "status status-" + schedule.last_run.status },
                          config.statuses[schedule.last_run.status] || schedule.last_run.status));
      last.appendChild(el("small", { class: "muted" }, fmtWhen(schedule.last_run.slot)));
      if (schedule.last_run.error) last.appendChild(el("small", { class: "error" }, schedule.last_run.error));
    } else {
      last.appendChild(el("small", { class: "muted" }, "not yet"));
    }
    row.appendChild(last);
    const actions = el("div", { class: "actions" });
    const toggle = el("button", { type: "button", class: "secondary", "data-action": schedule.paused ? "resume" : "pause" },
                      schedule.paused ? "Resume" : "Pause");
    toggle.addEventListener("click", () => api("POST", scheduleUrl(schedule.paused ? "schedule_resume" : "schedule_pause",
                                                                   schedule.id)).then(({ status, data }) => {
      if (status === 200) renderSchedule(data);
    }));
    const remove = el("button", { type: "button", class: "secondary", "data-action": "delete" }, "Delete");
    remove.addEventListener("click", () => {
      if (!confirm("Delete this schedule? Its past reports stay in the list.")) return;
      api("DELETE", scheduleUrl("schedule", schedule.id)).then(({ status }) => {
        if (status === 200) { row.remove(); schedulesEmpty.hidden = scheduleBody.rows.length > 0; }
      });
    });
    actions.append(toggle, remove);
    row.appendChild(el("td")).appendChild(actions);
    schedulesEmpty.hidden = true;
  }

  function setUpSchedule(form) {
    const fieldset = form.querySelector("fieldset.schedule");
    const opener = form.querySelector('[data-action="schedule"]');
    fieldset.querySelector("[data-time-zone]").textContent = timeZone;
    const frequency = fieldset.querySelector('[name="frequency"]');
    const showFrequency = () => fieldset.querySelectorAll("[data-for-frequency]").forEach((part) => {
      part.hidden = part.dataset.forFrequency !== frequency.value;
    });
    frequency.addEventListener("change", showFrequency);
    showFrequency();
    opener.addEventListener("click", () => {
      fieldset.hidden = !fieldset.hidden;
      opener.setAttribute("aria-expanded", String(!fieldset.hidden));
      if (!fieldset.hidden) frequency.focus();
    });
    fieldset.querySelector('[data-action="save-schedule"]').addEventListener("click", (event) => {
      const request = requestOf(form);
      if (!request) return;
      const time = fieldset.querySelector('[name="time"]');
      if (!time.value) { showErrors(form, { time: "Choose a time of day." }); time.focus(); return; }
      const body = { ...request, frequency: frequency.value, time: time.value.slice(0, 5), time_zone: timeZone };
      if (frequency.value === "weekly") {
        body.weekdays = [...fieldset.querySelectorAll('[name="weekdays"]:checked')].map((box) => Number(box.value));
      }
      if (frequency.value === "monthly") body.day_of_month = Number(fieldset.querySelector('[name="day_of_month"]').value);
      const button = event.currentTarget;
      button.disabled = true;
      api("POST", config.urls.schedules, body).then(({ status, data }) => {
        if (status === 201) {
          showErrors(form, {});
          renderSchedule(data);
          fieldset.hidden = true;
          opener.setAttribute("aria-expanded", "false");
          const saved = form.querySelector('[data-error-for="__all__"]');
          saved.classList.add("form-note");
          saved.textContent = "Scheduled: " + data.description + ". First run " + fmtWhen(data.next_run_at) + ".";
        } else if (status === 400) showErrors(form, data.fields || { __all__: data.error });
        else showErrors(form, { __all__: data.error || "Something went wrong (" + status + ")." });
      }).catch(() => showErrors(form, { __all__: "The server could not be reached. Try again." }))
        .finally(() => { button.disabled = false; });
    });
  }

  window.addEventListener("notifications:message", (e) => {
    if (!e.detail.job) return;
    render(e.detail.job);
    const scheduled = e.detail.job.schedule;  // a schedule's run ended: its row shows it as its last run
    if (scheduled && !ACTIVE.has(e.detail.job.status) && scheduleBody.querySelector('tr[data-schedule="' + scheduled + '"]')) {
      api("GET", scheduleUrl("schedule", scheduled)).then(({ status, data }) => { if (status === 200) renderSchedule(data); });
    }
    if (!ACTIVE.has(e.detail.job.status)) forms.forEach((form) => {
      if (form.dataset.limited) { delete form.dataset.limited; showErrors(form, {}); }  // a 429 said "wait": done
    });
  });
  // The job's row in view says what its toast would: no toast over the page, the row flashes instead.
  window.addEventListener("notifications:toast", (e) => {
    const row = e.detail.job && tbody.querySelector('tr[data-job="' + e.detail.job.id + '"]');
    if (!row) return;
    const box = row.getBoundingClientRect();
    if (box.bottom <= 0 || box.top >= window.innerHeight) return;
    e.preventDefault();
    row.classList.add("just-ended");
    setTimeout(() => row.classList.remove("just-ended"), 4000);
  });
  window.addEventListener("notifications:connection", (e) => {
    liveState.textContent = e.detail.connected ? "· live" : "· reconnecting, checking every few seconds";
  });

  // Without the websocket, poll the jobs still moving; with it, only tick the elapsed time.
  setInterval(() => {
    const connected = window.Notifications && window.Notifications.connected;
    jobs.forEach((job) => {
      if (!ACTIVE.has(job.status)) return;
      if (connected) render(job);
      else api("GET", jobUrl("job", job.id)).then(({ status, data }) => { if (status === 200) render(data); });
    });
  }, 2000);

  config.jobs.slice().reverse().forEach(render);
  empty.hidden = jobs.size > 0;
  config.schedules.forEach(renderSchedule);
})();
