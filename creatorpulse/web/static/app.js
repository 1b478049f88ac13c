// The creatorpulse dashboard: plain script, no build step. Reads the JSON endpoints and
// the /api/stream server-sent events (README, "The dashboard"); charts are uPlot.
"use strict";
(function () {
  const $ = (sel) => document.querySelector(sel);
  const el = (tag, attrs, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  };

  // Numbers as the terminal board formats them (creatorpulse/terminal.py).
  const num = (v) => v == null ? "-" : v >= 1e6 ? (v / 1e6).toFixed(2) + "M"
    : v >= 1e4 ? (v / 1e3).toFixed(1) + "k" : Math.round(v).toLocaleString("en-US");
  const pct = (v) => v == null ? "-" : (v * 100).toFixed(1) + "%";
  const money = (v) => v == null ? "-" : v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const secs = (v) => v == null ? "-" : v.toFixed(1) + "s";
  const ratio = (v) => v == null ? "-" : v.toFixed(2) + "x";
  const ago = (s) => s == null ? "-" : s < 120 ? s.toFixed(1) + " s" : s < 7200 ? (s / 60).toFixed(1) + " min" : (s / 3600).toFixed(1) + " h";
  const clock = (ms) => new Date(ms).toISOString().slice(11, 19);
  const ER_GOOD = 0.10, ER_WEAK = 0.03;

  const state = {
    snapshot: null, board: null, sort: null, asc: false, detail: null, charts: {},
    campaigns: new Set(), tiers: new Set(),
  };
  const params = () => {
    const p = new URLSearchParams();
    if ($("#campaign-filter").value) p.set("campaign", $("#campaign-filter").value);
    if ($("#tier-filter").value) p.set("tier", $("#tier-filter").value);
    return p;
  };
  const filtered = () => $("#campaign-filter").value !== "" || $("#tier-filter").value !== "";
  async function getJSON(path) {
    const r = await fetch(path, { credentials: "same-origin" });
    if (!r.ok) throw new Error(path + ": " + r.status);
    return r.json();
  }

  // -- charts ---------------------------------------------------------------------------
  const COLORS = ["#4fb3ff", "#f5b642", "#3fcf8e", "#ff5c5c", "#b58cff", "#ff8cc6", "#8cf0ff"];
  function chart(id, labels, data, opts) {
    const host = document.getElementById(id);
    const width = Math.max(host.clientWidth, 300);
    const old = state.charts[id];
    const key = labels.join("|");
    if (!data[0].length) { if (old) { old.u.destroy(); delete state.charts[id]; } host.innerHTML = ""; return; }
    // At least ten minutes across, so a first window is not stretched over years.
    const xs = data[0], span = { min: Math.min(xs[0], xs[xs.length - 1] - 600), max: xs[xs.length - 1] + 60 };
    if (old && old.key === key) {
      old.u.setData(data, false);
      old.u.setScale("x", span);
      if (old.width !== width) { old.u.setSize({ width, height: old.height }); old.width = width; }
      return;
    }
    if (old) old.u.destroy();
    host.innerHTML = "";
    const height = (opts && opts.height) || 220;
    const series = [{}].concat(labels.map((label, i) => ({
      label, stroke: COLORS[i % COLORS.length], width: 2,
      dash: label.includes("median") ? [6, 4] : undefined,
      // Points as well as lines: a campaign's first minute is one point, no line.
      points: { show: !(opts && opts.bars), size: 6, fill: COLORS[i % COLORS.length] },
      paths: opts && opts.bars && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.8, 24] }) : undefined,
      fill: opts && opts.bars ? COLORS[i % COLORS.length] + "99" : undefined,
      value: (u, v) => v == null ? "-" : (opts && opts.fmt ? opts.fmt(v) : num(v)),
      spanGaps: true,
    })));
    const axis = { stroke: "#7d8995", grid: { stroke: "#27313c" }, ticks: { stroke: "#27313c" } };
    const u = new uPlot({
      width, height, series,
      axes: [axis, Object.assign({}, axis, {
        size: 60, values: (u, vals) => vals.map((v) => opts && opts.fmt ? opts.fmt(v) : num(v)),
        // Counts: whole-number ticks only (no "0.5 dead letters").
        incrs: opts && opts.counts ? [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 1e5, 1e6] : undefined,
      })],
      scales: { x: { time: true, auto: false } },
      legend: { live: true },
    }, data, host);
    u.setScale("x", span);
    state.charts[id] = { u, key, width, height };
  }
  window.addEventListener("resize", () => {
    for (const [id, c] of Object.entries(state.charts)) {
      const w = Math.max(document.getElementById(id).clientWidth, 300);
      if (w !== c.width) { c.u.setSize({ width: w, height: c.height }); c.width = w; }
    }
  });

  // Align several (t, values) series on one x axis (uPlot wants one shared x array).
  function align(seriesList) {
    const xs = [...new Set(seriesList.flatMap((s) => s.t))].sort((a, b) => a - b);
    const out = [xs];
    for (const s of seriesList) {
      const at = new Map(s.t.map((t, i) => [t, s.v[i]]));
      out.push(xs.map((t) => at.has(t) ? at.get(t) : null));
    }
    return out;
  }

  // -- overview -------------------------------------------------------------------------
  function renderOverview(o) {
    if (!o) return;
    $("#overview-range").textContent = o.from && o.to && o.to !== o.from ? `last hour of event time, ${o.from.slice(11, 16)}-${o.to.slice(11, 16)} UTC` : "";
    const cards = $("#campaign-cards");
    cards.replaceChildren();
    for (const c of o.campaigns || []) {
      state.campaigns.add(c.campaign_id);
      const tiers = (o.tiers || {})[c.campaign_id] || {};
      Object.keys(tiers).forEach((t) => state.tiers.add(t));
      const dl = el("dl");
      const add = (k, v) => dl.append(el("dt", { text: k }), el("dd", { text: v }));
      add("views", num(c.views)); add("ER", pct(c.er)); add("CTR", pct(c.ctr)); add("CVR", pct(c.cvr));
      add("revenue", money(c.revenue)); add("spend", money(c.spend)); add("CPA", money(c.cpa)); add("ROAS", ratio(c.roas));
      add("creators", `${c.creators} (${c.ranked} ranked)`);
      add("by tier", Object.entries(tiers).map(([t, n]) => `${t} ${n}`).join(", ") || "-");
      add("alerts", String(c.alerts || 0)); add("currency", c.currency || "-");
      cards.append(el("div", { class: "card", "data-campaign": c.campaign_id }, el("h4", { text: c.campaign_id }), dl));
    }
    const series = (o.series && o.series.campaigns) || {};
    const names = Object.keys(series).sort();
    chart("campaign-chart", names.map((n) => n + " views/min"), align(names.map((n) => ({ t: series[n].t, v: series[n].views }))));
    fillSelect("#campaign-filter", state.campaigns);
    fillSelect("#tier-filter", state.tiers);
  }
  function fillSelect(sel, values) {
    const select = $(sel);
    const have = new Set([...select.options].map((o) => o.value));
    for (const v of [...values].sort()) if (!have.has(v)) select.append(el("option", { value: v, text: v }));
  }

  // -- board ----------------------------------------------------------------------------
  const COLUMNS = ["rank", "label", "campaign_id", "tier", "views", "er", "avg_watch_s", "ctr", "cvr", "conversions", "revenue", "spend", "cpa", "roas", "alert_state"];
  function sortedRows(board) {
    const rows = (board.creators || []).map((r) => Object.assign({}, r, {
      label: r.handle || r.creator_id,
      alert_state: (board.alerts || {})[`${r.campaign_id}/${r.creator_id}`] || r.alert || null,
    }));
    if (!state.sort) return rows; // the server's order: the board's ranking
    const k = state.sort, dir = state.asc ? 1 : -1;
    return rows.sort((a, b) => {
      const x = a[k], y = b[k];
      if (x == null && y == null) return 0;
      if (x == null) return 1; if (y == null) return -1; // no value sorts last either way
      return (typeof x === "string" ? x.localeCompare(y) : x - y) * dir;
    });
  }
  function renderBoard(board) {
    if (!board) return;
    state.board = board;
    $("#min-sample").textContent = board.min_sample_views;
    const body = $("#board-table tbody");
    const rows = sortedRows(board);
    body.replaceChildren();
    if (!rows.length) body.append(el("tr", {}, el("td", { colspan: "15", class: "muted", text: "no creators in range" })));
    for (const r of rows) {
      const tr = el("tr", { "data-campaign": r.campaign_id, "data-creator": r.creator_id });
      if (r.rank == null) tr.classList.add("unranked");
      if (state.detail && state.detail.campaign === r.campaign_id && state.detail.creator === r.creator_id) tr.classList.add("selected");
      const er = el("td", { class: "num " + (r.er == null ? "" : r.er >= ER_GOOD ? "er-good" : r.er < ER_WEAK ? "er-weak" : ""), text: pct(r.er) });
      // Beside the raw rate, the shrunk one the alert rule compared, where an alert gave it.
      const shrunk = ((board.shrunk || {})[`${r.campaign_id}/${r.creator_id}`] || {}).er;
      if (shrunk && shrunk.shrunk != null) er.append(el("span", { class: "shrunk", title: "shrunk (empirical-Bayes) ER, as the alert rule compared it", text: " ~" + pct(shrunk.shrunk) }));
      const tier = el("td"); if (r.tier) tier.append(el("span", { class: `badge tier-${r.tier}`, text: r.tier })); else tier.textContent = "-";
      const alert = el("td"); if (r.alert_state) alert.append(el("span", { class: `badge state-${r.alert_state}`, text: r.alert_state }));
      tr.append(
        el("td", { class: "num", text: r.rank == null ? "-" : String(r.rank) }),
        el("td", { text: r.label }), el("td", { text: r.campaign_id }), tier,
        el("td", { class: "num", "data-value": String(r.views), text: num(r.views) }), er,
        el("td", { class: "num", text: secs(r.avg_watch_s) }), el("td", { class: "num", text: pct(r.ctr) }),
        el("td", { class: "num", text: pct(r.cvr) }), el("td", { class: "num", text: num(r.conversions) }),
        el("td", { class: "num", text: money(r.revenue) }), el("td", { class: "num", text: money(r.spend) }),
        el("td", { class: "num", text: money(r.cpa) }), el("td", { class: "num", text: ratio(r.roas) }), alert);
      tr.addEventListener("click", () => openDetail(r.campaign_id, r.creator_id, r.label));
      body.append(tr);
    }
    for (const th of document.querySelectorAll("#board-table th")) {
      th.classList.toggle("sorted", th.dataset.key === state.sort);
      th.classList.toggle("asc", th.dataset.key === state.sort && state.asc);
    }
  }
  for (const th of document.querySelectorAll("#board-table th")) {
    th.addEventListener("click", () => {
      const k = th.dataset.key;
      if (state.sort === k) state.asc = !state.asc;
      else { state.sort = k; state.asc = k === "cpa" || k === "rank" || k === "label" || k === "campaign_id" || k === "tier"; }
      renderBoard(state.board);
    });
  }
  async function refreshBoard() {
    if (!filtered()) { if (state.snapshot) renderBoard(state.snapshot.board); return; }
    try { renderBoard(await getJSON("/api/board?" + params())); } catch (e) { console.warn(e); }
  }
  $("#campaign-filter").addEventListener("change", refreshBoard);
  $("#tier-filter").addEventListener("change", refreshBoard);

  // -- creator detail -------------------------------------------------------------------
  async function openDetail(campaign, creator, label) {
    state.detail = { campaign, creator, label };
    $("#detail").hidden = false;
    $("#detail-title").textContent = label;
    $("#detail-sub").textContent = `${campaign} - last 3 hours of event time, 60 s windows`;
    renderBoard(state.board);
    await refreshDetail();
    $("#detail").scrollIntoView({ block: "nearest" });
  }
  async function refreshDetail() {
    const d = state.detail;
    if (!d) return;
    let data;
    try { data = await getJSON(`/api/creator?campaign=${encodeURIComponent(d.campaign)}&creator=${encodeURIComponent(d.creator)}&hours=3`); }
    catch (e) { console.warn(e); return; }
    const s = data.series, c = data.cohort;
    const tier = c.scope === "campaign" ? " campaign" : c.tier ? ` ${c.tier}` : "";
    chart("chart-views", ["views", `${tier} cohort median`.trim()], align([{ t: s.t, v: s.views }, { t: c.t, v: c.views }]));
    chart("chart-er", ["ER", `${tier} cohort median`.trim()], align([{ t: s.t, v: s.er }, { t: c.t, v: c.er }]), { fmt: pct });
    chart("chart-watch", ["avg watch", `${tier} cohort median`.trim()], align([{ t: s.t, v: s.avg_watch_s }, { t: c.t, v: c.avg_watch_s }]), { fmt: (v) => v.toFixed(1) });
    chart("chart-clicks", ["clicks", "conversions"], [s.t, s.clicks, s.conversions], { counts: true });
    renderFeed($("#detail-alerts"), data.alerts, "no alerts for this creator");
  }
  $("#detail-close").addEventListener("click", () => { state.detail = null; $("#detail").hidden = true; renderBoard(state.board); });

  // -- alerts ---------------------------------------------------------------------------
  function renderFeed(list, alerts, empty) {
    list.replaceChildren();
    if (!alerts || !alerts.length) { list.append(el("li", { class: "muted", text: empty })); return; }
    for (const a of alerts) {
      const deliveries = (a.deliveries || []).map((d) => d.hook ? `${d.kind} ${d.hook}: ${d.status || d.decision}` : `${d.kind}: ${d.decision}`);
      list.append(el("li", { class: "alert", "data-alert": a.alert_id },
        el("span", { class: `badge state-${a.state}`, text: a.state }), " ",
        el("b", { text: `${a.rule} ${a.handle || a.creator_id}` }), " ",
        el("span", { class: "when", text: `${a.campaign_id} - fired ${clock(a.fired_at_ms)}${a.resolved_at_ms ? ", resolved " + clock(a.resolved_at_ms) : ""}` }),
        el("div", { class: "why", text: a.explanation || `${a.metric} ${a.value} vs ${a.baseline}` }),
        el("div", { class: "when", text: Object.entries(a.rates || {}).map(([k, v]) => `${k} ${pct(v.raw)} (shrunk ${pct(v.shrunk)})`).join(", ")
          + (a.cohort ? `${a.rates && Object.keys(a.rates).length ? "; " : ""}cohort ${a.cohort.tier} (${a.cohort.scope}, ${a.cohort.size})` : "") }),
        el("div", { class: "when", text: deliveries.length ? "delivery: " + deliveries.join("; ") : "delivery: not notified yet" })));
    }
  }

  // -- health ---------------------------------------------------------------------------
  function renderHealth(h) {
    if (!h) return;
    $("#freshness").textContent = ago(h.freshness_s);
    $("#events-rate").textContent = h.events_per_s == null ? "-" : num(h.events_per_s);
    const figs = $("#health-figures");
    figs.replaceChildren();
    const add = (k, v) => figs.append(el("div", {}, el("dt", { text: k }), el("dd", { text: v })));
    add("freshness", ago(h.freshness_s));
    add("events/s", h.events_per_s == null ? "-" : num(h.events_per_s));
    const c = h.counters || {};
    add("events counted", num(c.events_counted)); add("duplicates", num(c.duplicates));
    add("late", num(c.late)); add("invalid", num(c.invalid));
    const s = h.sink || {};
    add("rows written", num(s.rows_written)); add("rows pending", num(s.rows_pending));
    add("sink failures (retried)", num(s.failures)); add("rows refused", num(s.rows_refused));
    add("Kafka send failures", num(c.kafka_send_failures));
    if (s.last_error) add("last sink error", s.last_error);
    const body = $("#lag-table tbody");
    body.replaceChildren();
    for (const p of h.partitions || []) {
      const lags = Object.values(p.lag || {});
      body.append(el("tr", {}, el("td", { text: String(p.partition) }),
        el("td", { class: "num", text: num(lags[0]) }), el("td", { class: "num", text: num(lags[1]) }),
        el("td", { class: "num", text: num(p.windows_open) }),
        el("td", { text: p.watermark_ms ? clock(p.watermark_ms) : "-" })));
    }
    // Every minute of the last 30, each reason's count in it (0 where none).
    const dead = h.dead_letters_per_minute || [];
    const reasons = [...new Set(dead.map((d) => d.reason))].sort();
    const last = Math.floor(h.now_ms / 60000) * 60;
    const minutes = Array.from({ length: 30 }, (_, i) => last - (29 - i) * 60);
    const data = [minutes].concat(reasons.map((r) => minutes.map((m) => {
      const hit = dead.find((d) => d.reason === r && d.minute_s === m);
      return hit ? hit.count : 0;
    })));
    chart("dead-chart", reasons, reasons.length ? data : [[]], { height: 160, bars: true, counts: true });
    const dl = $("#deliveries");
    dl.replaceChildren();
    const outcomes = Object.entries(h.webhook_deliveries || {});
    if (!outcomes.length) dl.append(el("div", {}, el("dt", { text: "none yet" }), el("dd", { text: "-" })));
    for (const [k, v] of outcomes) dl.append(el("div", {}, el("dt", { text: k }), el("dd", { text: num(v) })));
  }

  // -- live updates ---------------------------------------------------------------------
  function apply(snapshot) {
    state.snapshot = snapshot;
    renderHealth(snapshot.health);
    renderOverview(snapshot.overview);
    renderFeed($("#alert-feed"), snapshot.alerts, "no alerts");
    refreshBoard();
    refreshDetail();
  }
  let poller = null;
  function poll() {
    // Without a stream (refused with 503, or none allowed): the same figures, polled.
    if (poller) return;
    const tick = async () => {
      try {
        const [health, overview, board, alerts] = await Promise.all([
          getJSON("/api/health"), getJSON("/api/overview"), getJSON("/api/board"), getJSON("/api/alerts")]);
        apply({ health, overview, board, alerts });
      } catch (e) { console.warn(e); }
    };
    tick();
    poller = setInterval(tick, 5000);
  }
  function connect() {
    const live = $("#live");
    const source = new EventSource("/api/stream");
    source.addEventListener("snapshot", (e) => {
      live.className = "live on"; live.textContent = "live " + clock(Date.now());
      if (poller) { clearInterval(poller); poller = null; }
      apply(JSON.parse(e.data));
    });
    source.onerror = () => {
      live.className = "live off"; live.textContent = "reconnecting";
      // EventSource reconnects by itself (sending Last-Event-ID); a refused stream
      // (503) closes it for good, so poll until a new stream is accepted.
      if (source.readyState === EventSource.CLOSED) { poll(); setTimeout(connect, 15000); }
    };
  }
  connect();
})();
