/* consultbook embedded admin: one page, vanilla JS, talking to /admin/api/* with App Bridge
 * session tokens (`shopify.idToken()`; under `consultbook demo` the demo's shim provides it).
 * Sections are addressed by the URL hash (#services, #experts, #hours, ...). */
(function () {
  "use strict";

  var DAYS = [["mon", "Monday"], ["tue", "Tuesday"], ["wed", "Wednesday"], ["thu", "Thursday"],
              ["fri", "Friday"], ["sat", "Saturday"], ["sun", "Sunday"]];
  var SECTIONS = ["home", "services", "experts", "hours", "bookings", "refunds", "export", "settings", "connections"];
  var TIME = "([01][0-9]|2[0-4]):[0-5][0-9]";
  var main = document.getElementById("main");
  var statusBox = document.getElementById("status");
  var alertBox = document.getElementById("alert");
  var state = { services: [], experts: [], settings: null, week: null, hoursExpert: "" };

  // ------------------------------------------------------------------ helpers

  function h(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === "text") node.textContent = v;
        else if (k === "class") node.className = v;
        else if (k === "value") node.value = v;
        else if (k === "checked") node.checked = !!v;
        else if (k.slice(0, 2) === "on") node.addEventListener(k.slice(2), v);
        else node.setAttribute(k, v === true ? "" : v);
      });
    }
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }

  function append(node, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { append(node, c); }); return; }
    node.appendChild(typeof child === "string" || typeof child === "number"
      ? document.createTextNode(String(child)) : child);
  }

  function say(text) {
    alertBox.textContent = "";
    statusBox.textContent = text;
    if (window.shopify && window.shopify.toast && text) {
      try { window.shopify.toast.show(text); } catch (e) { /* optional */ }
    }
  }

  function fail(err) {
    statusBox.textContent = "";
    alertBox.textContent = (err && err.message) ? err.message : String(err);
  }

  function token() {
    if (!window.shopify || !window.shopify.idToken) return Promise.reject(new Error("App Bridge is not loaded."));
    return window.shopify.idToken();
  }

  function api(method, path, body) {
    return token().then(function (t) {
      var init = { method: method, headers: { Authorization: "Bearer " + t, Accept: "application/json" } };
      if (body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
      return fetch("/admin/api" + path, init);
    }).then(function (r) {
      if (r.status === 204) return null;
      return r.json().catch(function () { return {}; }).then(function (b) {
        if (!r.ok) {
          var e = new Error((b.error && b.error.message) ? b.error.message : "The request failed (HTTP " + r.status + ").");
          e.status = r.status;
          e.code = b.error && b.error.code;
          e.field = b.error && b.error.field;  // the input a validation error is about, if named
          throw e;
        }
        return b;
      });
    });
  }

  function field(label, input, help) {
    var id = input.id || ("f-" + Math.random().toString(36).slice(2));
    input.id = id;
    var hid = help ? id + "-help" : null;
    if (hid) input.setAttribute("aria-describedby", hid);
    return h("div", { class: "field" }, h("label", { for: id, text: label }), input,
      help ? h("p", { class: "help", id: hid, text: help }) : null);
  }

  function zones() {
    var list = [];
    try { list = Intl.supportedValuesOf("timeZone").slice(); } catch (e) { list = []; }
    ["UTC"].concat(state.experts.map(function (x) { return x.timezone; }),
                   state.settings ? [state.settings.timezone] : [])
      .forEach(function (z) { if (z && list.indexOf(z) < 0) list.push(z); });
    return list.sort();
  }

  function zoneSelect(id, value, allowEmpty) {
    var s = h("select", { id: id });
    if (allowEmpty) s.appendChild(h("option", { value: "", text: "The shop's time zone" }));
    zones().forEach(function (z) { s.appendChild(h("option", { value: z, text: z })); });
    s.value = value || "";
    return s;
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function addDays(ymd, n) {
    var d = new Date(ymd + "T12:00:00Z");
    d.setUTCDate(d.getUTCDate() + n);
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate());
  }

  function partsIn(tz, ms) {
    var p = {};
    new Intl.DateTimeFormat("en-US", { timeZone: tz, hourCycle: "h23", year: "numeric", month: "2-digit",
      day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" })
      .formatToParts(new Date(ms)).forEach(function (x) { p[x.type] = x.value; });
    return p;
  }

  function todayIn(tz) { var p = partsIn(tz, Date.now()); return p.year + "-" + p.month + "-" + p.day; }

  function offset(tz, ms) {
    var p = partsIn(tz, ms);
    return Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour % 24, +p.minute, +p.second) - Math.floor(ms / 1000) * 1000;
  }

  // The instant of midnight (wall clock of `tz`) starting `ymd` in `tz`, as "…Z".
  function midnight(ymd, tz) {
    var guess = Date.parse(ymd + "T00:00:00Z");
    var t = guess - offset(tz, guess);
    t = guess - offset(tz, t);
    return new Date(t).toISOString().replace(/\.\d{3}Z$/, "Z");
  }

  function shopTz() { return (state.settings && state.settings.timezone) || "UTC"; }

  function when(iso, opts) {
    var given = opts || { dateStyle: "medium", timeStyle: "short" };
    var o = { timeZone: shopTz() };
    Object.keys(given).forEach(function (k) { o[k] = given[k]; });
    return new Intl.DateTimeFormat(undefined, o).format(new Date(iso));
  }

  function nameOf(list, id) {
    for (var i = 0; i < list.length; i++) if (list[i].id === id) return list[i].name || list[i].title;
    return id;
  }

  function intOrNull(v) { v = String(v).trim(); return v === "" ? null : Number(v); }

  function section(title, intro) {
    main.textContent = "";
    var heading = h("h2", { tabindex: "-1", text: title });
    main.appendChild(heading);
    if (intro) main.appendChild(h("p", { class: "intro", text: intro }));
    return heading;
  }

  function table(caption, headers, rows, empty) {
    if (!rows.length) return h("p", { class: "empty", text: empty });
    return h("div", { class: "table-wrap" }, h("table", null,
      h("caption", { text: caption }),
      h("thead", null, h("tr", null, headers.map(function (x) { return h("th", { scope: "col", text: x }); }))),
      h("tbody", null, rows.map(function (cells) {
        return h("tr", null, cells.map(function (c) { return h("td", null, c); }));
      }))));
  }

  function reload() {
    return Promise.all([api("GET", "/services"), api("GET", "/experts"), api("GET", "/settings"), checklistDoc()])
      .then(function (r) {
        state.services = r[0].services;
        state.experts = r[1].experts;
        state.settings = r[2];
        state.checklist = r[3];
      });
  }

  // The first-run checklist (GET /checklist), or null: a server without the endpoint
  // (404) or any failure shows no checklist rather than an error.
  function checklistDoc() {
    return api("GET", "/checklist").then(function (b) { return (b && b.checklist) || null; },
      function () { return null; });
  }

  // ------------------------------------------------------------------ modal dialogs

  // What Tab may reach inside a dialog (visible, enabled).
  function focusables(root) {
    return Array.prototype.filter.call(root.querySelectorAll(
      "button, [href], input, select, textarea, [tabindex]:not([tabindex='-1'])"), function (el) {
      return !el.disabled && !el.hidden && el.getClientRects().length > 0;
    });
  }

  // Shows `dlg` as a modal <dialog>: the page behind is inert, Escape closes it, Tab and
  // Shift+Tab cycle inside it (a focus trap, also where showModal is missing), and when it
  // closes it is removed and the focus goes back to `opener` -- unless `onClose` returns
  // false (it moved the focus itself). `first` gets the focus when it opens.
  function showDialog(dlg, opener, first, onClose) {
    dlg.addEventListener("keydown", function (ev) {
      if (ev.key === "Escape" && typeof dlg.showModal !== "function") { ev.preventDefault(); dlg.close(); return; }
      if (ev.key !== "Tab") return;
      var items = focusables(dlg);
      if (!items.length) { ev.preventDefault(); return; }
      var a = items[0], z = items[items.length - 1];
      if (ev.shiftKey && (document.activeElement === a || !dlg.contains(document.activeElement))) { ev.preventDefault(); z.focus(); }
      else if (!ev.shiftKey && document.activeElement === z) { ev.preventDefault(); a.focus(); }
    });
    dlg.addEventListener("close", function () {
      dlg.remove();
      var back = onClose ? onClose() : true;
      if (back !== false && opener && document.body.contains(opener)) opener.focus();
    });
    document.body.appendChild(dlg);
    if (typeof dlg.showModal === "function") dlg.showModal();
    else {
      dlg.setAttribute("open", ""); dlg.setAttribute("role", "dialog"); dlg.setAttribute("aria-modal", "true");
      if (typeof dlg.close !== "function") dlg.close = function () { dlg.removeAttribute("open"); dlg.dispatchEvent(new Event("close")); };
    }
    if (first) first.focus();
    return dlg;
  }

  // The in-page stand-in for the browser's confirm box, in the Shopify admin's idiom (a
  // Polaris modal: a title, one sentence, a plain "Cancel" and the action's own button,
  // critical -- red -- for what destroys). Resolves true when the merchant confirms, false
  // when they cancel, press Escape or close it. The safe choice has the focus first.
  function confirmDialog(opts) {
    return new Promise(function (resolve) {
      var id = uid("confirm");
      var answer = false;
      var cancel = h("button", { type: "button", class: "plain" }, opts.cancelLabel || "Cancel");
      var go = h("button", { type: "button", class: opts.destructive ? "critical" : "primary" }, opts.confirmLabel);
      var dlg = h("dialog", { class: "dialog confirm-dialog", "aria-labelledby": id + "-title", "aria-describedby": id + "-body" },
        h("h2", { id: id + "-title", text: opts.title }),
        h("p", { id: id + "-body", text: opts.body }),
        h("div", { class: "actions dialog-footer" }, cancel, go));
      cancel.addEventListener("click", function () { dlg.close(); });
      go.addEventListener("click", function () { answer = true; dlg.close(); });
      showDialog(dlg, opts.opener, cancel, function () {
        resolve(answer);
        return !answer;  // confirmed: what follows redraws and places the focus
      });
    });
  }

  // ------------------------------------------------------------------ per-field errors

  // Where a form's errors go. The server's validation messages start with the API name
  // of the field they are about ("seats must be between 1 and 1000", "limits.day must
  // be ...", "questions[1].label may not be empty"): the longest registered name that a
  // message starts with (followed by a space, ".", "[" or ":") owns the error, which is
  // shown next to its input (aria-invalid, aria-describedby) with the field's label in
  // place of the API name. Any other error goes to the form's own alert.
  function fieldErrors() {
    var slots = {};
    var formError = h("p", { class: "form-error", role: "alert", hidden: true });

    function add(name, input, label, helpId) {
      var error = h("p", { class: "field-error", id: uid("err"), hidden: true });
      slots[name] = { input: input, error: error, label: label, help: helpId || "" };
      return error;
    }

    // Forget the slots whose names start with `prefix` (a part of the form redrawn).
    function drop(prefix) {
      Object.keys(slots).forEach(function (name) { if (name.slice(0, prefix.length) === prefix) delete slots[name]; });
    }

    function clear() {
      formError.hidden = true; formError.textContent = "";
      Object.keys(slots).forEach(function (name) {
        var s = slots[name];
        s.error.hidden = true; s.error.textContent = "";
        s.input.removeAttribute("aria-invalid");
        if (s.help) s.input.setAttribute("aria-describedby", s.help);
        else s.input.removeAttribute("aria-describedby");
      });
    }

    function owner(err) {
      if (err && err.field && slots[err.field]) return err.field;
      var message = (err && err.message) || "", best = null;
      Object.keys(slots).forEach(function (name) {
        if (message.slice(0, name.length) !== name) return;
        var next = message.charAt(name.length);
        if (next !== "" && " .[:".indexOf(next) < 0) return;
        if (!best || name.length > best.length) best = name;
      });
      return best;
    }

    function show(err) {
      clear();
      var message = (err && err.message) ? err.message : String(err);
      var name = owner(err);
      if (!name) { formError.textContent = message; formError.hidden = false; return; }
      var s = slots[name], rest = message.slice(name.length);
      var text = s.label && (rest.charAt(0) === " " || rest.charAt(0) === ":") ? s.label + rest : message;
      s.error.textContent = text.charAt(0).toUpperCase() + text.slice(1);
      s.error.hidden = false;
      s.input.setAttribute("aria-invalid", "true");
      s.input.setAttribute("aria-describedby", (s.error.id + " " + s.help).trim());
      s.input.focus();
    }

    // A number input holding text that is no number (the browser reports it as ""):
    // said next to the field before anything is sent.
    function badNumber() {
      var hit = null;
      Object.keys(slots).forEach(function (name) {
        var input = slots[name].input;
        if (!hit && input.type === "number" && input.validity && input.validity.badInput) hit = name;
      });
      if (hit) show({ message: hit + " must be a whole number" });
      return !!hit;
    }

    return { add: add, drop: drop, clear: clear, show: show, badNumber: badNumber, formError: formError };
  }

  // A labelled field whose server errors are shown right below it.
  function fieldFor(errs, name, label, input, help) {
    var node = field(label, input, help);
    node.appendChild(errs.add(name, input, label, help ? input.id + "-help" : ""));
    return node;
  }

  function checkField(errs, name, label, input, help) {
    input.id = input.id || uid("chk");
    var hid = help ? input.id + "-help" : "";
    if (hid) input.setAttribute("aria-describedby", hid);
    return h("div", { class: "field" }, h("label", { class: "check", for: input.id }, input, " " + label),
      help ? h("p", { class: "help", id: hid, text: help }) : null, errs.add(name, input, label, hid));
  }

  function numberInput(id, value, min, max) {
    var input = h("input", { type: "number", id: id, min: min, max: max, step: "1", inputmode: "numeric" });
    input.value = value === null || value === undefined ? "" : String(value);
    return input;
  }

  function numberOf(input) { var v = input.value.trim(); return v === "" ? null : Number(v); }

  // ------------------------------------------------------------------ limits

  var LIMIT_PERIODS = [["day", "Per day"], ["week", "Per week (Monday to Sunday)"], ["month", "Per calendar month"]];

  // Day / ISO week / month caps on sessions, each optional (empty = no limit), counted in
  // the expert's time zone. Returns { node, value() } with value() as the API's object.
  function limitsFieldset(prefix, errs, value, legend, help) {
    var inputs = {};
    var grid = h("div", { class: "grid" });
    LIMIT_PERIODS.forEach(function (p) {
      var input = numberInput(prefix + "-limit-" + p[0], value && value[p[0]], "1", null);
      input.setAttribute("placeholder", "No limit");
      inputs[p[0]] = input;
      grid.appendChild(fieldFor(errs, "limits." + p[0], p[1], input));
    });
    var box = h("fieldset", { class: "limits", id: prefix + "-limits" }, h("legend", { text: legend }),
      h("p", { class: "help", text: help }), grid, errs.add("limits", inputs.day, legend));
    return { node: box, value: function () {
      var out = {};
      LIMIT_PERIODS.forEach(function (p) { var v = numberOf(inputs[p[0]]); if (v !== null) out[p[0]] = v; });
      return out;
    } };
  }

  function limitsText(limits) {
    var parts = [];
    LIMIT_PERIODS.forEach(function (p) { if (limits && limits[p[0]]) parts.push(limits[p[0]] + "/" + p[0]); });
    return parts.join(", ") || "—";
  }

  // ------------------------------------------------------------------ home

  // The business at a glance (GET /admin/api/stats): bookings and revenue per ISO week
  // and the fill rate per expert as small SVG charts drawn here (no library), the
  // refunds waiting, the cancellations and today's bookings. Each chart is decorative
  // to assistive technology: its numbers are in a visually hidden table beside it (the
  // text alternative). Every card keeps its size while the numbers load (the charts are
  // drawn empty first, with the same viewBox), so nothing moves when they arrive.
  var HOME_PERIODS = [["4w", "4 weeks", 4], ["8w", "8 weeks", 8], ["6m", "6 months", 26]];
  var SVG_NS = "http://www.w3.org/2000/svg";
  // Charts are drawn in CSS pixels at the width of their card (measured when drawn, and
  // again when the window is resized), so their text is always the page's size.
  var CHART_H = 180, PLOT_LEFT = 64, PLOT_TOP = 12, PLOT_BOTTOM = 26;
  var homeRun = 0, homeRedraw = null;

  function widthOf(node) { return Math.max(240, Math.round(node.clientWidth || 400)); }

  function svg(tag, attrs) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c !== null && c !== undefined) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  }

  // The smallest 1, 2, 2.5 or 5 x 10^k at or above v (the top of a chart's axis).
  function niceMax(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log(v) / Math.LN10));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v - 1e-9) return steps[i] * p;
    return 10 * p;
  }

  // Vertical bars, one per item { label, value, title, current }; `fmt` writes an axis
  // value; `whole` says the values are counts (no half-way grid line at 2.5 bookings).
  function columnChart(items, fmt, whole, width) {
    var box = svg("svg", { viewBox: "0 0 " + width + " " + CHART_H, class: "chart-svg",
      "aria-hidden": "true", focusable: "false" });
    var top = niceMax(Math.max.apply(null, items.map(function (it) { return it.value; }).concat([0])));
    var plotH = CHART_H - PLOT_TOP - PLOT_BOTTOM, plotW = width - PLOT_LEFT - 8;
    [0, 0.5, 1].forEach(function (f) {
      if (f === 0.5 && whole && (top / 2) % 1) return;
      var y = PLOT_TOP + plotH * (1 - f);
      box.appendChild(svg("line", { x1: PLOT_LEFT, x2: width - 8, y1: y, y2: y, class: f ? "grid-line" : "axis-line" }));
      box.appendChild(svg("text", { x: PLOT_LEFT - 6, y: y + 4, "text-anchor": "end", class: "axis-label" }, fmt(top * f)));
    });
    var n = Math.max(items.length, 1), slot = plotW / n, bar = Math.max(3, Math.min(36, slot * 0.7));
    var every = Math.ceil(n / Math.max(1, Math.floor(plotW / 56)));
    items.forEach(function (it, i) {
      var height = plotH * it.value / top, x = PLOT_LEFT + slot * i + (slot - bar) / 2;
      if (it.value > 0) {
        box.appendChild(svg("rect", { x: x, y: PLOT_TOP + plotH - height, width: bar, height: height, rx: 2,
          class: it.current ? "bar current" : "bar" }, svg("title", null, it.title)));
      }
      if (i % every === 0) {
        box.appendChild(svg("text", { x: PLOT_LEFT + slot * i + slot / 2, y: CHART_H - 8, "text-anchor": "middle",
          class: "axis-label" }, it.label));
      }
    });
    return box;
  }

  var ROW_H = 34;

  function rowsHeight(n) { return Math.max(1, n) * ROW_H + 8; }

  // Horizontal bars for shares (0..1, more is drawn to the end): one row per item
  // { label, value (null: nothing offered), text }.
  function shareChart(items, rows, width) {
    var height = rowsHeight(rows), nameW = Math.min(200, Math.round(width * 0.35)), barW = width - nameW - 72;
    var chars = Math.max(6, Math.floor(nameW / 7.5));
    var box = svg("svg", { viewBox: "0 0 " + width + " " + height, class: "chart-svg",
      "aria-hidden": "true", focusable: "false" });
    items.forEach(function (it, i) {
      var y = 8 + i * ROW_H, name = it.label.length > chars ? it.label.slice(0, chars - 1) + "…" : it.label;
      box.appendChild(svg("text", { x: nameW - 10, y: y + 17, "text-anchor": "end", class: "row-label" }, name));
      box.appendChild(svg("rect", { x: nameW, y: y + 4, width: barW, height: 18, rx: 3, class: "track" }));
      if (it.value) {
        box.appendChild(svg("rect", { x: nameW, y: y + 4, width: barW * Math.min(1, it.value), height: 18, rx: 3,
          class: "bar" }, svg("title", null, it.label + ": " + it.text)));
      }
      box.appendChild(svg("text", { x: nameW + barW + 8, y: y + 17, class: "row-value" }, it.text));
    });
    return box;
  }

  // A visually hidden table: the text alternative of a chart.
  function hiddenTable(caption, headers, rows) {
    return h("div", { class: "visually-hidden" }, h("table", null, h("caption", { text: caption }),
      h("thead", null, h("tr", null, headers.map(function (x) { return h("th", { scope: "col", text: x }); }))),
      h("tbody", null, rows.map(function (cells) {
        return h("tr", null, cells.map(function (c, i) { return h(i ? "td" : "th", i ? null : { scope: "row" }, c); }));
      }))));
  }

  function chartCard(id, title) {
    var heading = h("h3", { id: id + "-title", text: title });
    var note = h("p", { class: "chart-note", id: id + "-note" }, "\u00a0");
    var plot = h("div", { class: "chart", id: id + "-chart" });
    var alt = h("div", { id: id + "-table" });
    var card = h("section", { class: "card chart-card", "aria-labelledby": id + "-title" }, heading, note, plot, alt);
    return { node: card, heading: heading, note: note, plot: plot, alt: alt };
  }

  function counterCard(id, title) {
    var value = h("p", { class: "counter-value", id: id + "-value", text: "—" });
    var note = h("p", { class: "counter-note", id: id + "-note" }, "\u00a0");
    return { node: h("section", { class: "card counter", "aria-labelledby": id + "-title" },
      h("h3", { id: id + "-title", text: title }), value, note), value: value, note: note };
  }

  function homeRange(weeks) {
    var start = monday(todayIn(shopTz()));
    return { from: addDays(start, -7 * (weeks - 1)), to: addDays(start, 13) };
  }

  function dayLabel(ymd, opts) {
    var o = { timeZone: "UTC" };
    Object.keys(opts).forEach(function (k) { o[k] = opts[k]; });
    return new Intl.DateTimeFormat(undefined, o).format(new Date(ymd + "T12:00:00Z"));
  }

  function count(n) { return new Intl.NumberFormat().format(n); }

  function percent(r) {
    return new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 }).format(r);
  }

  // The currency the revenue chart shows: the one most weeks were paid in (ties: A-Z).
  function mainCurrency(weeks) {
    var seen = {};
    weeks.forEach(function (w) { Object.keys(w.revenue || {}).forEach(function (c) { seen[c] = (seen[c] || 0) + 1; }); });
    return Object.keys(seen).sort(function (a, b) { return seen[b] - seen[a] || (a < b ? -1 : 1); })[0] || null;
  }

  function home(focus) {
    var tz = shopTz();
    if (!state.homePeriod) state.homePeriod = "8w";
    var heading = section("Home", "How the business is doing: bookings count in the week they take place, " +
      "weeks run Monday to Sunday in the shop's time zone (" + tz + ").");
    var range = h("p", { class: "range", id: "home-range", "aria-live": "polite" }, "\u00a0");
    var switcher = h("fieldset", { class: "period-switch" }, h("legend", { text: "Period" }),
      HOME_PERIODS.map(function (p) {
        var input = h("input", { type: "radio", name: "home-period", id: "home-period-" + p[0], value: p[0],
          checked: state.homePeriod === p[0],
          onchange: function () { if (this.checked) { state.homePeriod = p[0]; load(); } } });
        return h("label", { class: "check", for: input.id }, input, " " + p[1]);
      }));
    // The checklist first, drawn from what was fetched before the page (so nothing moves
    // down under the merchant); fetched again, and redrawn only if it changed.
    var checklistBox = h("div", { id: "home-checklist" });
    main.appendChild(checklistBox);
    drawChecklist(checklistBox, state.checklist);
    var drawn = JSON.stringify(state.checklist);
    checklistDoc().then(function (doc) {
      state.checklist = doc;
      if (JSON.stringify(doc) !== drawn && document.body.contains(checklistBox)) drawChecklist(checklistBox, doc);
    });
    main.appendChild(h("div", { class: "toolbar home-toolbar" }, switcher, range));

    var bookingsC = counterCard("home-bookings-total", "Bookings");
    var revenueC = counterCard("home-revenue-total", "Revenue");
    var cancelC = counterCard("home-cancellations", "Cancellations");
    var refundC = counterCard("home-refunds", "Refunds waiting");
    main.appendChild(h("div", { class: "home-counters" }, bookingsC.node, revenueC.node, cancelC.node, refundC.node));

    var perWeek = chartCard("home-bookings", "Bookings per week");
    var revenue = chartCard("home-revenue", "Revenue per week");
    var fill = chartCard("home-fill", "Fill rate per expert");
    // The fill chart's height is known before its numbers: one row per expert.
    fill.plot.style.height = rowsHeight(state.experts.length) + "px";
    main.appendChild(h("div", { class: "home-charts" }, perWeek.node, revenue.node));
    main.appendChild(fill.node);
    perWeek.plot.appendChild(columnChart([], count, true, widthOf(perWeek.plot)));
    revenue.plot.appendChild(columnChart([], count, false, widthOf(revenue.plot)));
    fill.plot.appendChild(shareChart([], state.experts.length, widthOf(fill.plot)));

    var todayList = h("div", { class: "today-list" }, h("p", { class: "empty", text: "Loading…" }));
    main.appendChild(h("section", { class: "card today", "aria-labelledby": "home-today-title" },
      h("h3", { id: "home-today-title", text: "Upcoming today" }), todayList));

    function load() {
      var run = ++homeRun, weeks = 8;
      HOME_PERIODS.forEach(function (p) { if (p[0] === state.homePeriod) weeks = p[2]; });
      var r = homeRange(weeks);
      main.setAttribute("aria-busy", "true");
      api("GET", "/stats?from=" + r.from + "&to=" + r.to).then(function (body) {
        if (run !== homeRun) return;  // another period was asked for since
        main.removeAttribute("aria-busy");
        if (!document.getElementById("home-range")) return;  // the merchant went elsewhere
        show(body);
        homeRedraw = function () { if (document.getElementById("home-range")) show(body); };
      }).catch(function (e) { if (run === homeRun) { main.removeAttribute("aria-busy"); fail(e); } });
    }

    function show(body) {
      var weeks = body.weeks || [], thisWeek = monday(todayIn(tz));
      var span = dayLabel(body.from, { dateStyle: "medium" }) + " – " + dayLabel(body.to, { dateStyle: "medium" });
      range.textContent = "Showing " + span + ".";

      var total = 0, cancelled = body.cancellations || 0, totals = {};
      weeks.forEach(function (w) {
        total += w.bookings;
        Object.keys(w.revenue || {}).forEach(function (c) { totals[c] = (totals[c] || 0) + Number(w.revenue[c]); });
      });
      bookingsC.value.textContent = count(total);
      bookingsC.note.textContent = "pending and confirmed";
      var currencies = Object.keys(totals).sort();
      revenueC.value.textContent = currencies.length ? money(totals[currencies[0]], currencies[0]) : "—";
      revenueC.note.textContent = currencies.length > 1
        ? "also " + currencies.slice(1).map(function (c) { return money(totals[c], c); }).join(", ")
        : "paid bookings";
      cancelC.value.textContent = count(cancelled);
      cancelC.note.textContent = "of bookings in the period";
      var rf = body.refunds || {};
      refundC.value.textContent = count(body.refunds_waiting || 0);
      refundC.note.textContent = "";
      var parts = [];
      if (rf.queued) parts.push(count(rf.queued) + " queued in Shopify");
      if (rf.failed) parts.push(count(rf.failed) + " failed");
      if (rf.by_hand) parts.push(count(rf.by_hand) + " to refund by hand");
      refundC.note.appendChild(document.createTextNode(parts.length ? parts.join(", ") + " · " : "nothing to do · "));
      refundC.note.appendChild(h("a", { href: "#refunds", text: "Refund log" }));

      var weekLabel = function (w) { return dayLabel(w.start, { month: "short", day: "numeric" }); };
      var weekName = function (w) { return w.week + " (from " + dayLabel(w.start, { dateStyle: "medium" }) + ")"; };
      perWeek.plot.textContent = "";
      perWeek.plot.appendChild(columnChart(weeks.map(function (w) {
        return { label: weekLabel(w), value: w.bookings, current: w.start === thisWeek,
          title: weekName(w) + ": " + w.bookings + " bookings" };
      }), count, true, widthOf(perWeek.plot)));
      perWeek.note.textContent = "The darker bar is this week.";
      perWeek.alt.textContent = "";
      perWeek.alt.appendChild(hiddenTable("Bookings per week", ["Week", "Bookings", "Cancelled"],
        weeks.map(function (w) { return [weekName(w), count(w.bookings), count(w.cancelled)]; })));

      var cur = mainCurrency(weeks);
      revenue.heading.textContent = cur ? "Revenue per week (" + cur + ")" : "Revenue per week";
      revenue.plot.textContent = "";
      revenue.plot.appendChild(columnChart(weeks.map(function (w) {
        var v = cur && w.revenue[cur] ? Number(w.revenue[cur]) : 0;
        return { label: weekLabel(w), value: v, current: w.start === thisWeek,
          title: weekName(w) + ": " + (cur ? money(v, cur) : "0") };
      }), function (v) { return cur ? money(v, cur) : count(v); }, false, widthOf(revenue.plot)));
      revenue.note.textContent = !cur ? "No paid bookings in the period."
        : (currencies.length > 1 ? "Other currencies are listed under Revenue above." : "Paid bookings only.");
      revenue.alt.textContent = "";
      var revCurrencies = currencies.length ? currencies : [];
      revenue.alt.appendChild(hiddenTable("Revenue per week", ["Week"].concat(revCurrencies.length ? revCurrencies : ["Revenue"]),
        weeks.map(function (w) {
          return [weekName(w)].concat(revCurrencies.length
            ? revCurrencies.map(function (c) { return w.revenue[c] ? money(w.revenue[c], c) : "—"; }) : ["—"]);
        })));

      var experts = body.experts || [];
      fill.plot.textContent = "";
      fill.plot.style.height = rowsHeight(experts.length) + "px";
      fill.plot.appendChild(shareChart(experts.map(function (x) {
        return { label: x.name, value: x.fill_rate,
          text: x.fill_rate === null ? "no hours" : percent(x.fill_rate) };
      }), experts.length, widthOf(fill.plot)));
      fill.note.textContent = experts.length ? "Booked time over the working hours offered in the period." : "No experts yet.";
      fill.alt.textContent = "";
      fill.alt.appendChild(hiddenTable("Fill rate per expert", ["Expert", "Fill rate", "Booked", "Offered"],
        experts.map(function (x) {
          return [x.name, x.fill_rate === null ? "no hours offered" : percent(x.fill_rate),
            count(Math.round(x.booked_minutes / 6) / 10) + " h", count(Math.round(x.offered_minutes / 6) / 10) + " h"];
        })));

      todayList.textContent = "";
      var today = body.today || [];
      if (!today.length) todayList.appendChild(h("p", { class: "empty", text: "No bookings today." }));
      else {
        todayList.appendChild(h("ul", null, today.map(function (b) {
          var t = when(b.start, { timeStyle: "short" }) + "–" + when(b.end, { timeStyle: "short" });
          return h("li", null, h("span", { class: "today-time", text: t }),
            h("span", { class: "today-what", text: (b.service_title || "A booking") + " with " + (b.expert_name || "an expert") }),
            h("span", { class: "today-who", text: (b.customer_name || "A customer") + (b.seats > 1 ? " (" + b.seats + " seats)" : "") }),
            b.status === "pending" ? h("span", { class: "badge", text: "pending" }) : null);
        })));
      }
    }

    load();
    if (focus) heading.focus();
  }

  var CHECK_STATES = { "true": ["Done", "badge ok"], "false": ["To do", "badge"], "null": ["Not checked", "badge"] };

  // The first-run checklist card: each step, whether it is done, and a link to where it
  // is done (its section of this page, or `url` -- the theme editor -- in a new tab). No
  // card when there is no checklist, or nothing known is left to do (every step done, or
  // done except those that could not be checked).
  function drawChecklist(box, doc) {
    box.textContent = "";
    var steps = (doc && doc.steps) || [];
    if (!steps.length || !steps.some(function (st) { return st.done === false; })) return;
    var done = steps.filter(function (st) { return st.done === true; }).length;
    box.appendChild(h("section", { class: "card checklist", "aria-labelledby": "checklist-title" },
      h("h3", { id: "checklist-title", text: "Set up consultbook" }),
      h("p", { class: "progress", id: "checklist-progress", text: done + " of " + steps.length + " steps done" }),
      h("ol", { "aria-describedby": "checklist-progress" }, steps.map(function (st) {
        var look = CHECK_STATES[String(st.done)] || CHECK_STATES["null"];
        var title = st.title || st.id;
        var target = st.url
          ? h("a", { href: st.url, target: "_blank", rel: "noopener", text: title + " (opens in a new tab)" })
          : (st.section && SECTIONS.indexOf(st.section) >= 0 ? h("a", { href: "#" + st.section, text: title }) : h("span", { text: title }));
        return h("li", { "data-step": st.id, "data-done": String(st.done) },
          h("span", { class: "step-state " + look[1], text: look[0] }), h("span", { class: "step-title" }, target),
          st.detail ? h("p", { class: "step-detail", text: st.detail }) : null);
      }))));
  }

  // Charts follow their card's width: redrawn (from the numbers already fetched) once
  // the window has stopped resizing.
  var homeResize = null;
  window.addEventListener("resize", function () {
    clearTimeout(homeResize);
    homeResize = setTimeout(function () { if (homeRedraw) homeRedraw(); }, 150);
  });

  // ------------------------------------------------------------------ services

  var SERVICE_FIELDS = [
    ["title", "Title", "text", null],
    ["duration_minutes", "Duration (minutes)", "number", null],
    ["interval_minutes", "Start a slot every (minutes)", "number", "Leave empty to use the duration."],
    ["buffer_before_minutes", "Buffer before (minutes)", "number", null],
    ["buffer_after_minutes", "Buffer after (minutes)", "number", null],
    ["min_notice_minutes", "Minimum notice (minutes)", "number", null],
    ["max_days_ahead", "Bookable up to (days ahead)", "number", null],
    ["product_id", "Shopify product id", "text", null],
    ["variant_id", "Shopify variant id", "text", "The variant that is added to the cart."]
  ];

  var ASSIGNMENTS = [
    ["least_booked", "Least booked",
     "The expert with the fewest bookings of this service in the last 30 days, divided by their weight, gets the next one; " +
     "on a tie, whoever was booked least recently."],
    ["priority", "By priority",
     "The free expert with the highest priority gets it; experts of equal priority share as under least booked."]
  ];

  var QUESTION_TYPES = [["text", "Short text"], ["textarea", "Long text"], ["choice", "One of a list"],
                        ["checkbox", "Yes / no (checkbox)"], ["email", "Email address"], ["phone", "Phone number"]];

  function services(focus) {
    var heading = section("Services", "What customers can book. Each service is sold through a product variant.");
    var rows = state.services.map(function (s) {
      var seats = s.seats || 1;
      return [s.title, s.duration_minutes + " min", "every " + s.interval_minutes + " min",
        s.buffer_before_minutes + " / " + s.buffer_after_minutes + " min", s.min_notice_minutes + " min",
        s.max_days_ahead + " days", seats === 1 ? "1:1" : seats + " per session", limitsText(s.limits),
        String((s.questions || []).length), String(s.variant_id === null ? "—" : s.variant_id),
        h("span", { class: "row-actions" },
          h("button", { type: "button", "aria-label": "Edit " + s.title, onclick: function () { serviceForm(s); } }, "Edit"),
          h("button", { type: "button", class: "danger", "aria-label": "Delete " + s.title, "aria-haspopup": "dialog",
            onclick: function () {
              var btn = this;
              confirmDialog({ title: "Delete " + s.title + "?", opener: btn, destructive: true, confirmLabel: "Delete service",
                body: "Customers can no longer book it. Existing bookings keep it." }).then(function (yes) {
                if (!yes) return;
                api("DELETE", "/services/" + s.id).then(reload).then(function () { services(true); say("Service deleted."); })
                  .catch(function (e) { fail(e); btn.focus(); });
              });
            } }, "Delete"))];
    });
    main.appendChild(table("Services", ["Title", "Duration", "Grid", "Buffers", "Notice", "Horizon", "Seats", "Limits",
      "Questions", "Variant", "Actions"], rows, "No services yet. Add one below."));
    main.appendChild(h("div", { id: "service-form" }));
    serviceForm(null);
    if (focus) heading.focus();
  }

  // An id for a question from its label: a-z, 0-9 and _, at most 32, unique in `taken`.
  function questionId(label, taken) {
    var base = String(label).toLowerCase().normalize("NFKD").replace(/[\u0300-\u036f]/g, "")
      .replace(/[^a-z0-9]+/g, "_").replace(/^_+|_+$/g, "").slice(0, 32).replace(/_+$/, "") || "question";
    var id = base, n = 2;
    while (taken.indexOf(id) >= 0) { var tail = "_" + n++; id = base.slice(0, 32 - tail.length) + tail; }
    return id;
  }

  // The question editor: add, remove and reorder questions; each has a label, an id
  // (made from the label until the merchant edits it), an answer type, required, and
  // for "one of a list" its choices, one per line. `list` is edited in place.
  function questionEditor(errs, list) {
    var holder = h("div", { class: "question-list" });
    var add = h("button", { type: "button", onclick: function () {
      list.push({ id: "", label: "", type: "text", required: false, choices: [], auto: true });
      draw(list.length - 1, "label");
    } }, "Add a question");
    var box = h("fieldset", { class: "questions" }, h("legend", { text: "Questions before booking" }),
      h("p", { class: "help", text: "Asked on the storefront before the time is held; the answers are kept with the booking. At most 20." }),
      holder, errs.add("questions", add, "Questions"), h("div", { class: "actions" }, add));

    function others(i) { return list.filter(function (q, j) { return j !== i; }).map(function (q) { return q.id; }); }

    function draw(focusIndex, focusWhat) {
      errs.drop("questions[");
      holder.textContent = "";
      if (!list.length) holder.appendChild(h("p", { class: "off", text: "No questions: customers book without answering any." }));
      list.forEach(function (q, i) { holder.appendChild(row(q, i)); });
      if (focusIndex === undefined) return;
      var target = null;
      if (focusIndex === null) target = add;
      else {
        var r = holder.querySelector('[data-question="' + focusIndex + '"]');
        target = r && r.querySelector('[data-focus="' + focusWhat + '"]');
        if (target && target.disabled) target = r.querySelector('[data-focus="label"]');
      }
      if (target) target.focus();
    }

    function row(q, i) {
      var n = i + 1, key = "questions[" + i + "]", pfx = uid("q" + n);
      var id = h("input", { id: pfx + "-id", value: q.id, maxlength: "32", spellcheck: "false", autocapitalize: "off",
        autocomplete: "off", "data-focus": "id", oninput: function () { q.id = this.value.trim(); q.auto = q.id === ""; } });
      var label = h("input", { id: pfx + "-label", value: q.label, maxlength: "200", autocomplete: "off", "data-focus": "label",
        oninput: function () {
          q.label = this.value;
          if (q.auto) { q.id = this.value.trim() ? questionId(this.value, others(i)) : ""; id.value = q.id; }
        } });
      var type = h("select", { id: pfx + "-type", onchange: function () { q.type = this.value; choicesBox.hidden = q.type !== "choice"; } },
        QUESTION_TYPES.map(function (t) { return h("option", { value: t[0], text: t[1] }); }));
      type.value = q.type;
      var required = h("input", { type: "checkbox", id: pfx + "-required", checked: q.required,
        onchange: function () { q.required = this.checked; } });
      var choices = h("textarea", { id: pfx + "-choices", rows: "4", oninput: function () {
        q.choices = this.value.split("\n").map(function (c) { return c.trim(); }).filter(Boolean);
      } });
      choices.value = (q.choices || []).join("\n");
      var choicesBox = fieldFor(errs, key + ".choices", "Question " + n + " choices (one per line)", choices, "What the customer picks one of.");
      choicesBox.hidden = q.type !== "choice";
      function move(by, what) {
        return function () { var t = list[i]; list[i] = list[i + by]; list[i + by] = t; draw(i + by, what); };
      }
      return h("fieldset", { class: "question card", "data-question": String(i) },
        h("legend", { text: "Question " + n }),
        h("div", { class: "grid" },
          fieldFor(errs, key + ".label", "Question " + n + " label", label, "What the customer reads, e.g. “What should we prepare?”"),
          fieldFor(errs, key + ".id", "Question " + n + " id", id, "a–z, 0–9 and _; made from the label until you change it."),
          fieldFor(errs, key + ".type", "Question " + n + " answer type", type),
          checkField(errs, key + ".required", "Question " + n + " must be answered", required)),
        choicesBox,
        errs.add(key, label, "Question " + n),
        h("div", { class: "row-actions" },
          h("button", { type: "button", "data-focus": "up", disabled: i === 0, "aria-label": "Move question " + n + " up",
            onclick: move(-1, "up") }, "Move up"),
          h("button", { type: "button", "data-focus": "down", disabled: i === list.length - 1,
            "aria-label": "Move question " + n + " down", onclick: move(1, "down") }, "Move down"),
          h("button", { type: "button", class: "danger", "aria-label": "Remove question " + n, onclick: function () {
            list.splice(i, 1);
            if (list.length) draw(Math.min(i, list.length - 1), "label"); else draw(null);
          } }, "Remove")));
    }

    draw();
    return box;
  }

  function questionsDoc(list) {
    return list.map(function (q) {
      var doc = { id: q.id, label: q.label.trim(), type: q.type, required: !!q.required };
      if (q.type === "choice") doc.choices = (q.choices || []).slice();
      return doc;
    });
  }

  function serviceForm(service) {
    var box = document.getElementById("service-form");
    box.textContent = "";
    var inputs = {};
    var errs = fieldErrors();
    var questions = ((service && service.questions) || []).map(function (q) {
      return { id: q.id, label: q.label, type: q.type, required: !!q.required, choices: (q.choices || []).slice(), auto: false };
    });
    var limits = limitsFieldset("svc", errs, service ? service.limits : null, "Limits per expert",
      "At most this many sessions of this service per expert, counted in the expert's time zone. Empty: no limit.");
    var seats = numberInput("svc-seats", service ? (service.seats || 1) : 1, "1", "1000");
    var radios = {};
    var assignment = h("fieldset", { class: "assignment" }, h("legend", { text: "When a customer asks for any expert" }),
      ASSIGNMENTS.map(function (a) {
        var id = uid("assign-" + a[0]);
        var radio = h("input", { type: "radio", name: "assignment", id: id, value: a[0], "aria-describedby": id + "-help",
          checked: ((service && service.assignment) || "least_booked") === a[0] });
        radios[a[0]] = radio;
        return h("div", { class: "field" }, h("label", { class: "check", for: id }, radio, " " + a[1]),
          h("p", { class: "help", id: id + "-help", text: a[2] }));
      }));
    assignment.appendChild(errs.add("assignment", radios.least_booked, "Assignment"));
    var form = h("form", { class: "card", novalidate: true, "aria-labelledby": "service-form-title", onsubmit: function (ev) {
      ev.preventDefault();
      errs.clear();
      if (errs.badNumber()) return;
      var doc = {};
      SERVICE_FIELDS.forEach(function (f) {
        var v = inputs[f[0]].value.trim();
        if (f[2] === "number") { if (v !== "") doc[f[0]] = Number(v); else if (f[0] === "interval_minutes") doc[f[0]] = null; }
        else if (f[0] === "title") doc.title = v;
        else doc[f[0]] = v === "" ? null : v;
      });
      doc.seats = numberOf(seats) === null ? 1 : numberOf(seats);
      doc.limits = limits.value();
      doc.assignment = radios.priority.checked ? "priority" : "least_booked";
      doc.questions = questionsDoc(questions);
      var req = service ? api("PATCH", "/services/" + service.id, doc) : api("POST", "/services", doc);
      req.then(reload).then(function () { services(); say(service ? "Service saved." : "Service added."); })
        .catch(function (e) { errs.show(e); });
    } }, h("h3", { id: "service-form-title", tabindex: "-1", text: service ? "Edit “" + service.title + "”" : "Add a service" }),
      errs.formError);
    var grid = h("div", { class: "grid" });
    SERVICE_FIELDS.forEach(function (f) {
      var input = h("input", { type: f[2] === "number" ? "number" : "text", id: "svc-" + f[0], name: f[0], min: f[2] === "number" ? "0" : null });
      var value = service ? service[f[0]] : { duration_minutes: 30, buffer_before_minutes: 0, buffer_after_minutes: 0, min_notice_minutes: 0, max_days_ahead: 60 }[f[0]];
      input.value = value === null || value === undefined ? "" : String(value);
      inputs[f[0]] = input;
      grid.appendChild(fieldFor(errs, f[0], f[1], input, f[3]));
    });
    form.appendChild(grid);
    form.appendChild(h("fieldset", { class: "capacity" }, h("legend", { text: "Capacity" }),
      h("div", { class: "grid" }, fieldFor(errs, "seats", "Seats per session", seats,
        "1 for a one-to-one call; more for a group session (a workshop for 8: 8). Each customer takes a seat."))));
    form.appendChild(limits.node);
    form.appendChild(assignment);
    form.appendChild(questionEditor(errs, questions));
    form.appendChild(h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary" }, service ? "Save service" : "Add service"),
      service ? h("button", { type: "button", onclick: function () { serviceForm(null); } }, "Cancel") : null));
    box.appendChild(form);
    if (service) form.querySelector("h3").focus();
  }

  // ------------------------------------------------------------------ experts

  function experts(focus) {
    var heading = section("Experts", "Who delivers the services, in which time zone.");
    var rows = state.experts.map(function (x) {
      return [x.name, x.email || "—", x.timezone,
        x.services.map(function (id) { return nameOf(state.services, id); }).join(", ") || "—",
        limitsText(x.limits), String(x.priority === undefined ? 50 : x.priority), String(x.weight === undefined ? 1 : x.weight),
        h("span", { class: "row-actions" },
          h("button", { type: "button", "aria-label": "Edit " + x.name, onclick: function () { expertForm(x); } }, "Edit"),
          h("button", { type: "button", "aria-label": "Working hours of " + x.name, onclick: function () {
            state.hoursExpert = x.id; location.hash = "#hours"; } }, "Hours"),
          h("button", { type: "button", class: "danger", "aria-label": "Delete " + x.name, "aria-haspopup": "dialog", onclick: function () {
            var btn = this;
            confirmDialog({ title: "Delete " + x.name + "?", opener: btn, destructive: true, confirmLabel: "Delete expert",
              body: "Customers can no longer book " + x.name + ". Existing bookings keep their expert." }).then(function (yes) {
              if (!yes) return;
              api("DELETE", "/experts/" + x.id).then(reload).then(function () { experts(true); say("Expert deleted."); })
                .catch(function (e) { fail(e); btn.focus(); });
            });
          } }, "Delete"))];
    });
    main.appendChild(table("Experts", ["Name", "Email", "Time zone", "Services", "Limits", "Priority", "Weight", "Actions"], rows,
      "No experts yet. Add one below."));
    main.appendChild(h("div", { id: "expert-form" }));
    expertForm(null);
    if (focus) heading.focus();
  }

  function expertForm(expert) {
    var box = document.getElementById("expert-form");
    box.textContent = "";
    var errs = fieldErrors();
    var name = h("input", { id: "exp-name", value: expert ? expert.name : "", required: true, "aria-required": "true" });
    var email = h("input", { id: "exp-email", type: "email", value: expert && expert.email ? expert.email : "" });
    var tz = zoneSelect("exp-tz", expert ? expert.timezone : "", true);
    var priority = numberInput("exp-priority", expert && expert.priority !== undefined ? expert.priority : 50, "0", "100");
    var weight = numberInput("exp-weight", expert && expert.weight !== undefined ? expert.weight : 1, "1", "100");
    var photo = h("input", { id: "exp-photo", type: "url", value: expert && expert.photo_url ? expert.photo_url : "",
      placeholder: "https://", spellcheck: "false", autocapitalize: "off" });
    var bio = h("textarea", { id: "exp-bio", rows: "3", maxlength: "500" });
    bio.value = expert && expert.bio ? expert.bio : "";
    var limits = limitsFieldset("exp", errs, expert ? expert.limits : null, "Limits across all services",
      "At most this many sessions of any service per day, week or month, in the expert's time zone. Empty: no limit.");
    var checks = state.services.map(function (s) {
      return h("label", { class: "check" }, h("input", { type: "checkbox", value: s.id,
        checked: expert ? expert.services.indexOf(s.id) >= 0 : true }), " " + s.title);
    });
    var offers = h("fieldset", null, h("legend", { text: "Offers" }), checks.length ? checks : h("p", { text: "Add a service first." }));
    var firstCheck = checks.length ? checks[0].querySelector("input") : name;
    offers.appendChild(errs.add("services", firstCheck, "Offers"));
    var form = h("form", { class: "card", novalidate: true, "aria-labelledby": "expert-form-title", onsubmit: function (ev) {
      ev.preventDefault();
      errs.clear();
      if (errs.badNumber()) return;
      var doc = { name: name.value.trim(), email: email.value.trim() || null, timezone: tz.value || null,
        services: checks.map(function (c) { return c.querySelector("input"); })
          .filter(function (i) { return i.checked; }).map(function (i) { return i.value; }),
        limits: limits.value(),
        priority: numberOf(priority) === null ? 50 : numberOf(priority),
        weight: numberOf(weight) === null ? 1 : numberOf(weight),
        photo_url: photo.value.trim() || null, bio: bio.value.trim() || null };
      var req = expert ? api("PATCH", "/experts/" + expert.id, doc) : api("POST", "/experts", doc);
      req.then(reload).then(function () { experts(); say(expert ? "Expert saved." : "Expert added."); })
        .catch(function (e) { errs.show(e); });
    } },
      h("h3", { id: "expert-form-title", tabindex: "-1", text: expert ? "Edit " + expert.name : "Add an expert" }),
      errs.formError,
      h("div", { class: "grid" }, fieldFor(errs, "name", "Name", name), fieldFor(errs, "email", "Email", email),
        fieldFor(errs, "timezone", "Time zone", tz)),
      offers,
      limits.node,
      h("fieldset", null, h("legend", { text: "When customers ask for any expert" }),
        h("div", { class: "grid" },
          fieldFor(errs, "priority", "Priority", priority,
            "0 to 100, default 50. For services that assign by priority: the highest free expert gets the booking."),
          fieldFor(errs, "weight", "Weight", weight,
            "1 to 100, default 1. For services that assign the least booked: weight 2 gets about twice the bookings of weight 1."))),
      h("fieldset", null, h("legend", { text: "On the storefront" }),
        h("div", { class: "grid" },
          fieldFor(errs, "photo_url", "Photo address", photo, "An https address of a picture of the expert. Optional."),
          fieldFor(errs, "bio", "Bio", bio, "A sentence or two about the expert, plain text, at most 500 characters. Optional."))),
      h("div", { class: "actions" },
        h("button", { type: "submit", class: "primary" }, expert ? "Save expert" : "Add expert"),
        expert ? h("button", { type: "button", onclick: function () { expertForm(null); } }, "Cancel") : null));
    box.appendChild(form);
    if (expert) form.querySelector("h3").focus();
  }

  // ------------------------------------------------------------------ working hours

  function hours(focus) {
    var heading = section("Working hours", "Weekly hours and date overrides, as wall-clock times in the expert's time zone. " +
      "“24:00” ends at midnight. A date override replaces that day's weekly hours; an override with no hours closes the day.");
    if (!state.experts.length) { main.appendChild(h("p", { class: "empty", text: "Add an expert first." })); return; }
    if (!state.experts.some(function (x) { return x.id === state.hoursExpert; })) state.hoursExpert = state.experts[0].id;
    var pick = h("select", { id: "hours-expert", onchange: function () { state.hoursExpert = this.value; hours(); } },
      state.experts.map(function (x) { return h("option", { value: x.id, text: x.name }); }));
    pick.value = state.hoursExpert;
    main.appendChild(field("Expert", pick));
    var holder = h("div", { id: "hours-editor" }, h("p", { text: "Loading…" }));
    main.appendChild(holder);
    var expert = state.experts.filter(function (x) { return x.id === state.hoursExpert; })[0];
    api("GET", "/experts/" + expert.id + "/schedule").then(function (doc) {
      var draft = { weekly: {}, overrides: (doc.overrides || []).map(function (o) { return { date: o.date, windows: o.windows.map(function (w) { return w.slice(); }) }; }) };
      DAYS.forEach(function (d) { draft.weekly[d[0]] = (doc.weekly[d[0]] || []).map(function (w) { return w.slice(); }); });
      hoursEditor(holder, expert, draft);
    }).catch(function (e) { holder.textContent = ""; fail(e); });
    if (focus) heading.focus();
  }

  function windowRows(label, windows, rerender) {
    var list = h("ul", { class: "windows" });
    windows.forEach(function (w, i) {
      var n = i + 1;
      var from = h("input", { class: "time", value: w[0], pattern: TIME, inputmode: "numeric", placeholder: "09:00",
        "aria-label": label + " window " + n + " from", oninput: function () { w[0] = this.value.trim(); } });
      var to = h("input", { class: "time", value: w[1], pattern: TIME, inputmode: "numeric", placeholder: "17:00",
        "aria-label": label + " window " + n + " until", oninput: function () { w[1] = this.value.trim(); } });
      list.appendChild(h("li", null, from, h("span", { "aria-hidden": "true", text: " – " }), to,
        h("button", { type: "button", class: "link", "aria-label": "Remove " + label + " window " + n,
          onclick: function () { windows.splice(i, 1); rerender(label); } }, "Remove")));
    });
    return list;
  }

  function hoursEditor(holder, expert, draft) {
    function rerender(focusLabel) {
      hoursEditor(holder, expert, draft);
      if (focusLabel) {
        var add = holder.querySelector('[data-add="' + focusLabel + '"]');
        var inputs = add && add.parentNode.querySelectorAll("input.time");
        var target = inputs && inputs.length ? inputs[inputs.length - 2] : add;
        if (target) target.focus();
      }
    }
    holder.textContent = "";
    holder.appendChild(h("p", { class: "help", text: "Times for " + expert.name + " are in " + expert.timezone + "." }));
    var weekly = h("fieldset", { class: "card" }, h("legend", { text: "Weekly hours" }));
    DAYS.forEach(function (d) {
      var windows = draft.weekly[d[0]];
      weekly.appendChild(h("div", { class: "day-row" },
        h("span", { class: "day-name", text: d[1] }),
        windows.length ? windowRows(d[1], windows, rerender) : h("span", { class: "off", text: "Not working" }),
        h("button", { type: "button", "data-add": d[1], "aria-label": "Add hours to " + d[1],
          onclick: function () { windows.push(windows.length ? ["", ""] : ["09:00", "17:00"]); rerender(d[1]); } }, "Add hours")));
    });
    holder.appendChild(weekly);

    var overrides = h("fieldset", { class: "card" }, h("legend", { text: "Date overrides" }));
    if (!draft.overrides.length) overrides.appendChild(h("p", { class: "off", text: "No overrides: every date follows the weekly hours." }));
    draft.overrides.forEach(function (o, i) {
      var label = "Override " + (i + 1);
      var date = h("input", { type: "date", value: o.date, "aria-label": label + " date", oninput: function () { o.date = this.value; } });
      overrides.appendChild(h("div", { class: "day-row" },
        date,
        o.windows.length ? windowRows(label, o.windows, rerender) : h("span", { class: "off", text: "Closed all day" }),
        h("button", { type: "button", "data-add": label, "aria-label": "Add hours to " + label,
          onclick: function () { o.windows.push(["09:00", "17:00"]); rerender(label); } }, "Add hours"),
        h("button", { type: "button", class: "danger", "aria-label": "Remove " + label,
          onclick: function () { draft.overrides.splice(i, 1); rerender(); } }, "Remove override")));
    });
    overrides.appendChild(h("button", { type: "button", onclick: function () {
      draft.overrides.push({ date: todayIn(expert.timezone), windows: [] }); rerender();
      var dates = holder.querySelectorAll('input[type="date"]');
      if (dates.length) dates[dates.length - 1].focus();
    } }, "Add a date override"));
    holder.appendChild(overrides);

    holder.appendChild(h("div", { class: "actions" }, h("button", { type: "button", class: "primary", onclick: function () {
      var doc = { weekly: {}, overrides: draft.overrides.map(function (o) { return { date: o.date, windows: o.windows }; }) };
      DAYS.forEach(function (d) { if (draft.weekly[d[0]].length) doc.weekly[d[0]] = draft.weekly[d[0]]; });
      api("PUT", "/experts/" + expert.id + "/schedule", doc).then(function () {
        say("Working hours of " + expert.name + " saved.");
      }).catch(fail);
    } }, "Save working hours")));
  }

  // ------------------------------------------------------------------ bookings

  function monday(ymd) {
    var day = new Date(ymd + "T12:00:00Z").getUTCDay(); // 0 = Sunday
    return addDays(ymd, -((day + 6) % 7));
  }

  // Who cancelled a booking (the booking's cancelled_by), said in the list.
  var CANCELLED_BY = { merchant: "Cancelled by the shop", customer: "Cancelled by the customer",
                       order: "Cancelled with the order" };

  // A booking's intake answers as "label: answer", in the order of the service's
  // questions (an answer to a question removed since keeps its id as the label).
  function answersList(b) {
    var answers = b.answers || {};
    var pairs = [];
    if (Array.isArray(answers)) {
      answers.forEach(function (a) { pairs.push([a.label || a.id, a.answer !== undefined ? a.answer : a.value]); });
    } else {
      var svc = state.services.filter(function (x) { return x.id === b.service; })[0];
      var questions = (svc && svc.questions) || [];
      var seen = {};
      questions.forEach(function (q) {
        if (answers[q.id] === undefined || answers[q.id] === null) return;
        seen[q.id] = true;
        var v = String(answers[q.id]);
        if (q.type === "checkbox") v = v === "true" ? "Yes" : (v === "false" ? "No" : v);
        pairs.push([q.label, v]);
      });
      Object.keys(answers).forEach(function (k) {
        if (!seen[k] && answers[k] !== null && answers[k] !== undefined) pairs.push([k, String(answers[k])]);
      });
    }
    if (!pairs.length) return "—";
    return h("dl", { class: "answers" }, pairs.map(function (p) {
      return h("div", null, h("dt", { text: p[0] + ":" }), h("dd", { text: String(p[1]) }));
    }));
  }

  // The bookings section: a week or month calendar of the shop's time zone, filtered by
  // expert, service and status and searched by customer (GET /bookings with the filters:
  // the server narrows the list), a booking's details (its delivery state, reschedule,
  // cancel, mark a no-show) from the calendar. The toolbar and the filters stay while the
  // list reloads (a search keeps its focus); a summary line (aria-live) says what is shown.
  var BK_VIEWS = [["week", "Week"], ["month", "Month"]];
  var BK_STATUSES = [["", "Any status"], ["pending", "Pending"], ["confirmed", "Confirmed"],
                     ["cancelled", "Cancelled"], ["no_show", "No-show"]];
  var bkRun = 0, bkTimer = null;

  function bk() {
    if (!state.bk) state.bk = { view: "week", month: null, day: null, expert: "", service: "", status: "", q: "" };
    return state.bk;
  }

  function firstOfMonth(ymd) { return ymd.slice(0, 8) + "01"; }
  function addMonths(ymd, n) {
    var y = +ymd.slice(0, 4), m = +ymd.slice(5, 7) - 1 + n;
    y += Math.floor(m / 12); m = ((m % 12) + 12) % 12;
    return y + "-" + pad(m + 1) + "-01";
  }
  function dayName(ymd, opts) {
    var o = { timeZone: "UTC" };
    Object.keys(opts).forEach(function (k) { o[k] = opts[k]; });
    return new Intl.DateTimeFormat(undefined, o).format(new Date(ymd + "T12:00:00Z"));
  }
  function shopDayOf(iso) { var p = partsIn(shopTz(), Date.parse(iso)); return p.year + "-" + p.month + "-" + p.day; }
  function isPast(b) { return Date.parse(b.end) <= Date.now(); }
  function canMarkNoShow(b) { return b.status === "confirmed" && !b.no_show && isPast(b); }
  function customerOf(b) { return (b.customer && b.customer.name) || "a customer"; }
  function statusWords(b) { return b.no_show ? "confirmed, no-show" : b.status; }

  // The booking's calendar event and messages, as the merchant reads them (`delivery`).
  function deliveryText(b) {
    var d = b.delivery;
    if (!d) return b.status === "pending" ? "Nothing sent yet: the order is not paid." : "No calendar event or mail recorded.";
    var tries = d.attempts === 1 ? "1 attempt" : d.attempts + " attempts";
    var text = {
      done: "Calendar event and mails delivered.",
      pending: "Calendar event and mails queued.",
      retrying: "Being retried (" + tries + " so far" + (d.next_attempt_at ? ", next " + when(d.next_attempt_at) : "") + ").",
      failed: "Failed after " + tries + "."
    }[d.status] || d.status;
    if (d.last_error && d.status !== "done") text += " Last error: " + d.last_error;
    if (d.unconfirmed_messages && d.unconfirmed_messages.length) {
      text += " Not confirmed by the receiving side: " + d.unconfirmed_messages.join(", ") + ".";
    }
    return text;
  }
  function deliveryShort(b) {
    var d = b.delivery;
    if (!d) return "—";
    return { done: "Delivered", pending: "Queued", retrying: "Retrying", failed: "Failed" }[d.status] || d.status;
  }

  function statusBadges(b) {
    return [h("span", { class: "badge " + b.status, text: b.status }),
      b.no_show ? [" ", h("span", { class: "badge no-show", text: "no-show" })] : null];
  }

  // Mark (or unmark) a no-show: POST /bookings/ID/no_show.
  function setNoShow(b, value) {
    return api("POST", "/bookings/" + b.id + "/no_show", { no_show: value }).then(function (r) { return r.booking; });
  }

  // Redraw the section (the filters and the period stay) and put the focus on the booking
  // that changed, or on the heading if it is no longer shown.
  function refreshBookings(bookingId) {
    bookings(false, function () {
      var el = bookingId && main.querySelector('[data-booking="' + bookingId + '"]');
      if (el) el.focus();
      else { var hd = main.querySelector("h2"); if (hd) hd.focus(); }
    });
  }

  function bookings(focus, then) {
    var tz = shopTz(), s = bk();
    if (!state.week) state.week = monday(todayIn(tz));
    if (!s.month) s.month = firstOfMonth(addDays(state.week, 3));
    var heading = section("Bookings", "Times are shown in the shop's time zone (" + tz + ").");

    var viewSwitch = h("fieldset", { class: "period-switch view-switch" }, h("legend", { text: "Calendar" }),
      BK_VIEWS.map(function (v) {
        var input = h("input", { type: "radio", name: "bookings-view", id: "bookings-view-" + v[0], value: v[0],
          checked: s.view === v[0], onchange: function () {
            if (!this.checked) return;
            if (v[0] === "month") s.month = firstOfMonth(s.day && monday(s.day) === state.week ? s.day : addDays(state.week, 3));
            else state.week = monday(s.day && s.day.slice(0, 7) === s.month.slice(0, 7) ? s.day
              : (todayIn(tz).slice(0, 7) === s.month.slice(0, 7) ? todayIn(tz) : s.month));
            s.view = v[0];
            drawNav(); load();
          } });
        return h("label", { class: "check", for: input.id }, input, " " + v[1]);
      }));
    var nav = h("div", { class: "calendar-nav" });
    var range = h("span", { class: "range", id: "bookings-range" });
    function drawNav() {
      var unit = s.view === "month" ? "month" : "week";
      function step(n) {
        return function () {
          if (s.view === "month") s.month = addMonths(s.month, n); else state.week = addDays(state.week, 7 * n);
          updateRange(); load();
        };
      }
      nav.textContent = "";
      append(nav, [
        h("button", { type: "button", onclick: step(-1) }, "\u2039 Previous " + unit),
        h("button", { type: "button", onclick: function () {
          if (s.view === "month") s.month = firstOfMonth(todayIn(tz)); else state.week = monday(todayIn(tz));
          s.day = null; updateRange(); load();
        } }, "This " + unit),
        h("button", { type: "button", onclick: step(1) }, "Next " + unit + " \u203a"),
        range]);
      updateRange();
    }
    function updateRange() {
      range.textContent = s.view === "month" ? dayName(s.month, { month: "long", year: "numeric" })
        : "Week of " + dayName(state.week, { dateStyle: "medium" });
    }

    function changed(key) {
      return function () { s[key] = this.value; load(); };
    }
    var fExpert = h("select", { id: "bookings-expert", onchange: changed("expert") },
      h("option", { value: "", text: "All experts" }),
      state.experts.map(function (x) { return h("option", { value: x.id, text: x.name }); }));
    var fService = h("select", { id: "bookings-service", onchange: changed("service") },
      h("option", { value: "", text: "All services" }),
      state.services.map(function (x) { return h("option", { value: x.id, text: x.title }); }));
    var fStatus = h("select", { id: "bookings-status", onchange: changed("status") },
      BK_STATUSES.map(function (x) { return h("option", { value: x[0], text: x[1] }); }));
    var fSearch = h("input", { type: "search", id: "bookings-q", maxlength: "100", autocomplete: "off",
      placeholder: "Name or email", oninput: function () {
        var v = this.value;
        clearTimeout(bkTimer);
        bkTimer = setTimeout(function () { if (s.q !== v.trim()) { s.q = v.trim(); load(); } }, 300);
      } });
    fExpert.value = s.expert; fService.value = s.service; fStatus.value = s.status; fSearch.value = s.q;
    var filters = h("div", { class: "grid filters", role: "search", "aria-label": "Filter bookings" },
      field("Expert", fExpert), field("Service", fService), field("Status", fStatus),
      field("Search customers", fSearch));
    var summary = h("p", { class: "summary", id: "bookings-summary", "aria-live": "polite" }, "\u00a0");
    main.appendChild(h("div", { class: "toolbar calendar-toolbar" }, viewSwitch, nav));
    main.appendChild(h("div", { class: "card filters-card" }, filters));
    main.appendChild(summary);
    var holder = h("div", { id: "bookings-calendar", class: "calendar-holder" });
    main.appendChild(holder);
    drawNav();

    function period() {
      if (s.view === "month") return { from: s.month, to: addMonths(s.month, 1) };
      return { from: state.week, to: addDays(state.week, 7) };
    }

    function load() {
      var run = ++bkRun, p = period();
      var q = "?from=" + encodeURIComponent(midnight(p.from, tz)) + "&to=" + encodeURIComponent(midnight(p.to, tz));
      ["expert", "service", "status", "q"].forEach(function (k) { if (s[k]) q += "&" + k + "=" + encodeURIComponent(s[k]); });
      holder.setAttribute("aria-busy", "true");
      api("GET", "/bookings" + q).then(function (body) {
        if (run !== bkRun || !document.body.contains(holder)) return;  // asked again since, or gone elsewhere
        holder.removeAttribute("aria-busy");
        var list = (body.bookings || []).slice().sort(function (a, b) { return a.start < b.start ? -1 : 1; });
        show(list);
        if (then) { var t = then; then = null; t(); }
      }).catch(function (e) {
        if (run !== bkRun) return;
        holder.removeAttribute("aria-busy");
        summary.textContent = "The bookings could not be loaded.";
        fail(e);
      });
    }

    function show(list) {
      var filtered = s.expert || s.service || s.status || s.q;
      var n = list.length === 1 ? "1 booking" : list.length + " bookings";
      var where = s.view === "month" ? " in " + dayName(s.month, { month: "long", year: "numeric" })
        : " in the week of " + dayName(state.week, { dateStyle: "medium" });
      summary.textContent = (list.length ? n : "No bookings") +
        (filtered ? (list.length === 1 ? " matches the filters" : " match the filters") : "") + where + ".";
      holder.textContent = "";
      holder.setAttribute("data-view", s.view);
      holder.setAttribute("data-first", s.view === "month" ? s.month : state.week);
      if (s.view === "month") {
        holder.appendChild(monthView(s.month, list, s.day, function (day) { s.day = day; show(list); focusDay(day); }));
        holder.appendChild(dayList(s.day && s.day.slice(0, 7) === s.month.slice(0, 7) ? s.day : null, list, function (day) {
          state.week = monday(day); s.day = day; s.view = "week";
          bookings(false, function () { var c = document.getElementById("bookings-view-week"); if (c) c.focus(); });
        }));
        if (s.focusGrid) {  // Page Up / Page Down in the grid: the focus stays in it
          s.focusGrid = false;
          var again = holder.querySelector(".month-day[tabindex='0']");
          if (again) again.focus();
        }
        return;
      }
      holder.appendChild(weekView(state.week, list));
      holder.appendChild(bookingsTable(list, filtered));
    }

    function focusDay(day) {
      var b = holder.querySelector('.month-day[data-date="' + day + '"]');
      if (b) b.focus();
    }

    load();
    if (focus) heading.focus();
  }

  function bookingsTable(list, filtered) {
    return table("Bookings this week", ["Start", "Service", "Expert", "Customer", "Seats", "Answers", "Status",
      "Order", "Meeting", "Delivery", "Actions"],
      list.map(function (b) {
        var customer = b.customer || {};
        var live = b.status === "confirmed" || b.status === "pending";
        var who = (customer.name || "the customer") + " on " + when(b.start);
        var actions = [];
        if (live) {
          actions.push(h("button", { type: "button", "aria-label": "Reschedule the booking of " + who, "aria-haspopup": "dialog",
            onclick: function () { rescheduleDialog(b, this); } }, "Reschedule"));
          actions.push(h("button", { type: "button", class: "danger", "aria-label": "Cancel the booking of " + who,
            "aria-haspopup": "dialog", onclick: function () { cancelDialog(b, this); } }, "Cancel"));
        }
        if (canMarkNoShow(b) || b.no_show) {
          actions.push(h("button", { type: "button", "aria-label": (b.no_show ? "Remove the no-show mark of " : "Mark as a no-show: ") + who,
            onclick: function () {
              var btn = this; btn.disabled = true;
              setNoShow(b, !b.no_show).then(function (after) {
                say(after.no_show ? "Marked as a no-show." : "No-show mark removed.");
                refreshBookings(b.id);
              }).catch(function (e) { btn.disabled = false; fail(e); });
            } }, b.no_show ? "Remove no-show" : "Mark no-show"));
        }
        return [when(b.start), nameOf(state.services, b.service), nameOf(state.experts, b.expert),
          [customer.name || "—", customer.email ? h("br") : null, customer.email || null],
          String(b.seats || 1), answersList(b), statusBadges(b),
          String(b.order_id || "—"),
          b.meeting_url ? h("a", { href: b.meeting_url, target: "_blank", rel: "noopener", text: "Join" }) : "—",
          deliveryShort(b),
          actions.length ? h("span", { class: "row-actions" }, actions)
            : (b.status === "cancelled" && CANCELLED_BY[b.cancelled_by]
              ? h("span", { class: "cancelled-by", text: CANCELLED_BY[b.cancelled_by] }) : "")];
      }), filtered ? "No bookings this week match the filters." : "No bookings this week.");
  }

  // A booking in the calendar: a button that opens its details.
  function bookingChip(b, extra) {
    var time = when(b.start, { hour: "2-digit", minute: "2-digit" });
    var label = time + ", " + customerOf(b) + ", " + nameOf(state.services, b.service) + " with " +
      nameOf(state.experts, b.expert) + " (" + statusWords(b) + ")";
    return h("li", { class: "chip " + b.status + (b.no_show ? " no-show" : "") },
      h("button", { type: "button", class: "chip-button", "data-booking": b.id, "aria-haspopup": "dialog",
        "aria-label": label, title: label, onclick: function () { bookingDetails(b, this); } },
        h("strong", { text: time }), " ", nameOf(state.services, b.service), h("br"), nameOf(state.experts, b.expert),
        b.customer && b.customer.name ? " · " + b.customer.name : "",
        b.status === "cancelled" ? " (cancelled)" : "", b.no_show ? " (no-show)" : "", extra || null));
  }

  function weekView(first, list) {
    var tz = shopTz(), today = todayIn(tz);
    var cols = [];
    for (var i = 0; i < 7; i++) cols.push(addDays(first, i));
    var byDay = {};
    list.forEach(function (b) { var key = shopDayOf(b.start); (byDay[key] = byDay[key] || []).push(b); });
    return h("div", { class: "week", role: "region", "aria-label": "Week calendar" }, cols.map(function (d) {
      var items = byDay[d] || [];
      return h("section", { class: "week-day" + (d === today ? " today-col" : ""), "aria-label": dayName(d, { dateStyle: "full" }) },
        h("h3", { text: dayName(d, { weekday: "short", day: "numeric", month: "short" }) }),
        items.length ? h("ul", null, items.map(function (b) { return bookingChip(b); })) : h("p", { class: "off", text: "—" }));
    }));
  }

  // The month grid: six rows of weeks (Monday first) so that its size never changes; the
  // days of the month are buttons (one tab stop; arrows, Home/End, Page Up/Down move, as in
  // the WAI-ARIA date grid), each saying how many bookings it has. Choosing one lists it.
  function monthView(month, list, selected, choose) {
    var tz = shopTz(), today = todayIn(tz), start = monday(month), ym = month.slice(0, 7);
    var byDay = {};
    list.forEach(function (b) { var key = shopDayOf(b.start); (byDay[key] = byDay[key] || []).push(b); });
    var current = selected && selected.slice(0, 7) === ym ? selected : (today.slice(0, 7) === ym ? today : month);
    var last = addDays(addMonths(month, 1), -1);
    function move(from, ev) {
      var to = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -7, ArrowDown: 7 }[ev.key];
      var target = to !== undefined ? addDays(from, to) : null;
      if (ev.key === "Home") target = addDays(from, -((new Date(from + "T12:00:00Z").getUTCDay() + 6) % 7));
      if (ev.key === "End") target = addDays(from, 6 - ((new Date(from + "T12:00:00Z").getUTCDay() + 6) % 7));
      if (ev.key === "PageUp" || ev.key === "PageDown") {
        ev.preventDefault();
        var nav = document.querySelectorAll(".calendar-nav button");
        bk().focusGrid = true;
        if (nav.length) nav[ev.key === "PageUp" ? 0 : 2].click();
        return;
      }
      if (!target) return;
      ev.preventDefault();
      if (target < month) target = month;
      if (target > last) target = last;
      var grid = ev.currentTarget.closest(".month");
      var next = grid.querySelector('.month-day[data-date="' + target + '"]');
      if (!next) return;
      Array.prototype.forEach.call(grid.querySelectorAll(".month-day"), function (x) { x.tabIndex = -1; });
      next.tabIndex = 0;
      next.focus();
    }
    var rows = [];
    for (var w = 0; w < 6; w++) {
      var cells = [];
      for (var i = 0; i < 7; i++) {
        (function (d) {
          if (d.slice(0, 7) !== ym) { cells.push(h("td", { class: "month-out" })); return; }
          var items = byDay[d] || [];
          var n = items.length;
          var label = dayName(d, { weekday: "long", day: "numeric", month: "long" }) + ", " +
            (n ? (n === 1 ? "1 booking" : n + " bookings") : "no bookings") + (d === today ? ", today" : "");
          var shown = items.slice(0, 3);
          cells.push(h("td", { class: d === today ? "is-today" : null },
            h("button", { type: "button", class: "month-day", "data-date": d, tabindex: d === current ? "0" : "-1",
              "aria-label": label, "aria-pressed": d === selected ? "true" : "false",
              onclick: function () { choose(d); }, onkeydown: function (ev) { move(d, ev); } },
              h("span", { class: "month-num", "aria-hidden": "true", text: String(+d.slice(8)) }),
              n ? h("span", { class: "month-count", "aria-hidden": "true", text: String(n) }) : null,
              h("span", { class: "month-items", "aria-hidden": "true" }, shown.map(function (b) {
                return h("span", { class: "month-item " + b.status + (b.no_show ? " no-show" : ""),
                  text: when(b.start, { hour: "2-digit", minute: "2-digit" }) + " " + customerOf(b) });
              }), n > 3 ? h("span", { class: "month-more", text: "+" + (n - 3) + " more" }) : null))));
        })(addDays(start, w * 7 + i));
      }
      rows.push(h("tr", null, cells));
    }
    var heads = [];
    for (var k = 0; k < 7; k++) {
      var d0 = addDays(start, k);
      heads.push(h("th", { scope: "col", abbr: dayName(d0, { weekday: "long" }), text: dayName(d0, { weekday: "short" }) }));
    }
    return h("div", { class: "month-wrap", role: "region", "aria-label": "Month calendar" },
      h("table", { class: "month" }, h("caption", { class: "visually-hidden", text: dayName(month, { month: "long", year: "numeric" }) }),
        h("thead", null, h("tr", null, heads)), h("tbody", null, rows)));
  }

  // The chosen day of the month view, its bookings as buttons that open their details.
  function dayList(day, list, openWeek) {
    var box = h("section", { class: "card day-list", "aria-labelledby": "day-list-title" });
    if (!day) {
      box.appendChild(h("h3", { id: "day-list-title", text: "Choose a day" }));
      box.appendChild(h("p", { class: "empty", text: "Choose a day in the calendar to list its bookings." }));
      return box;
    }
    var items = list.filter(function (b) { return shopDayOf(b.start) === day; });
    box.appendChild(h("h3", { id: "day-list-title", text: "Bookings on " + dayName(day, { dateStyle: "full" }) }));
    box.appendChild(items.length ? h("ul", { class: "day-items" }, items.map(function (b) {
      return bookingChip(b, b.customer && b.customer.email ? [h("br"), h("span", { class: "help", text: b.customer.email })] : null);
    })) : h("p", { class: "empty", text: "No bookings on this day." }));
    box.appendChild(h("div", { class: "actions" }, h("button", { type: "button", onclick: function () { openWeek(day); } },
      "Open the week of " + dayName(day, { day: "numeric", month: "long" }))));
    return box;
  }

  // A booking's details in a modal dialog: when, who, what, its delivery state, and what
  // the merchant can do with it (reschedule, cancel, mark a no-show once it is over).
  function bookingDetails(b, opener) {
    var changed = false, next = null;
    var title = h("h2", { id: "details-title", text: "Booking details" });
    var list = h("dl", { class: "details", id: "details-list" });
    var problem = h("p", { class: "form-error", role: "alert", hidden: true });
    var actions = h("div", { class: "actions dialog-footer" });
    var close = h("button", { type: "button", class: "plain" }, "Close");
    var dlg = h("dialog", { class: "dialog details-dialog", "aria-labelledby": "details-title" },
      title, list, problem, actions);
    function row(term, value) { return h("div", null, h("dt", { text: term }), h("dd", null, value)); }
    function draw() {
      var customer = b.customer || {};
      list.textContent = "";
      append(list, [
        row("When", when(b.start) + " – " + when(b.end, { timeStyle: "short" })),
        row("Service", nameOf(state.services, b.service)),
        row("Expert", nameOf(state.experts, b.expert)),
        row("Customer", [customer.name || "—", customer.email ? [h("br"), customer.email] : null]),
        b.customer_timezone ? row("Customer's time zone", b.customer_timezone) : null,
        row("Seats", String(b.seats || 1)),
        row("Status", [statusBadges(b), b.status === "cancelled" && CANCELLED_BY[b.cancelled_by]
          ? " " + CANCELLED_BY[b.cancelled_by] : null]),
        row("Order", String(b.order_id || "—")),
        row("Meeting", b.meeting_url ? h("a", { href: b.meeting_url, target: "_blank", rel: "noopener", text: "Join" }) : "—"),
        row("Answers", answersList(b)),
        row("Calendar event and mails", h("span", { id: "details-delivery", text: deliveryText(b) }))
      ]);
      actions.textContent = "";
      var live = b.status === "confirmed" || b.status === "pending";
      if (live) {
        actions.appendChild(h("button", { type: "button", "aria-haspopup": "dialog", onclick: function () {
          next = function () { rescheduleDialog(b, opener); }; dlg.close(); } }, "Reschedule"));
        actions.appendChild(h("button", { type: "button", class: "critical", "aria-haspopup": "dialog", onclick: function () {
          next = function () { cancelDialog(b, opener); }; dlg.close(); } }, "Cancel booking"));
      }
      if (canMarkNoShow(b) || b.no_show) {
        actions.appendChild(h("button", { type: "button", onclick: function () {
          var btn = this; btn.disabled = true; problem.hidden = true;
          setNoShow(b, !b.no_show).then(function (after) {
            changed = true; b = after;
            say(after.no_show ? "Marked as a no-show." : "No-show mark removed.");
            draw();
            var again = actions.querySelector("[data-no-show]");
            (again || close).focus();
          }).catch(function (e) {
            btn.disabled = false;
            problem.textContent = (e && e.message) ? e.message : String(e); problem.hidden = false;
          });
        }, "data-no-show": "1" }, b.no_show ? "Remove no-show mark" : "Mark no-show"));
      }
      actions.appendChild(close);
    }
    close.addEventListener("click", function () { dlg.close(); });
    draw();
    showDialog(dlg, opener, close, function () {
      if (next) { next(); return false; }
      if (changed) { refreshBookings(b.id); return false; }
      return true;
    });
    return dlg;
  }

  // ------------------------------------------------------------------ cancel dialog

  function money(amount, currency) {
    if (amount === null || amount === undefined || amount === "") return null;
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency: currency }).format(Number(amount));
    } catch (e) { return amount + (currency ? " " + currency : ""); }
  }

  // What cancelling will do to the money, said before the merchant decides. A confirmed
  // booking was paid: it gets one refund entry (merchant cancelled), refunded through
  // Shopify too when auto-refund is on. A pending booking was not paid: nothing to return.
  function cancelConsequences(b) {
    var items = [h("li", { text: "The customer is mailed that the booking is cancelled, and the time becomes free again." })];
    if (b.status === "confirmed") {
      var amount = money(b.amount, b.currency);
      var entry = "A refund entry (merchant cancelled) of " + (amount || "what the customer paid for it") +
        " is written to the refund log";
      items.push(h("li", { "data-money": "refund", text: state.settings && state.settings.auto_refund
        ? entry + ", and it is refunded through Shopify."
        : entry + ". Automatic refunds are off (Settings), so refund it in Shopify yourself." }));
    } else {
      items.push(h("li", { "data-money": "nothing", text: "This booking is pending: nothing was paid, nothing is refunded." }));
    }
    return items;
  }

  // What the server says it did (the cancel response's "refund").
  function cancelOutcome(before, after) {
    var r = after && after.refund;
    if (!r) {
      return before.status === "pending" ? "Booking cancelled. Nothing was paid, so nothing is refunded."
        : "Booking cancelled. No refund entry was written.";
    }
    var text = "Booking cancelled. A refund entry (merchant cancelled) of " + (money(r.amount, r.currency) || "0") +
      " was written to the refund log.";
    var shopify = {
      queued: " It is being refunded through Shopify.",
      refunded: " It was refunded through Shopify.",
      failed: " The refund through Shopify failed: refund it in Shopify yourself.",
      skipped: " Shopify was not asked to refund it: refund it in Shopify yourself if it is due.",
      off: " Refund it in Shopify yourself (automatic refunds are off)."
    }[r.shopify];
    return text + (shopify || "");
  }

  // An in-page modal dialog (<dialog> with showModal: focus stays inside, Escape closes,
  // the page behind is inert); focus returns to the button that opened it.
  function cancelDialog(b, opener) {
    var customer = (b.customer && b.customer.name) || "the customer";
    var title = h("h2", { id: "cancel-title", text: "Cancel this booking?" });
    var summary = h("p", { id: "cancel-summary", text: nameOf(state.services, b.service) + " with " +
      nameOf(state.experts, b.expert) + " for " + customer + ", " + when(b.start) + "." });
    var effects = h("ul", { id: "cancel-effects", class: "effects" }, cancelConsequences(b));
    var lead = h("p", { class: "help", text: "What happens:" });
    var outcome = h("p", { id: "cancel-outcome", class: "outcome", role: "status", "aria-live": "polite" });
    var problem = h("p", { class: "error-text", role: "alert" });
    var keep = h("button", { type: "button", autofocus: true }, "Keep the booking");
    var go = h("button", { type: "button", class: "critical" }, "Cancel the booking");
    var close = h("button", { type: "button", class: "primary", hidden: true }, "Close");
    var dlg = h("dialog", { class: "dialog", "aria-labelledby": "cancel-title",
      "aria-describedby": "cancel-summary cancel-effects" },
      title, summary, lead, effects, outcome, problem,
      h("div", { class: "actions" }, keep, go, close));
    var changed = false;
    function finish() { dlg.close(); }
    keep.addEventListener("click", finish);
    close.addEventListener("click", finish);
    go.addEventListener("click", function () {
      go.disabled = true; keep.disabled = true; problem.textContent = "";
      go.textContent = "Cancelling…";
      api("POST", "/bookings/" + b.id + "/cancel").then(function (after) {
        changed = true;
        var text = cancelOutcome(b, after);
        title.textContent = "Booking cancelled";
        effects.hidden = true;
        lead.hidden = true;
        outcome.textContent = text;
        go.hidden = true; keep.hidden = true; close.hidden = false;
        close.focus();
        say(text);
      }).catch(function (e) {
        go.disabled = false; keep.disabled = false; go.textContent = "Cancel the booking";
        problem.textContent = (e && e.message) ? e.message : String(e);
      });
    });
    showDialog(dlg, opener, keep, function () {
      if (changed) { refreshBookings(b.id); return false; }
      return true;
    });
    return dlg;
  }

  // ------------------------------------------------------------------ reschedule dialog

  // The instant that the wall-clock date `ymd` and time `hm` of `tz` name, as "…Z".
  function instantIn(ymd, hm, tz) {
    var guess = Date.parse(ymd + "T" + hm + ":00Z");
    var t = guess - offset(tz, guess);
    t = guess - offset(tz, t);
    return new Date(t).toISOString().replace(/\.\d{3}Z$/, "Z");
  }

  // The merchant moves a booking: a modal dialog (like the cancel dialog) with the new
  // date and time in the shop's time zone and, optionally, another expert of the
  // service. POST /bookings/ID/reschedule {"start"[, "expert"]}; a time that is taken
  // (409) or not on the service's grid and hours (422) is said inside the dialog, and
  // the booking keeps its time.
  function rescheduleDialog(b, opener) {
    var tz = shopTz();
    var now = partsIn(tz, Date.parse(b.start));
    var customer = (b.customer && b.customer.name) || "the customer";
    var current = nameOf(state.experts, b.expert);
    var title = h("h2", { id: "resched-title", text: "Reschedule this booking" });
    var summary = h("p", { id: "resched-summary", text: nameOf(state.services, b.service) + " with " + current + " for " +
      customer + ", now " + when(b.start) + "." });
    var date = h("input", { type: "date", id: "resched-date", required: true, "aria-required": "true",
      value: now.year + "-" + now.month + "-" + now.day });
    var time = h("input", { type: "time", id: "resched-time", step: "300", required: true, "aria-required": "true",
      value: now.hour + ":" + now.minute });
    var others = state.experts.filter(function (x) {
      return x.id !== b.expert && (x.services || []).indexOf(b.service) >= 0;
    });
    var expert = h("select", { id: "resched-expert" }, h("option", { value: "", text: "Keep " + current }),
      others.map(function (x) { return h("option", { value: x.id, text: x.name }); }));
    var problem = h("p", { id: "resched-problem", class: "form-error", role: "alert", hidden: true });
    var outcome = h("p", { id: "resched-outcome", class: "outcome", role: "status", "aria-live": "polite" });
    var keep = h("button", { type: "button" }, "Keep the current time");
    var go = h("button", { type: "submit", class: "primary" }, "Reschedule");
    var close = h("button", { type: "button", class: "primary", hidden: true }, "Close");
    var fields = h("div", { class: "grid" },
      field("New date", date),
      field("New time (" + tz + ")", time),
      others.length ? field("Expert for the new time", expert) : null);
    var note = h("p", { class: "help", text: "The customer is mailed the new time and the calendar event moves with it. " +
      "You may go past the service's notice and horizon, never onto a time that is taken." });
    var changed = false;
    function showProblem(text) {
      problem.textContent = text; problem.hidden = false;
      outcome.textContent = "";
    }
    var form = h("form", { novalidate: true, onsubmit: function (ev) {
      ev.preventDefault();
      problem.hidden = true; problem.textContent = "";
      if (!date.value || !time.value) {
        showProblem("Choose the new date and time.");
        (date.value ? time : date).focus();
        return;
      }
      var body = { start: instantIn(date.value, time.value.slice(0, 5), tz) };
      if (expert.value) body.expert = expert.value;
      go.disabled = true; keep.disabled = true; go.textContent = "Rescheduling…";
      api("POST", "/bookings/" + b.id + "/reschedule", body).then(function (r) {
        changed = true;
        var moved = (r && r.booking) || {};
        var text = "Booking moved to " + when(moved.start || body.start) +
          (moved.expert && moved.expert !== b.expert ? " with " + nameOf(state.experts, moved.expert) : "") + ".";
        title.textContent = "Booking rescheduled";
        fields.hidden = true; note.hidden = true; go.hidden = true; keep.hidden = true; close.hidden = false;
        outcome.textContent = text;
        close.focus();
        say(text);
      }).catch(function (e) {
        go.disabled = false; keep.disabled = false; go.textContent = "Reschedule";
        var message = ((e && e.message) ? e.message : String(e)).replace(/\.$/, "");
        var lead = { slot_unavailable: "That time is not free", not_a_slot: "That is not a time this service offers",
                     limit_reached: "That would go over a booking limit" }[e && e.code];
        showProblem(lead ? lead + ": " + message + ". Choose another time." : message + ".");
        time.focus();
      });
    } }, fields, note, problem, outcome, h("div", { class: "actions" }, keep, go, close));
    var dlg = h("dialog", { class: "dialog", "aria-labelledby": "resched-title", "aria-describedby": "resched-summary" },
      title, summary, form);
    function finish() { dlg.close(); }
    keep.addEventListener("click", finish);
    close.addEventListener("click", finish);
    showDialog(dlg, opener, date, function () {
      if (changed) { refreshBookings(b.id); return false; }
      return true;
    });
    return dlg;
  }

  // ------------------------------------------------------------------ refunds

  function refunds(focus) {
    var heading = section("Refund log", "Paid line items that could not be booked (the slot was taken, the hold unknown, …). Refund these in Shopify.");
    var holder = h("div", null, h("p", { text: "Loading…" }));
    main.appendChild(holder);
    api("GET", "/refunds").then(function (body) {
      holder.textContent = "";
      holder.appendChild(table("Refund log", ["When", "Order", "Line item", "Amount", "Reason"],
        (body.refunds || []).map(function (r) {
          return [when(r.created_at), String(r.order_id), String(r.line_item_id), r.amount + " " + r.currency, r.reason];
        }), "Nothing to refund."));
    }).catch(function (e) { holder.textContent = ""; fail(e); });
    if (focus) heading.focus();
  }

  // ------------------------------------------------------------------ export

  function exportSection(focus) {
    var tz = shopTz();
    var heading = section("Export", "Bookings whose start lies in the chosen dates (shop time zone, " + tz + "), as CSV for spreadsheets or ICS for calendars.");
    var today = todayIn(tz);
    var from = h("input", { type: "date", id: "export-from", value: today.slice(0, 8) + "01" });
    var to = h("input", { type: "date", id: "export-to", value: addDays(today, 31) });
    function download(format) {
      if (!from.value || !to.value) { fail(new Error("Choose both dates.")); return; }
      var path = "/export?format=" + format + "&from=" + encodeURIComponent(midnight(from.value, tz)) +
        "&to=" + encodeURIComponent(midnight(addDays(to.value, 1), tz));
      // A plain link cannot carry the session token, so fetch and hand the file over.
      token().then(function (t) {
        return fetch("/admin/api" + path, { headers: { Authorization: "Bearer " + t } });
      }).then(function (r) {
        if (!r.ok) return r.json().catch(function () { return {}; }).then(function (b) {
          throw new Error((b.error && b.error.message) || "The export failed (HTTP " + r.status + ").");
        });
        return r.blob();
      }).then(function (blob) {
        var a = h("a", { href: URL.createObjectURL(blob), download: "consultbook-" + from.value + "-" + to.value + "." + format });
        document.body.appendChild(a);
        a.click();
        setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
        say("Export downloaded (" + format.toUpperCase() + ").");
      }).catch(fail);
    }
    main.appendChild(h("div", { class: "card" },
      h("div", { class: "grid" }, field("From", from), field("To (inclusive)", to)),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "primary", onclick: function () { download("csv"); } }, "Download CSV"),
        h("button", { type: "button", onclick: function () { download("ics"); } }, "Download ICS"))));
    if (focus) heading.focus();
  }

  // ------------------------------------------------------------------ settings

  function choice(id, value, options) {
    var s = h("select", { id: id }, options.map(function (o) { return h("option", { value: o[0], text: o[1] }); }));
    s.value = value;
    return s;
  }

  // The providers registered on the server (built-in or plugin), by label, from the
  // settings document's read-only "choices" (GET /admin/api/settings). A saved choice
  // whose plugin is gone stays selected, marked, rather than silently changing.
  function providerSelect(id, field, value) {
    var list = ((state.settings && state.settings.choices) || {})[field] || [];
    var options = list.map(function (o) { return [o.name, o.label || o.name]; });
    if (value && !list.some(function (o) { return o.name === value; })) options.push([value, value + " (not installed)"]);
    return choice(id, value, options);
  }

  // "24 hours", "2 days", "1 hour 30 minutes": a notice period in plain words.
  function span(minutes) {
    function unit(n, one) { return n + " " + one + (n === 1 ? "" : "s"); }
    if (minutes >= 2880 && minutes % 1440 === 0) return unit(minutes / 1440, "day");
    var hours = Math.floor(minutes / 60), rest = minutes % 60;
    if (!hours) return unit(rest, "minute");
    return unit(hours, "hour") + (rest ? " " + unit(rest, "minute") : "");
  }

  // What the customer policy allows, as the customer would be told it.
  function policyHint(verb, on, minutes) {
    if (!on) return "Customers cannot " + verb + " themselves; you still can, in Bookings.";
    if (minutes === null || isNaN(minutes) || minutes < 0) return "Enter whole minutes, for example 1440 for a day.";
    if (minutes === 0) return "Customers can " + verb + " until the start.";
    return "Customers can " + verb + " until " + span(minutes) + " before the start.";
  }

  function timesHint(on, n) {
    if (!on) return "Rescheduling by customers is off.";
    if (n === null || isNaN(n) || n < 0) return "Enter a whole number.";
    if (n === 0) return "Customers cannot move a booking (0 times).";
    return "Each booking can be moved by the customer at most " + (n === 1 ? "once." : n + " times.");
  }

  // The fields of the customer policy and of who else is told (issue 12). They are shown
  // and saved when the server's settings document has them.
  var POLICY_FIELDS = ["customer_cancel", "cancel_notice_minutes", "customer_reschedule", "reschedule_notice_minutes",
                       "max_reschedules", "notify_experts"];

  function policyFieldsets(errs, s) {
    var canCancel = h("input", { type: "checkbox", id: "set-customer-cancel", checked: s.customer_cancel !== false });
    var cancelBy = numberInput("set-cancel-notice", s.cancel_notice_minutes === undefined ? 1440 : s.cancel_notice_minutes, "0", null);
    var canMove = h("input", { type: "checkbox", id: "set-customer-reschedule", checked: s.customer_reschedule !== false });
    var moveBy = numberInput("set-reschedule-notice", s.reschedule_notice_minutes === undefined ? 1440 : s.reschedule_notice_minutes, "0", null);
    var maxMoves = numberInput("set-max-reschedules", s.max_reschedules === undefined ? 2 : s.max_reschedules, "0", "100");
    var tell = h("input", { type: "checkbox", id: "set-notify-experts", checked: s.notify_experts !== false });
    var cancelField = fieldFor(errs, "cancel_notice_minutes", "Cancel until (minutes before the start)", cancelBy, " ");
    var moveField = fieldFor(errs, "reschedule_notice_minutes", "Reschedule until (minutes before the start)", moveBy, " ");
    var maxField = fieldFor(errs, "max_reschedules", "Reschedules per booking", maxMoves, " ");
    var cancelHint = cancelField.querySelector(".help"), moveHint = moveField.querySelector(".help"),
        maxHint = maxField.querySelector(".help");
    function hints() {
      cancelHint.textContent = policyHint("cancel", canCancel.checked, numberOf(cancelBy));
      moveHint.textContent = policyHint("reschedule", canMove.checked, numberOf(moveBy));
      maxHint.textContent = timesHint(canMove.checked, numberOf(maxMoves));
    }
    [canCancel, cancelBy, canMove, moveBy, maxMoves].forEach(function (i) {
      i.addEventListener("input", hints); i.addEventListener("change", hints);
    });
    hints();
    var node = h("div", null,
      h("fieldset", { class: "card policy" }, h("legend", { text: "What customers may change themselves" }),
        h("p", { class: "help", text: "From the link in their confirmation. The page tells them until when." }),
        h("div", { class: "grid policy-row" },
          checkField(errs, "customer_cancel", "Customers may cancel", canCancel), cancelField),
        h("div", { class: "grid policy-row" },
          checkField(errs, "customer_reschedule", "Customers may reschedule", canMove), moveField, maxField)),
      h("fieldset", { class: "card" }, h("legend", { text: "Who else is told" }),
        checkField(errs, "notify_experts", "Tell experts about their bookings", tell,
          "The expert gets a message with an invitation for each new booking, reschedule and cancellation of theirs.")));
    return { node: node, values: function () {
      return { customer_cancel: canCancel.checked, cancel_notice_minutes: numberOf(cancelBy),
        customer_reschedule: canMove.checked, reschedule_notice_minutes: numberOf(moveBy),
        max_reschedules: numberOf(maxMoves), notify_experts: tell.checked };
    } };
  }

  function settings(focus) {
    var heading = section("Settings");
    var s = state.settings;
    var errs = fieldErrors();
    var tz = zoneSelect("set-tz", s.timezone, false);
    var cal = providerSelect("set-cal", "calendar_provider", s.calendar_provider);
    var video = providerSelect("set-video", "video_provider", s.video_provider);
    var mail = providerSelect("set-mail", "mail_provider", s.mail_provider);
    var rem = h("input", { id: "set-reminders", value: s.reminders.join(", "), inputmode: "numeric" });
    var refund = h("input", { id: "set-auto-refund", type: "checkbox" });
    refund.checked = !!s.auto_refund;
    var hasPolicy = POLICY_FIELDS.some(function (k) { return k in s; });
    var policy = hasPolicy ? policyFieldsets(errs, s) : null;
    main.appendChild(h("form", { class: "card", novalidate: true, onsubmit: function (ev) {
      ev.preventDefault();
      errs.clear();
      if (errs.badNumber()) return;
      var parts = rem.value.split(/[\s,]+/).filter(Boolean);
      if (parts.some(function (p) { return !/^\d+$/.test(p); })) {
        errs.show({ message: "reminders must be whole numbers of minutes, separated by commas." });
        return;
      }
      // PUT replaces the whole document: send every setting as it is (those this form
      // does not show keep their values), the edited ones changed, and not "choices".
      var doc = {};
      Object.keys(s).forEach(function (k) { if (k !== "choices") doc[k] = s[k]; });
      doc.timezone = tz.value; doc.calendar_provider = cal.value; doc.video_provider = video.value;
      doc.mail_provider = mail.value; doc.reminders = parts.map(Number); doc.auto_refund = refund.checked;
      if (policy) {
        var p = policy.values();
        POLICY_FIELDS.forEach(function (k) { if (k in s) doc[k] = p[k]; });
      }
      api("PUT", "/settings", doc)
        .then(function (saved) { saved.choices = s.choices; state.settings = saved; settings(); say("Settings saved."); })
        .catch(function (e) { errs.show(e); });
    } },
      errs.formError,
      h("div", { class: "grid" },
        fieldFor(errs, "timezone", "Shop time zone", tz, "Experts without a time zone of their own work in it."),
        fieldFor(errs, "calendar_provider", "Calendar", cal, "Where bookings become events and busy times come from."),
        fieldFor(errs, "video_provider", "Video", video),
        fieldFor(errs, "mail_provider", "Mail", mail),
        fieldFor(errs, "reminders", "Reminders (minutes before the start)", rem, "For example 1440, 60: a day before and an hour before."),
        fieldFor(errs, "auto_refund", "Refund through Shopify", refund, "When a paid appointment cannot be honoured (the time was taken), also refund it in Shopify, not only log it.")),
      policy ? policy.node : null,
      h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Save settings"))));
    if (focus) heading.focus();
  }

  // ------------------------------------------------------------------ connections

  function connect(provider, url) {
    // OAuth consent pages refuse to be framed: open them at the top level. The session
    // token never goes into a URL: the API (token in the Authorization header) hands
    // out a one-time start URL, good for a minute; the new window opens it, and that
    // page binds the sign-in to this browser with a cookie before going to the provider.
    // The window is opened now, while the click still counts as a user gesture (popup
    // blockers), and pointed at the start URL once it is known.
    var w = window.open("", "_blank");
    if (w) w.opener = null;
    var path = (url || "/admin/api/connections/" + encodeURIComponent(provider) + "/start").replace(/^\/admin\/api/, "");
    api("POST", path).then(function (b) {
      if (w && !w.closed) w.location.href = b.start_url;
      else window.top.location.href = b.start_url;
      say("Continue in the new window, then come back and press Refresh.");
    }).catch(function (err) {
      if (w) w.close();
      fail(err);
    });
  }

  // The app's own Shopify connection: a token exchange (session token -> offline token).
  function exchange(force) {
    return token().then(function (t) {
      return fetch("/auth/token-exchange" + (force ? "?force=1" : ""),
                   { method: "POST", headers: { Authorization: "Bearer " + t, Accept: "application/json" } });
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (b) {
        if (!r.ok) throw new Error("Could not connect to Shopify: " + ((b.error && b.error.message) || "HTTP " + r.status));
        if (b.status === "needs_reauth") throw new Error("Shopify needs you to reconnect the app: " + (b.last_error || "the token was refused") + ".");
        return b;
      });
    });
  }

  // Connectors are rendered from what GET /admin/api/connections says about them, never
  // from their names: `connect` is "oauth" (a sign-in page: the Connect button above)
  // or "form" (fields the page turns into a form), and labels, fields, help texts and
  // the URL to post to all come from the server. A plugin's connector the page has
  // never heard of works like a built-in one.

  var INPUT_TYPES = { text: "text", password: "password", url: "url", email: "email" };

  function uid(prefix) { return prefix + "-" + Math.random().toString(36).slice(2, 10); }

  // The API path (without /admin/api) a connector's connect_url names.
  function apiPath(url) { return String(url).replace(/^\/admin\/api/, ""); }

  // A form from declared FormFields: label/for, required, input type by kind, help text
  // and the field's error (when the server names it) via aria-describedby. `values`
  // prefills text fields; a password is never prefilled (it is never sent back).
  // Returns { node, inputs: {name: input}, showError(err), clearErrors(), values() }.
  function fieldForm(prefix, fields, values) {
    var inputs = {}, errors = {}, helps = {};
    var grid = h("div", { class: "grid" });
    fields.forEach(function (f) {
      var id = uid(prefix + "-" + String(f.name).replace(/[^A-Za-z0-9_-]/g, "_"));
      var kind = INPUT_TYPES[f.kind] ? f.kind : "text";
      var input = h("input", { id: id, name: f.name, type: INPUT_TYPES[kind], required: !!f.required,
        "aria-required": f.required ? "true" : null, placeholder: f.placeholder || null,
        autocomplete: kind === "password" ? "new-password" : (kind === "email" ? "email" : "off"),
        spellcheck: kind === "text" ? null : "false", autocapitalize: kind === "text" ? null : "off" });
      if (kind !== "password" && values && values[f.name] !== undefined && values[f.name] !== null) input.value = String(values[f.name]);
      var help = f.help ? h("p", { class: "help", id: id + "-help", text: f.help }) : null;
      var error = h("p", { class: "field-error", id: id + "-error", hidden: true });
      helps[f.name] = help ? help.id : "";
      if (help) input.setAttribute("aria-describedby", help.id);
      inputs[f.name] = input; errors[f.name] = error;
      grid.appendChild(h("div", { class: "field" },
        h("label", { for: id }, f.label || f.name, f.required ? null : h("span", { class: "optional", text: " (optional)" })),
        input, help, error));
    });
    var formError = h("p", { class: "form-error", role: "alert", id: uid(prefix + "-error"), hidden: true });

    function clearErrors() {
      formError.hidden = true; formError.textContent = "";
      Object.keys(inputs).forEach(function (name) {
        errors[name].hidden = true; errors[name].textContent = "";
        inputs[name].removeAttribute("aria-invalid");
        if (helps[name]) inputs[name].setAttribute("aria-describedby", helps[name]);
        else inputs[name].removeAttribute("aria-describedby");
      });
    }

    // The field an error is about: the server's `field` when it sends one; else, for a
    // validation error of the form itself (code invalid_request, whose sentences start
    // with the field's label, e.g. "User name is required"), the field it names.
    function fieldOf(err) {
      if (err && err.field && inputs[err.field]) return err.field;
      if (!err || err.code !== "invalid_request" || !err.message) return null;
      var hit = null;
      fields.forEach(function (f) {
        var label = f.label || f.name;
        if (!hit && err.message.slice(0, label.length + 1) === label + " ") hit = f.name;
      });
      return hit;
    }

    function showError(err) {
      clearErrors();
      var message = (err && err.message) ? err.message : String(err);
      var name = fieldOf(err);
      if (name) {
        var input = inputs[name];
        errors[name].textContent = message; errors[name].hidden = false;
        input.setAttribute("aria-invalid", "true");
        input.setAttribute("aria-describedby", (errors[name].id + " " + helps[name]).trim());
        input.focus();
      } else {
        formError.textContent = message; formError.hidden = false;
      }
    }

    function collect() {
      var doc = {};
      Object.keys(inputs).forEach(function (name) { doc[name] = inputs[name].value; });
      return doc;
    }

    return { node: h("div", null, formError, grid), inputs: inputs, showError: showError,
      clearErrors: clearErrors, values: collect, formError: formError };
  }

  // The form that connects a form connector: POST connect_url {"values"}; the server
  // checks the values, the connector checks the account, and the answer (201) names it.
  function connectForm(c, holder) {
    var label = c.label || c.provider;
    var headingId = uid("connect-heading");
    var ff = fieldForm("connect", c.fields || [], null);
    var submit = h("button", { type: "submit", class: "primary" }, (c.status === "not_connected" ? "Connect " : "Reconnect ") + label);
    var form = h("form", { class: "card connect-form", novalidate: true, "aria-labelledby": headingId,
      "data-connector": c.provider, onsubmit: function (ev) {
        ev.preventDefault();
        ff.clearErrors();
        submit.disabled = true;
        form.setAttribute("aria-busy", "true");
        api("POST", apiPath(c.connect_url), { values: ff.values() }).then(function (b) {
          // The password leaves the page with the request: clear every secret input
          // before anything else is drawn.
          Object.keys(ff.inputs).forEach(function (n) { if (ff.inputs[n].type === "password") ff.inputs[n].value = ""; });
          return connections(true).then(function () {
            say(label + " connected" + (b && b.account ? " as " + b.account : "") + ".");
          });
        }).catch(function (err) {
          Object.keys(ff.inputs).forEach(function (n) { if (ff.inputs[n].type === "password") ff.inputs[n].value = ""; });
          submit.disabled = false;
          form.removeAttribute("aria-busy");
          ff.showError(err);
        });
      } },
      h("h3", { id: headingId, tabindex: "-1", text: (c.status === "not_connected" ? "Connect " : "Reconnect ") + label }),
      c.help ? h("p", { class: "help", text: c.help }) : null,
      ff.node,
      h("div", { class: "actions" }, submit,
        h("button", { type: "button", onclick: function () { toggleForm(c, holder, false); } }, "Cancel")));
    return form;
  }

  // Shows (or hides) a form connector's form below the table; the button that opened
  // it says so (aria-expanded) and gets the focus back when it closes.
  function toggleForm(c, holder, open) {
    var box = document.getElementById("connect-" + c.formKey);
    var opener = document.getElementById("opener-" + c.formKey);
    if (!box) return;
    box.textContent = "";
    if (opener) opener.setAttribute("aria-expanded", open ? "true" : "false");
    if (!open) { if (opener) opener.focus(); return; }
    var form = connectForm(c, holder);
    box.appendChild(form);
    var first = form.querySelector("input");
    (first || form.querySelector("h3")).focus();
  }

  function connectionAction(c, holder) {
    var label = c.label || c.provider;
    if (c.available === false) return h("span", { class: "off", text: c.unavailable_reason || "Not available on this server." });
    var buttons = [];
    var verb = c.status === "not_connected" ? "Connect " : (c.status === "connected" ? "Change account of " : "Reconnect ");
    if (c.connect === "form") {
      buttons.push(h("button", { type: "button", class: c.status === "connected" ? null : "primary",
        id: "opener-" + c.formKey, "aria-expanded": "false", "aria-controls": "connect-" + c.formKey,
        onclick: function (ev) {
          toggleForm(c, holder, ev.currentTarget.getAttribute("aria-expanded") !== "true");
        } }, verb + label));
    } else if (c.status !== "connected") {
      buttons.push(h("button", { type: "button", class: "primary", onclick: function () { connect(c.provider, c.connect_url); } },
        verb + label));
    }
    if (c.status !== "not_connected") {
      buttons.push(h("button", { type: "button", class: "danger", "aria-label": "Disconnect " + label, "aria-haspopup": "dialog",
        onclick: function () {
          var btn = this;
          confirmDialog({ title: "Disconnect " + label + "?", opener: btn, destructive: true, confirmLabel: "Disconnect",
            body: "What uses this account stops working until it is connected again." }).then(function (yes) {
            if (!yes) return;
            api("DELETE", "/connections/" + encodeURIComponent(c.provider)).then(function () { return connections(true); })
              .then(function () { say(label + " disconnected."); })
              .catch(function (e) { fail(e); if (document.body.contains(btn)) btn.focus(); });
          });
        } }, "Disconnect"));
    }
    return h("span", { class: "row-actions" }, buttons);
  }

  // A provider's per-shop settings (declared as Provider.settings): the form comes from
  // `provider_settings` in GET /admin/api/connections, the save is
  // PUT /admin/api/providers/<kind>/<name>/settings {"values"}, answered with the values
  // now stored, which the form then shows.
  function settingsForm(ps) {
    var label = ps.label || ps.provider;
    var headingId = uid("settings-heading");
    var path = "/providers/" + encodeURIComponent(ps.kind) + "/" + encodeURIComponent(ps.provider) + "/settings";
    var box = h("div");
    function draw(doc) {
      box.textContent = "";
      var ff = fieldForm("setting", doc.fields || [], doc.values || {});
      var submit = h("button", { type: "submit", class: "primary" }, "Save " + label + " settings");
      var form = h("form", { class: "card settings-form", novalidate: true, "aria-labelledby": headingId,
        "data-kind": ps.kind, "data-provider": ps.provider, onsubmit: function (ev) {
          ev.preventDefault();
          ff.clearErrors();
          submit.disabled = true;
          api("PUT", path, { values: ff.values() }).then(function (saved) {
            draw(saved);
            say(label + " settings saved.");
          }).catch(function (err) { submit.disabled = false; ff.showError(err); });
        } },
        h("h3", { id: headingId, text: label + " settings" }),
        h("p", { class: "help", text: "Used by the " + (doc.kind || ps.kind) + " provider this shop has chosen." }),
        ff.node,
        h("div", { class: "actions" }, submit));
      box.appendChild(form);
    }
    draw(ps);
    return box;
  }

  // A provider name as the merchant knows it: its label from the settings' choices.
  function providerLabel(kind, name) {
    var list = ((state.settings && state.settings.choices) || {})[kind + "_provider"] || [];
    for (var i = 0; i < list.length; i++) if (list[i].name === name) return list[i].label || name;
    return name || "—";
  }

  function connections(focus) {
    var heading = section("Connections", "Calendar and video accounts the app works with. Their credentials are stored encrypted.");
    main.appendChild(h("div", { class: "actions" },
      h("button", { type: "button", onclick: function () { connections(); } }, "Refresh"),
      document.body.dataset.demo === "true" ? null :
        h("button", { type: "button", onclick: function () {
          exchange(true).then(function () { say("Shopify connection renewed."); }).catch(fail);
        } }, "Reconnect to Shopify")));
    var holder = h("div", { id: "connections", "aria-busy": "true" }, h("p", { text: "Loading…" }));
    main.appendChild(holder);
    if (focus) heading.focus();
    return api("GET", "/connections").then(function (body) {
      holder.textContent = "";
      var problems = body.problems || [];
      if (problems.length) {
        holder.appendChild(h("div", { class: "card problems" }, h("h3", { text: "Needs attention" }),
          h("ul", null, problems.map(function (p) {
            return h("li", null, h("strong", { text: p.kind + " (" + providerLabel(p.kind, p.provider) + "): " }), p.message);
          }))));
      }
      holder.appendChild(h("p", { class: "help", text: "In use: calendar " + providerLabel("calendar", body.calendar_provider) +
        ", video " + providerLabel("video", body.video_provider) + ", mail " + providerLabel("mail", body.mail_provider) +
        " (change them in Settings)." }));
      var list = (body.connections || []).map(function (c, i) {
        var copy = {};
        Object.keys(c).forEach(function (k) { copy[k] = c[k]; });
        copy.formKey = "c" + i;  // ids from the position, not from a provider's name
        return copy;
      });
      holder.appendChild(table("Accounts", ["Provider", "Account", "Status", "Last error", "Since", "Actions"],
        list.map(function (c) {
          return [c.label || c.provider, c.account || "—",
            h("span", { class: "badge " + (c.status || ""), text: (c.status || "—").replace(/_/g, " ") }),
            c.error ? h("span", { class: "error-text", text: c.error }) : "—",
            c.broken_at ? when(c.broken_at) : (c.connected_at ? when(c.connected_at) : "—"),
            connectionAction(c, holder)];
        }), "No calendar or video providers with an account are installed."));
      list.forEach(function (c) {
        if (c.connect === "form") holder.appendChild(h("div", { id: "connect-" + c.formKey, class: "connect-box" }));
      });
      var forms = body.provider_settings || [];
      if (forms.length) {
        holder.appendChild(h("h3", { class: "section-sub", text: "Provider settings" }));
        forms.forEach(function (ps) { holder.appendChild(settingsForm(ps)); });
      }
      var experts = body.experts || [];
      if (experts.length) {
        holder.appendChild(table("Experts' busy times", ["Expert", "Provider", "Status", "Why", "Last read"],
          experts.map(function (x) {
            return [x.name, x.provider ? providerLabel("calendar", x.provider) : "—",
              h("span", { class: "badge " + (x.status || ""), text: x.status || "—" }),
              x.reason ? h("span", { class: "error-text", text: x.reason }) : "—",
              x.last_synced_at ? when(x.last_synced_at) : "—"];
          }), ""));
      }
      holder.removeAttribute("aria-busy");
    }).catch(function (e) { holder.textContent = ""; holder.removeAttribute("aria-busy"); fail(e); });
  }


  // ------------------------------------------------------------------ routing

  var RENDER = { home: home, services: services, experts: experts, hours: hours, bookings: bookings, refunds: refunds,
    "export": exportSection, settings: settings, connections: connections };

  function route(focus) {
    var name = (location.hash || "#home").slice(1);
    if (SECTIONS.indexOf(name) < 0) name = "home";
    Array.prototype.forEach.call(document.querySelectorAll("#nav a"), function (a) {
      if (a.getAttribute("href") === "#" + name) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    });
    alertBox.textContent = "";
    statusBox.textContent = "";
    RENDER[name](focus);
  }

  // Home comes first in the navigation (a page whose template lacks its link gets one,
  // before anything is drawn).
  (function () {
    var nav = document.getElementById("nav");
    if (nav && !nav.querySelector('a[href="#home"]')) {
      nav.insertBefore(h("li", null, h("a", { href: "#home", text: "Home" })), nav.firstChild);
    }
  })();

  window.addEventListener("hashchange", function () { route(true); });
  // Shopify-managed installs arrive with no token: exchange the session token on load
  // (not in the demo, where there is no Shopify to exchange with).
  if (document.body.dataset.demo !== "true") exchange(false).catch(fail);
  // A provider's OAuth callback lands here with ?connection=&status=[&message=]: open the
  // Connections section and say how it went (the query is then dropped from the URL).
  var landing = (function () {
    var q = new URLSearchParams(location.search), provider = q.get("connection");
    if (!provider) return null;
    var found = { provider: provider, ok: q.get("status") === "connected", message: q.get("message") || "" };
    q.delete("connection"); q.delete("status"); q.delete("message");
    var rest = q.toString();
    try { history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + "#connections"); }
    catch (e) { location.hash = "#connections"; }
    return found;
  })();
  reload().then(function () {
    route(false);
    if (landing) {
      var label = providerLabel("calendar", landing.provider);
      if (label === landing.provider) label = providerLabel("video", landing.provider);
      if (landing.ok) say(label + " is connected.");
      else fail(new Error(label + " could not be connected" + (landing.message ? ": " + landing.message : ".")));
    }
  }).catch(function (e) {
    main.textContent = "";
    main.appendChild(h("h2", { text: "consultbook could not load" }));
    fail(e);
  });
})();
