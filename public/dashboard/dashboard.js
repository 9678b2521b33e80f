// The wasmvisor dashboard: no dependencies, everything from this Worker. The API key is
// exchanged for an HttpOnly session cookie (POST /v1/session) and never kept by the page;
// requests that change something send X-Wasmvisor-CSRF. Live through GET /v1/events (SSE);
// the browser's EventSource reconnects with Last-Event-ID by itself.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const CSRF = { "x-wasmvisor-csrf": "1" };
  const state = { devices: new Map(), jobs: new Map(), deployments: new Map(), services: new Map(), rollouts: new Map(), history: new Map(), source: null };
  // For measurements (test/e2e/dashboard.test.ts): when each job's end reached the page.
  const metrics = (window.__wasmvisor = { jobEnds: [], events: 0 });

  async function api(method, path, body, extra) {
    const headers = { ...(method === "GET" ? {} : CSRF), ...(body === undefined ? {} : { "content-type": "application/json" }), ...extra };
    const res = await fetch(path, { method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body) });
    const data = res.status === 204 ? null : await res.json().catch(() => null);
    if (res.status === 401) showLogin("Your session ended: log in again.");
    if (!res.ok) throw new Error((data && (data.detail || data.title)) || `HTTP ${res.status}`);
    return data;
  }

  const el = (tag, attrs = {}, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) e.setAttribute(k, String(v));
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c === null || c === undefined ? "-" : String(c)));
    return e;
  };
  const badge = (text, testid) => el("span", { class: `badge ${text}`, "data-testid": testid }, text);
  const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "-");

  function showLogin(message) {
    clearInterval(state.healthTimer);
    if (state.source) state.source.close();
    state.source = null;
    $("app-view").hidden = true;
    $("logout").hidden = true;
    $("login-view").hidden = false;
    $("who").textContent = "";
    $("login-error").textContent = message || "";
    setLive(false);
  }

  function setLive(on) {
    $("live").textContent = on ? "live" : "offline";
    $("live").className = `badge ${on ? "on" : "off"}`;
  }

  $("login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("key");
    const key = input.value.trim();
    input.value = ""; // the key leaves the page at once; only the cookie remains
    try {
      const res = await fetch("/v1/session", { method: "POST", headers: { authorization: `Bearer ${key}` }, credentials: "same-origin" });
      const data = await res.json().catch(() => null);
      if (!res.ok) throw new Error((data && data.detail) || `HTTP ${res.status}`);
      await start(data);
    } catch (e) {
      $("login-error").textContent = `Login failed: ${e.message}`;
    }
  });

  $("logout").addEventListener("click", async () => {
    await api("DELETE", "/v1/session").catch(() => undefined);
    showLogin("Logged out.");
  });

  $("submit").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    let args;
    try {
      args = JSON.parse($("job-args").value || "[]");
    } catch {
      $("submit-result").textContent = "Args must be a JSON array.";
      return;
    }
    try {
      const job = await api("POST", "/v1/jobs", { device: $("job-device").value, module: $("job-module").value.trim(), function: $("job-function").value.trim(), args });
      upsertJob({ id: job.id, function: job.function, state: job.state, updatedAt: job.updatedAt, result: job.result });
      $("submit-result").textContent = `Submitted ${job.id} (${job.state}).`;
      $("submit-result").dataset.job = job.id;
    } catch (e) {
      $("submit-result").textContent = `Refused: ${e.message}`;
    }
  });

  async function start(session) {
    $("who").textContent = `${session.role}${session.namespace ? ` @ ${session.namespace}` : ""}`;
    $("login-view").hidden = true;
    $("app-view").hidden = false;
    $("logout").hidden = false;
    const [devices, jobs, deployments, rollouts] = await Promise.all([
      api("GET", "/v1/devices?limit=500"),
      api("GET", "/v1/jobs?limit=50"),
      api("GET", "/v1/deployments?limit=100").catch(() => ({ deployments: [] })),
      api("GET", "/v1/rollouts?limit=100").catch(() => ({ rollouts: [] })),
    ]);
    state.devices = new Map(devices.devices.map((d) => [d.id, d]));
    for (const j of jobs.jobs) state.jobs.set(j.id, j);
    for (const d of deployments.deployments) state.deployments.set(d.id, d);
    for (const r of rollouts.rollouts) state.rollouts.set(r.id, r);
    renderDevices();
    renderJobs();
    renderDeployments();
    renderRollouts();
    // Services live on their devices: those of the first 50 devices to start with, then every change by its event.
    await Promise.all(
      [...state.devices.keys()].slice(0, 50).map((id) =>
        api("GET", `/v1/devices/${id}/services`)
          .then((list) => {
            for (const sv of list.services) state.services.set(`${id}/${sv.name}`, { device: id, name: sv.name, status: sv.status, reason: sv.reason, updatedAt: sv.reportedAt || sv.createdAt });
          })
          .catch(() => undefined),
      ),
    );
    renderServices();
    follow();
    // Health is not an event (it changes with every heartbeat): the devices shown are re-read every 30 s.
    clearInterval(state.healthTimer);
    state.healthTimer = setInterval(() => {
      if (!$("app-view").hidden) for (const id of [...state.devices.keys()].slice(0, 50)) refreshDevice(id);
    }, 30_000);
  }

  function follow() {
    if (state.source) state.source.close();
    // tail: the recent history of each device to start with; then live. Reconnects resume by Last-Event-ID.
    const source = new EventSource("/v1/events?tail=200");
    state.source = source;
    source.onopen = () => setLive(true);
    source.onerror = () => {
      setLive(false);
      // A closed session makes every reconnect fail: find out and show the login.
      if (source.readyState === EventSource.CLOSED) api("GET", "/v1/session").catch(() => undefined);
    };
    source.onmessage = (m) => onEvent(JSON.parse(m.data));
  }

  function onEvent(e) {
    metrics.events++;
    const list = $("events");
    list.prepend(el("li", { "data-kind": e.kind }, `${time(e.at)}  ${e.kind}  ${e.device || ""} ${e.job || e.deployment || ""}`));
    while (list.children.length > 200) list.lastChild.remove();
    if (e.device) {
      const h = state.history.get(e.device) || [];
      h.push(e);
      state.history.set(e.device, h.slice(-6));
    }
    if (e.kind === "device.registered" && !state.devices.has(e.device)) {
      state.devices.set(e.device, { id: e.device, name: e.data.name, status: "offline", health: null, lastSeenAt: null });
    }
    if (e.kind === "device.online" || e.kind === "device.offline") {
      const d = state.devices.get(e.device);
      if (d) {
        d.status = e.kind.slice("device.".length);
        if (e.data.lastSeen) d.lastSeenAt = new Date(e.data.lastSeen).toISOString();
      }
      // Its health and queue come from the device's own object (the listing refreshes health rarely).
      if (e.kind === "device.online" || !d) refreshDevice(e.device);
    }
    if (e.kind.startsWith("job.") && e.job) {
      const j = state.jobs.get(e.job) || { id: e.job, function: e.data.function, state: e.data.state, updatedAt: e.at };
      j.state = e.data.state;
      j.updatedAt = e.at;
      state.jobs.set(e.job, j);
      const ended = ["SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELED", "REJECTED", "EXPIRED"].includes(e.data.state);
      if (ended) refreshJob(e.job, e.data.finishedAt);
    }
    if (e.kind.startsWith("deployment.") && e.deployment) {
      const d = state.deployments.get(e.deployment) || { id: e.deployment, generation: e.data.generation, source: "-" };
      d.lastState = `${e.data.state} (${e.device})`;
      d.updatedAt = e.at;
      state.deployments.set(e.deployment, d);
      renderDeployments();
    }
    if (e.kind.startsWith("service.") && e.device && e.data.name) {
      const key = `${e.device}/${e.data.name}`;
      if (e.kind === "service.removed") state.services.delete(key);
      else state.services.set(key, { device: e.device, name: e.data.name, status: e.data.status, reason: e.data.reason, updatedAt: e.at });
      renderServices();
    }
    if (e.kind.startsWith("rollout.") && e.data.rollout) {
      const r = state.rollouts.get(e.data.rollout) || { id: e.data.rollout, deployment: e.deployment };
      Object.assign(r, { state: e.data.state, decision: e.data.decision, updatedAt: e.at });
      state.rollouts.set(r.id, r);
      renderRollouts();
    }
    renderDevices();
    renderJobs();
  }

  function renderServices() {
    const rows = [...state.services.values()].sort((a, b) => `${a.device}/${a.name}`.localeCompare(`${b.device}/${b.name}`)).slice(0, 200);
    $("services").replaceChildren(
      ...rows.map((sv) => {
        const d = state.devices.get(sv.device);
        return el("tr", { "data-service": `${sv.device}/${sv.name}` }, el("td", { class: "mono" }, (d && d.name) || sv.device), el("td", {}, sv.name), el("td", {}, badge(sv.status, "service-status")), el("td", {}, sv.reason || ""), el("td", {}, time(sv.updatedAt)));
      }),
    );
  }

  function renderRollouts() {
    const rows = [...state.rollouts.values()].sort((a, b) => String(b.updatedAt).localeCompare(String(a.updatedAt))).slice(0, 100);
    $("rollouts").replaceChildren(
      ...rows.map((r) => el("tr", { "data-rollout": r.id }, el("td", { class: "mono" }, r.id), el("td", { class: "mono" }, r.deployment || "-"), el("td", {}, badge(r.state, "rollout-state")), el("td", {}, r.decision || "-"), el("td", {}, time(r.updatedAt)))),
    );
  }

  async function refreshDevice(id) {
    try {
      state.devices.set(id, await api("GET", `/v1/devices/${id}`));
      renderDevices();
    } catch {}
  }

  async function refreshJob(id, finishedAt) {
    try {
      const job = await api("GET", `/v1/jobs/${id}`);
      const j = state.jobs.get(id) || {};
      Object.assign(j, { id, function: job.function, state: job.state, updatedAt: job.updatedAt, result: job.result, error: job.error });
      state.jobs.set(id, j);
      renderJobs();
      // From the job's end (its device object's clock) to the result on the page.
      if (finishedAt) metrics.jobEnds.push({ job: id, ms: Date.now() - finishedAt });
    } catch {}
  }

  function upsertJob(j) {
    state.jobs.set(j.id, { ...state.jobs.get(j.id), ...j });
    renderJobs();
  }

  function renderDevices() {
    const body = $("devices");
    const rows = [...state.devices.values()];
    body.replaceChildren(
      ...rows.map((d) => {
        const h = d.health;
        const history = (state.history.get(d.id) || []).map((e) => el("span", { class: "chip", title: e.at }, e.kind.replace(/^device\.|^job\./, "")));
        return el("tr", { "data-device": d.id },
          el("td", { class: "mono" }, d.id), el("td", {}, d.name), el("td", {}, badge(d.status, "device-status")),
          el("td", {}, h ? `${Math.round(h.cpuPercent)}%` : "-"), el("td", {}, h ? `${Math.round((100 * h.memoryUsedBytes) / h.memoryTotalBytes)}%` : "-"),
          el("td", {}, time(d.lastSeenAt)), el("td", {}, ...history));
      }),
    );
    $("n-devices").textContent = rows.length;
    $("n-online").textContent = rows.filter((d) => d.status === "online").length;
    const select = $("job-device");
    const chosen = select.value;
    select.replaceChildren(...rows.map((d) => el("option", { value: d.id }, `${d.name || d.id} (${d.status})`)));
    if (chosen && state.devices.has(chosen)) select.value = chosen;
  }

  function renderJobs() {
    const jobs = [...state.jobs.values()].sort((a, b) => String(b.updatedAt).localeCompare(String(a.updatedAt))).slice(0, 50);
    $("jobs").replaceChildren(
      ...jobs.map((j) => {
        const result = j.result ? JSON.stringify(j.result.value) : j.error ? j.error.message : "";
        return el("tr", { "data-job": j.id }, el("td", { class: "mono" }, j.id), el("td", {}, j.function), el("td", {}, badge(j.state, "job-state")), el("td", { class: "mono", "data-testid": "job-result" }, result), el("td", {}, time(j.updatedAt)));
      }),
    );
    $("n-queued").textContent = jobs.filter((j) => j.state === "QUEUED").length;
    $("n-running").textContent = jobs.filter((j) => j.state === "RUNNING" || j.state === "LEASED").length;
  }

  function renderDeployments() {
    $("deployments").replaceChildren(
      ...[...state.deployments.values()].map((d) => el("tr", { "data-deployment": d.id }, el("td", { class: "mono" }, d.id), el("td", {}, d.generation), el("td", {}, d.source), el("td", {}, d.lastState || "-"), el("td", {}, time(d.updatedAt)))),
    );
  }

  // Already logged in (the cookie is sent by the browser)?
  fetch("/v1/session", { credentials: "same-origin" })
    .then(async (res) => (res.ok ? start(await res.json()) : showLogin()))
    .catch(() => showLogin("The control plane cannot be reached."));
})();
