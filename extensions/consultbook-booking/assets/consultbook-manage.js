/* consultbook: the customer's own bookings, in the storefront's look.
 *
 * [data-consultbook-manage]: the manage page (GET /proxy/manage?booking=ID&token=T, the
 * link in every confirmation mail). Shows the booking in the customer's time zone and the
 * shop's, what the shop's policy allows until when, and lets the customer
 *   - change the time: the booking calendar (booking.js, loaded first) restricted to the
 *     booking's service, its expert kept unless the customer picks "any"; the chosen time
 *     is confirmed, then POST {api}/bookings/ID/reschedule;
 *   - cancel: a confirmation dialog (a modal <dialog>: focus moves in, Escape closes it,
 *     focus comes back), then POST {api}/bookings/ID/cancel.
 *   data-api, data-root, data-booking, data-token, data-locale, data-i18n (the page
 *   inlines the shop language's catalog, web/static/i18n/<locale>.json).
 * [data-consultbook-my-bookings]: the logged-in customer's bookings (GET
 *   {api}/my-bookings), each linking to its manage page; "log in" on 401. data-api,
 *   data-root, data-i18n (the theme block builds it with Liquid's `t`).
 * Strings only from the catalog, dates and times only from Intl; merchant text (service
 * titles, expert names) as entered. No dependencies.
 */
(function () {
  "use strict";

  function el(tag, attrs) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else if (k.slice(0, 2) === "on") node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    });
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c !== null && c !== undefined) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  }

  function catalog(root) {
    try { return JSON.parse(root.dataset.i18n || "{}") || {}; } catch (e) { return {}; }
  }

  // A catalog string with {name} placeholders filled in (the key itself when missing).
  function translator(cat) {
    return function (key, vars) {
      var s = typeof cat[key] === "string" ? cat[key] : key;
      return s.replace(/\{(\w+)\}/g, function (m, k) { return vars && vars[k] !== undefined ? String(vars[k]) : m; });
    };
  }

  // The shop's locale for Intl; a bare language takes the browser's region, as the
  // booking calendar does ("en" + "en-GB": 24-hour times).
  function locale(root) {
    var asked = root.dataset.locale || root.getAttribute("lang") || document.documentElement.lang || "en", loc;
    try { loc = Intl.getCanonicalLocales(asked.replace(/_/g, "-"))[0] || "en"; } catch (e) { loc = "en"; }
    var nav = navigator.language || "";
    if (loc.indexOf("-") < 0 && nav.toLowerCase().indexOf(loc.toLowerCase() + "-") === 0) loc = nav;
    return loc;
  }

  function when(loc, tz, iso) {
    var o = { timeZone: tz, weekday: "long", day: "numeric", month: "long", year: "numeric", hour: "2-digit", minute: "2-digit" };
    try { return new Intl.DateTimeFormat(loc, o).format(new Date(iso)); } catch (e) {
      o.timeZone = "UTC";
      return new Intl.DateTimeFormat("en", o).format(new Date(iso));
    }
  }

  function call(api, method, path, body) {
    var opts = { method: method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    return fetch(api + path, opts).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (b) { return { status: r.status, body: b || {} }; });
    });
  }

  function detectedZone() {
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { return ""; }
  }

  // ------------------------------------------------------------------ the manage page

  function Manage(root) {
    var d = root.dataset;
    this.root = root;
    this.api = (d.api || "/apps/consult").replace(/\/$/, "");
    this.id = d.booking || "";
    this.token = d.token || "";
    this.cat = catalog(root);
    this.t = translator(this.cat);
    this.loc = locale(root);
  }

  Manage.prototype.start = function () {
    var self = this, t = this.t;
    this.status = el("p", { class: "cb-status", role: "status", "aria-live": "polite", text: t("m_loading") });
    this.alert = el("p", { class: "cb-alert", role: "alert" });
    this.body = el("div", { class: "cb-manage-body" });
    this.root.appendChild(this.status);
    this.root.appendChild(this.alert);
    this.root.appendChild(this.body);
    this.root.setAttribute("aria-busy", "true");
    var path = "/bookings/" + encodeURIComponent(this.id) + "?token=" + encodeURIComponent(this.token);
    call(this.api, "GET", path).then(function (res) {
      self.root.removeAttribute("aria-busy");
      self.status.textContent = "";
      if (res.status !== 200 || !res.body.booking) {
        self.alert.textContent = res.status === 404 ? t("m_not_found") : ((res.body.error || {}).message || t("failed"));
        return;
      }
      self.booking = res.body.booking;
      self.render();
      self.root.classList.add("cb-ready");
    }, function () {
      self.root.removeAttribute("aria-busy");
      self.status.textContent = "";
      self.alert.textContent = t("failed");
    });
  };

  Manage.prototype.render = function () {
    var self = this, t = this.t, b = this.booking, loc = this.loc;
    var mine = b.timezone || detectedZone() || b.shop_timezone, shop = b.shop_timezone || mine;
    var rows = [
      [t("m_service"), b.service_title || b.service, "service"],
      [t("m_expert"), b.expert_name || b.expert, "expert"],
      [t("m_your_time", { zone: mine }), when(loc, mine, b.start), "your-time"]
    ];
    if (shop !== mine) rows.push([t("m_shop_time", { zone: shop }), when(loc, shop, b.start), "shop-time"]);
    if (b.seats > 1) rows.push([t("m_seats"), new Intl.NumberFormat(loc).format(b.seats), "seats"]);
    rows.push([t("m_status"), t("m_status_" + b.status), "status"]);
    var dl = el("dl", { class: "cb-facts" });
    rows.forEach(function (r) {
      dl.appendChild(el("div", { "data-fact": r[2] }, el("dt", { text: r[0] }), el("dd", { text: r[1] })));
    });
    this.body.textContent = "";
    this.body.appendChild(dl);
    if (b.status === "cancelled") return;

    // What the policy allows, until when (in the customer's zone).
    var policy = el("ul", { class: "cb-policy" });
    policy.appendChild(el("li", { "data-policy": "reschedule", text: b.can_reschedule && b.reschedule_until
      ? t("m_reschedule_until", { time: when(loc, mine, b.reschedule_until) }) : t("m_reschedule_closed") }));
    policy.appendChild(el("li", { "data-policy": "cancel", text: b.can_cancel && b.cancel_until
      ? t("m_cancel_until", { time: when(loc, mine, b.cancel_until) }) : t("m_cancel_closed") }));
    this.body.appendChild(policy);

    var actions = el("div", { class: "cb-actions" });
    if (b.can_reschedule) {
      this.moveBtn = el("button", { type: "button", class: "cb-primary", "aria-expanded": "false",
        onclick: function () { self.openCalendar(); } }, t("m_reschedule"));
      actions.appendChild(this.moveBtn);
    }
    if (b.can_cancel) {
      this.cancelBtn = el("button", { type: "button", class: "cb-secondary", onclick: function () { self.askCancel(); } }, t("m_cancel"));
      actions.appendChild(this.cancelBtn);
    }
    if (actions.childNodes.length) this.body.appendChild(actions);
    this.confirmBox = el("div", { class: "cb-ask", hidden: true });
    this.calendarBox = el("div", { class: "cb-reschedule" });
    this.body.appendChild(this.calendarBox);
    this.body.appendChild(this.confirmBox);
  };

  // After a change the page is drawn anew: focus goes to its title, the news is spoken.
  Manage.prototype.focusTitle = function () {
    var h = this.root.querySelector(".cb-title");
    if (!h) return;
    h.setAttribute("tabindex", "-1");
    h.focus();
  };

  // The booking calendar, for this service, the booking's expert preselected.
  Manage.prototype.openCalendar = function () {
    var self = this, b = this.booking;
    if (this.calendar || !window.consultbookCalendar) return;
    this.moveBtn.setAttribute("aria-expanded", "true");
    var root = el("div", { class: "consultbook cb-embedded", "data-consultbook-booking": "", "data-consultbook-mounted": "1", "data-api": this.api, "data-root": this.root.dataset.root || "/",
      "data-service": b.service, "data-expert": b.expert, "data-locale": this.root.dataset.locale || "",
      "data-i18n": this.root.dataset.i18n || "", "data-heading": this.t("m_pick") });
    this.calendarBox.appendChild(root);
    this.calendar = window.consultbookCalendar(root, function (slot, expert) { self.pick(slot, expert); });
  };

  Manage.prototype.pick = function (slot, expert) {
    var self = this, t = this.t, box = this.confirmBox, tz = this.calendar.tz || this.booking.timezone;
    var label = when(this.loc, tz, slot.start);
    box.textContent = "";
    var heading = el("h3", { class: "cb-h", tabindex: "-1", text: t("m_move", { when: label }) });
    var go = el("button", { type: "button", class: "cb-primary", onclick: function () { self.move(slot, expert, go); } },
      t("m_move", { when: label }));
    box.appendChild(heading);
    box.appendChild(el("div", { class: "cb-actions" }, go,
      el("button", { type: "button", class: "cb-secondary", onclick: function () {
        box.hidden = true;
        if (self.calendar.slotsHeading) self.calendar.slotsHeading.focus();
      } }, t("m_back"))));
    box.hidden = false;
    go.focus();
  };

  Manage.prototype.move = function (slot, expert, button) {
    var self = this, t = this.t, body = { token: this.token, start: slot.start };
    if (expert === "any" || expert !== this.booking.expert) body.expert = expert;
    button.disabled = true;
    this.alert.textContent = "";
    this.status.textContent = t("m_moving");
    call(this.api, "POST", "/bookings/" + encodeURIComponent(this.id) + "/reschedule", body).then(function (res) {
      button.disabled = false;
      self.status.textContent = "";
      if (res.status === 200 && res.body.booking) {
        self.calendar = null;
        self.booking = res.body.booking;
        self.render();
        self.status.textContent = t("m_moved", { when: when(self.loc, self.booking.timezone || self.booking.shop_timezone, self.booking.start) });
        self.focusTitle();
        return;
      }
      self.refused(res, function () {
        self.confirmBox.hidden = true;
        if (self.calendar) self.calendar.load({ keepDay: true });
      });
    }, function () { button.disabled = false; self.status.textContent = ""; self.alert.textContent = t("failed"); });
  };

  // A refusal said in the customer's words, by its code: policy_closed, taken
  // (slot_unavailable), at a limit, no longer offered (not_a_slot); any other (a booking
  // cancelled meanwhile is a 409 too, a malformed field a 400) in the server's words.
  // Then `after` (refresh what is shown).
  Manage.prototype.refused = function (res, after) {
    var t = this.t, e = res.body.error || {};
    if (e.code === "policy_closed") this.alert.textContent = t("m_policy");
    else if (e.code === "limit_reached") this.alert.textContent = t("limit");
    else if (e.code === "slot_unavailable") this.alert.textContent = t("taken");
    else if (e.code === "not_a_slot") this.alert.textContent = t("not_offered");
    else this.alert.textContent = e.message || t("failed");
    if (after) after();
  };

  Manage.prototype.askCancel = function () {
    var self = this, t = this.t, b = this.booking;
    var text = t("m_cancel_text", { service: b.service_title || b.service, when: when(this.loc, b.timezone || b.shop_timezone, b.start) });
    var dialog = el("dialog", { class: "cb-dialog", "aria-labelledby": "cb-cancel-h", "aria-describedby": "cb-cancel-d" });
    var close = function () { dialog.close(); };
    var no = el("button", { type: "button", class: "cb-secondary", onclick: close }, t("m_cancel_no"));
    var yes = el("button", { type: "button", class: "cb-primary cb-danger", onclick: function () { self.cancel(dialog, yes); } }, t("m_cancel_yes"));
    dialog.appendChild(el("h2", { id: "cb-cancel-h", class: "cb-h", text: t("m_cancel_q") }));
    dialog.appendChild(el("p", { id: "cb-cancel-d", text: text }));
    dialog.appendChild(el("div", { class: "cb-actions" }, no, yes));
    dialog.addEventListener("close", function () {
      dialog.remove();
      if (self.cancelBtn && self.cancelBtn.isConnected) self.cancelBtn.focus();
    });
    this.root.appendChild(dialog);
    if (dialog.showModal) dialog.showModal(); else dialog.setAttribute("open", "");
    no.focus();  // the safe choice first
  };

  Manage.prototype.cancel = function (dialog, button) {
    var self = this, t = this.t;
    button.disabled = true;
    this.alert.textContent = "";
    this.status.textContent = t("m_cancelling");
    call(this.api, "POST", "/bookings/" + encodeURIComponent(this.id) + "/cancel", { token: this.token }).then(function (res) {
      self.status.textContent = "";
      dialog.close();
      if (res.status === 200 && res.body.booking) {
        self.calendar = null;
        self.booking = res.body.booking;
        self.render();
        self.status.textContent = t("m_cancelled");
        self.focusTitle();
        return;
      }
      self.refused(res, null);
    }, function () { dialog.close(); self.status.textContent = ""; self.alert.textContent = t("failed"); });
  };

  // ------------------------------------------------------------------ my bookings

  function MyBookings(root) {
    this.root = root;
    this.api = (root.dataset.api || "/apps/consult").replace(/\/$/, "");
    var store = root.dataset.root || "/";
    this.store = store.slice(-1) === "/" ? store : store + "/";
    this.t = translator(catalog(root));
    this.loc = locale(root);
  }

  MyBookings.prototype.start = function () {
    var self = this, t = this.t, root = this.root;
    var status = el("p", { class: "cb-status", role: "status", "aria-live": "polite", text: t("my_loading") });
    root.appendChild(status);
    root.setAttribute("aria-busy", "true");
    call(this.api, "GET", "/my-bookings").then(function (res) {
      root.removeAttribute("aria-busy");
      status.textContent = "";
      if (res.status === 401) {
        root.appendChild(el("p", { class: "cb-login" }, t("my_login") + " ",
          el("a", { href: self.store + "account/login", text: t("my_login_link") })));
        return;
      }
      if (res.status !== 200) { root.appendChild(el("p", { role: "alert", text: (res.body.error || {}).message || t("failed") })); return; }
      var list = res.body.bookings || [];
      if (!list.length) { root.appendChild(el("p", { text: t("my_none") })); return; }
      var ul = el("ul", { class: "cb-my-list" }), zone = detectedZone() || "UTC";
      list.forEach(function (b) {
        var label = (b.service_title || b.service) + ", " + when(self.loc, b.timezone || zone, b.start);
        ul.appendChild(el("li", { "data-booking": b.id },
          el("a", { href: b.manage_url, text: label }),
          el("span", { class: "cb-my-status", text: " \u00b7 " + t("m_status_" + b.status) })));
      });
      root.appendChild(ul);
      root.classList.add("cb-ready");
    }, function () {
      root.removeAttribute("aria-busy");
      status.textContent = "";
      root.appendChild(el("p", { role: "alert", text: t("failed") }));
    });
  };

  function mount() {
    [["[data-consultbook-manage]", Manage], ["[data-consultbook-my-bookings]", MyBookings]].forEach(function (kind) {
      Array.prototype.forEach.call(document.querySelectorAll(kind[0]), function (root) {
        if (root.dataset.consultbookMounted) return;
        root.dataset.consultbookMounted = "1";
        new kind[1](root).start();
      });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mount);
  else mount();
})();
