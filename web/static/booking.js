/* consultbook storefront booking calendar.
 *
 * Mounts on every element with [data-consultbook-booking]. Configuration comes from its
 * data attributes:
 *   data-api          the App Proxy prefix on the shop ("/apps/consult"); Shopify signs
 *                     every call made under it and forwards it to the app's /proxy/*
 *   data-root         the storefront root ("/"), where /cart/add.js lives
 *   data-service      the service id (required)
 *   data-variant      the product variant added to the cart (numeric id)
 *   data-experts      JSON [{id, name, timezone}], data-shop-timezone, data-service-title:
 *                     optional; fetched from {api}/book?format=json when absent
 *   data-expert       an expert id to preselect (optional)
 *   data-heading      a heading to show above the calendar (optional)
 *   data-i18n         JSON of translated strings, keyed like T below (optional)
 * No dependencies, no network access except the shop's own origin.
 */
(function () {
  "use strict";

  var T = {
    yourZone: "Your time zone",
    shopZone: "Shop time zone",
    expert: "Expert",
    anyExpert: "Any expert",
    chooseDay: "Choose a day",
    chooseTime: "Choose a time",
    timesOn: "Times on ",
    earlier: "Earlier dates",
    later: "Later dates",
    loading: "Loading free times…",
    none: "No free times in these two weeks. Try later dates.",
    noDay: "Choose a day to see its free times.",
    times: function (n) { return n === 1 ? "1 time" : n + " times"; },
    holding: "Holding this time…",
    heldTitle: "This time is held for you",
    heldFor: "Held for ",
    heldAnnounce: function (m) { return m === 1 ? "One minute left on your hold." : m + " minutes left on your hold."; },
    addToCart: "Add to cart",
    adding: "Adding to cart…",
    another: "Choose another time",
    released: "The time was released. Choose another time.",
    taken: "Sorry, that time was just taken by someone else. Please choose another time.",
    notOffered: "That time is no longer offered. Please choose another time.",
    tooMany: "You are already holding as many times as allowed. Finish checking out, or release a time you are holding, then try again.",
    expired: "Your hold has expired, so the time was released. Please choose a time again.",
    failed: "Something went wrong. Please try again.",
    loadFailed: "Free times could not be loaded. Please reload the page.",
    cartFailed: "The appointment could not be added to the cart: ",
    noVariant: "This consultation is not linked to a product yet, so it cannot be added to the cart.",
    shopTime: "shop time",
    with: " with "
  };

  // ------------------------------------------------------------------ small helpers

  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === "text") node.textContent = v;
        else if (k === "class") node.className = v;
        else if (k.slice(0, 2) === "on") node.addEventListener(k.slice(2), v);
        else node.setAttribute(k, v === true ? "" : v);
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) continue;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  // Dates are "YYYY-MM-DD" strings; arithmetic happens on UTC noon, which no zone shifts.
  function addDays(ymd, n) {
    var d = new Date(ymd + "T12:00:00Z");
    d.setUTCDate(d.getUTCDate() + n);
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate());
  }

  function todayIn(tz) {
    var parts = {};
    new Intl.DateTimeFormat("en-US", { timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit" })
      .formatToParts(new Date()).forEach(function (p) { parts[p.type] = p.value; });
    return parts.year + "-" + parts.month + "-" + parts.day;
  }

  function validZone(tz) {
    try { new Intl.DateTimeFormat("en-US", { timeZone: tz }); return true; } catch (e) { return false; }
  }

  // The page's language, refined by the browser's when they agree ("en" + "en-GB").
  function locale() {
    var page = document.documentElement.lang || "", nav = navigator.language || "";
    if (page && nav.toLowerCase().indexOf(page.toLowerCase() + "-") === 0) return nav;
    return page || nav || "en";
  }

  function fmt(tz, opts) {
    var o = { timeZone: tz };
    Object.keys(opts).forEach(function (k) { o[k] = opts[k]; });
    try { return new Intl.DateTimeFormat(locale(), o); } catch (e) { return new Intl.DateTimeFormat("en", o); }
  }

  function errorOf(body) {
    return body && body.error ? body.error : { code: "", message: "" };
  }

  var uid = 0;

  // ------------------------------------------------------------------ the widget

  function Booking(root) {
    uid += 1;
    this.id = "cb" + uid;
    this.root = root;
    var d = root.dataset;
    this.api = (d.api || "/apps/consult").replace(/\/$/, "");
    var shopifyRoot = window.Shopify && window.Shopify.routes && window.Shopify.routes.root;
    this.storeRoot = d.root || shopifyRoot || "/";
    if (this.storeRoot.slice(-1) !== "/") this.storeRoot += "/";
    this.service = d.service;
    this.variant = d.variant || "";
    this.title = d.serviceTitle || "";
    this.shopTz = d.shopTimezone || "";
    this.experts = null;
    if (d.experts) { try { this.experts = JSON.parse(d.experts); } catch (e) { this.experts = null; } }
    this.expert = d.expert || "";
    var detected = "";
    try { detected = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { detected = ""; }
    this.detectedTz = validZone(detected) ? detected : "";
    this.tz = "";
    this.windowStart = "";
    this.days = [];         // [{date, slots: [{start, end, local, experts: [id...]}]}]
    this.selectedDay = "";
    this.hold = null;       // {id, expiresAt, props, slot, expert}
    this.addedToCart = false;
    this.skew = 0;
    this.loadSeq = 0;
  }

  Booking.prototype.start = function () {
    var self = this;
    if (!this.service) return;  // an unconfigured block: its Liquid explains that in the editor
    var ready = (this.experts && this.shopTz) ? Promise.resolve() : this.fetchConfig();
    ready.then(function () {
      self.tz = self.detectedTz || self.shopTz;
      self.windowStart = todayIn(self.tz);
      self.build();
      self.load(false);
    }).catch(function () {
      self.root.appendChild(el("p", { role: "alert", text: T.loadFailed }));
    });
    window.addEventListener("pagehide", function () { self.releaseOnExit(); });
  };

  Booking.prototype.fetchConfig = function () {
    var self = this;
    return fetch(this.api + "/book?format=json&service=" + encodeURIComponent(this.service),
                 { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error("config " + r.status); return r.json(); })
      .then(function (c) {
        self.experts = c.experts || [];
        self.shopTz = c.shop_timezone;
        self.title = self.title || (c.service && c.service.title) || "";
        self.variant = self.variant || c.variant_id || "";
      });
  };

  Booking.prototype.build = function () {
    var self = this, id = this.id;
    var root = this.root;
    // A page of its own renders its heading; a block on a product page may ask for one.
    if (root.dataset.heading && !root.querySelector(".cb-title")) {
      root.appendChild(el("h2", { class: "cb-title", text: root.dataset.heading }));
    }

    // Time zone: detected, switchable, the shop's shown beside it.
    var zones = [];
    try { zones = Intl.supportedValuesOf("timeZone").slice(); } catch (e) { zones = []; }
    [this.tz, this.shopTz, "UTC"].concat(this.experts.map(function (x) { return x.timezone; }))
      .forEach(function (z) { if (z && zones.indexOf(z) < 0 && validZone(z)) zones.push(z); });
    zones.sort();
    this.tzSelect = el("select", { id: id + "-tz", onchange: function () { self.setZone(this.value); } });
    zones.forEach(function (z) { self.tzSelect.appendChild(el("option", { value: z, text: z.replace(/_/g, " ") })); });
    this.tzSelect.value = this.tz;

    this.expertSelect = el("select", { id: id + "-expert", onchange: function () { self.setExpert(this.value); } },
      el("option", { value: "", text: T.anyExpert }));
    this.experts.forEach(function (x) { self.expertSelect.appendChild(el("option", { value: x.id, text: x.name })); });
    if (this.experts.some(function (x) { return x.id === self.expert; })) this.expertSelect.value = this.expert;
    else this.expert = "";

    var controls = el("div", { class: "cb-controls" },
      el("div", { class: "cb-field" }, el("label", { for: id + "-tz", text: T.yourZone }), this.tzSelect),
      el("p", { class: "cb-shop-tz" }, T.shopZone + ": ", el("strong", { "data-shop-tz": "", text: this.shopTz.replace(/_/g, " ") })),
      el("div", { class: "cb-field" }, el("label", { for: id + "-expert", text: T.expert }), this.expertSelect));

    this.status = el("p", { class: "cb-status", role: "status", "aria-live": "polite" });
    this.alert = el("p", { class: "cb-alert", role: "alert" });

    // Days with free slots.
    this.prevBtn = el("button", { type: "button", class: "cb-nav-btn", onclick: function () { self.move(-14); } }, "‹ " + T.earlier);
    this.nextBtn = el("button", { type: "button", class: "cb-nav-btn", onclick: function () { self.move(14); } }, T.later + " ›");
    this.rangeLabel = el("span", { class: "cb-range", "aria-live": "polite" });
    this.dayList = el("ul", { class: "cb-days", "aria-labelledby": id + "-days-h" });
    var daysSection = el("section", { class: "cb-section" },
      el("h3", { id: id + "-days-h", text: T.chooseDay }),
      el("div", { class: "cb-nav" }, this.prevBtn, this.rangeLabel, this.nextBtn),
      this.dayList);

    // Times of the chosen day.
    this.slotsHeading = el("h3", { id: id + "-slots-h", tabindex: "-1", text: T.chooseTime });
    this.slotList = el("ul", { class: "cb-slots", "aria-labelledby": id + "-slots-h" });
    this.slotsSection = el("section", { class: "cb-section" }, this.slotsHeading, this.slotList);

    // The hold: what is held, a countdown, add to cart or back out.
    this.holdHeading = el("h3", { id: id + "-hold-h", tabindex: "-1", text: T.heldTitle });
    this.holdSummary = el("p", { class: "cb-hold-summary" });
    this.countdown = el("span", { class: "cb-countdown", role: "timer", "aria-live": "off" });
    this.holdAnnounce = el("span", { class: "cb-sr", "aria-live": "polite" });
    this.addBtn = el("button", { type: "button", class: "cb-primary", onclick: function () { self.addToCart(); } }, T.addToCart);
    this.releaseBtn = el("button", { type: "button", class: "cb-secondary", onclick: function () { self.release(true); } }, T.another);
    this.holdPanel = el("section", { class: "cb-hold", hidden: true, "aria-labelledby": id + "-hold-h" },
      this.holdHeading, this.holdSummary,
      el("p", { class: "cb-timer" }, T.heldFor, this.countdown, this.holdAnnounce),
      el("div", { class: "cb-actions" }, this.addBtn, this.releaseBtn));

    root.appendChild(controls);
    root.appendChild(this.status);
    root.appendChild(this.alert);
    root.appendChild(daysSection);
    root.appendChild(this.slotsSection);
    root.appendChild(this.holdPanel);
    root.classList.add("cb-ready");
  };

  Booking.prototype.say = function (text) { this.status.textContent = text || ""; };
  Booking.prototype.warn = function (text) { this.alert.textContent = text || ""; };

  Booking.prototype.setZone = function (tz) {
    if (!validZone(tz)) return;
    this.tz = tz;
    var today = todayIn(tz);
    if (this.windowStart < today) this.windowStart = today;
    this.load(true);
  };

  Booking.prototype.setExpert = function (expert) {
    this.expert = expert;
    this.load(true);
  };

  Booking.prototype.move = function (days) {
    var today = todayIn(this.tz);
    var next = addDays(this.windowStart, days);
    this.windowStart = next < today ? today : next;
    this.selectedDay = "";
    this.load(false, true);
  };

  // Customer dates [windowStart, windowStart+13]. A customer's day can start up to a day
  // before or after the shop's, so ask the shop for one extra day on each side.
  Booking.prototype.load = function (keepDay, focusDays, note) {
    var self = this, seq = ++this.loadSeq;
    var first = this.windowStart, last = addDays(first, 13);
    var url = this.api + "/availability?service=" + encodeURIComponent(this.service) +
      "&start=" + addDays(first, -1) + "&days=16&tz=" + encodeURIComponent(this.tz) +
      (this.expert ? "&expert=" + encodeURIComponent(this.expert) : "");
    this.say(T.loading);
    this.root.setAttribute("aria-busy", "true");
    return fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json().then(function (b) { return { ok: r.ok, body: b }; }); })
      .then(function (res) {
        if (seq !== self.loadSeq) return;
        self.root.removeAttribute("aria-busy");
        if (!res.ok) { self.say(""); self.warn(errorOf(res.body).message || T.loadFailed); return; }
        var byDay = {}, order = [];
        (res.body.slots || []).forEach(function (s) {
          var day = s.local.slice(0, 10);
          if (day < first || day > last) return;
          if (!byDay[day]) { byDay[day] = { date: day, slots: [], index: {} }; order.push(day); }
          var bucket = byDay[day];
          var slot = bucket.index[s.start];
          if (!slot) { slot = bucket.index[s.start] = { start: s.start, end: s.end, local: s.local, experts: [] }; bucket.slots.push(slot); }
          slot.experts.push(s.expert);
        });
        self.days = order.map(function (d) { return byDay[d]; });
        if (!keepDay || !byDay[self.selectedDay]) self.selectedDay = self.days.length ? self.days[0].date : "";
        self.renderDays(first, last);
        self.renderSlots();
        self.say(note || (self.days.length ? "" : T.none));
        if (focusDays) {
          var b = self.dayList.querySelector("button[aria-pressed=true]") || self.nextBtn;
          b.focus();
        }
      })
      .catch(function () {
        if (seq !== self.loadSeq) return;
        self.root.removeAttribute("aria-busy");
        self.say("");
        self.warn(T.loadFailed);
      });
  };

  Booking.prototype.dayLabel = function (ymd, long) {
    var d = new Date(ymd + "T12:00:00Z");
    return fmt("UTC", long ? { weekday: "long", day: "numeric", month: "long", year: "numeric" }
                           : { weekday: "short", day: "numeric", month: "short" }).format(d);
  };

  Booking.prototype.renderDays = function (first, last) {
    var self = this;
    this.prevBtn.disabled = first <= todayIn(this.tz);
    this.rangeLabel.textContent = this.dayLabel(first) + " – " + this.dayLabel(last);
    this.dayList.textContent = "";
    this.days.forEach(function (day) {
      var pressed = day.date === self.selectedDay;
      var b = el("button", {
        type: "button", class: "cb-day", "data-date": day.date, "aria-pressed": pressed ? "true" : "false",
        "aria-label": self.dayLabel(day.date, true) + ", " + T.times(day.slots.length),
        onclick: function () { self.pickDay(day.date); }
      }, el("span", { class: "cb-day-name", text: self.dayLabel(day.date) }),
         el("span", { class: "cb-day-count", text: T.times(day.slots.length) }));
      self.dayList.appendChild(el("li", null, b));
    });
  };

  Booking.prototype.pickDay = function (date) {
    this.selectedDay = date;
    var buttons = this.dayList.querySelectorAll("button");
    Array.prototype.forEach.call(buttons, function (b) { b.setAttribute("aria-pressed", b.dataset.date === date ? "true" : "false"); });
    this.renderSlots();
    this.slotsHeading.focus();
  };

  Booking.prototype.timeLabel = function (iso, tz) {
    return fmt(tz, { hour: "2-digit", minute: "2-digit" }).format(new Date(iso));
  };

  Booking.prototype.renderSlots = function () {
    var self = this;
    this.slotList.textContent = "";
    var day = null;
    this.days.forEach(function (d) { if (d.date === self.selectedDay) day = d; });
    if (!day) {
      this.slotsHeading.textContent = T.chooseTime;
      if (this.days.length) this.slotList.appendChild(el("li", { class: "cb-empty", text: T.noDay }));
      return;
    }
    this.slotsHeading.textContent = T.timesOn + this.dayLabel(day.date, true);
    var showShop = this.shopTz && this.shopTz !== this.tz;
    day.slots.forEach(function (slot) {
      var mine = self.timeLabel(slot.start, self.tz);
      var shop = showShop ? self.timeLabel(slot.start, self.shopTz) : "";
      var label = mine + (showShop ? " (" + shop + " " + T.shopTime + ", " + self.shopTz + ")" : "") +
        (self.expert ? "" : ", " + self.expertNames(slot.experts));
      var held = self.hold && self.hold.slot.start === slot.start;
      self.slotList.appendChild(el("li", null, el("button", {
        type: "button", class: held ? "cb-slot cb-held" : "cb-slot", "data-start": slot.start,
        "data-experts": slot.experts.join(" "), "aria-current": held ? "true" : null,
        "aria-label": label, onclick: function () { self.take(slot, this); }
      }, el("span", { class: "cb-slot-time", text: mine }),
         showShop ? el("span", { class: "cb-slot-shop", "aria-hidden": "true", text: shop + " " + T.shopTime }) : null)));
    });
  };

  Booking.prototype.expertNames = function (ids) {
    var names = {};
    this.experts.forEach(function (x) { names[x.id] = x.name; });
    return ids.map(function (i) { return names[i] || i; }).join(" / ");
  };

  // ------------------------------------------------------------------ holds

  Booking.prototype.post = function (path, body) {
    return fetch(this.api + path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body)
    }).then(function (r) {
      var date = Date.parse(r.headers.get("Date") || "");
      return r.json().catch(function () { return {}; })
        .then(function (b) { return { status: r.status, body: b, date: date }; });
    });
  };

  Booking.prototype.take = function (slot, button) {
    var self = this;
    if (this.busy) return;
    this.busy = true;
    this.warn("");
    this.say(T.holding);
    var done = function () { self.busy = false; };
    var previous = this.hold ? this.release(false) : Promise.resolve();
    var candidates = slot.experts.slice();
    var attempt = function () {
      var expert = candidates.shift();
      return self.post("/holds", { service: self.service, expert: expert, start: slot.start, tz: self.tz }).then(function (res) {
        if (res.status === 201) { self.held(res, slot, expert); return; }
        var code = errorOf(res.body).code;
        // "Any expert": another expert free at the same time is as good.
        if (res.status === 409 && candidates.length) return attempt();
        self.say("");
        if (res.status === 409 || code === "slot_unavailable") self.refused(T.taken, button);
        else if (res.status === 422 || code === "not_a_slot") self.refused(T.notOffered, button);
        else if (res.status === 429 || code === "too_many_holds") self.refused(T.tooMany, null);
        else self.refused(errorOf(res.body).message || T.failed, null);
      });
    };
    previous.then(attempt).then(done, function () { done(); self.say(""); self.warn(T.failed); });
  };

  Booking.prototype.refused = function (message, button) {
    var self = this;
    if (button) {
      button.disabled = true;
      button.setAttribute("aria-disabled", "true");
    }
    this.warn(message);
    // The list is stale: fetch it again, keep the day, and put focus back in the times.
    this.load(true).then(function () { self.slotsHeading.focus(); });
  };

  Booking.prototype.held = function (res, slot, expert) {
    var self = this;
    if (!isNaN(res.date)) this.skew = Date.now() - res.date;
    this.hold = {
      id: res.body.hold, expiresAt: Date.parse(res.body.expires_at), props: res.body.line_item_properties || {},
      slot: slot, expert: expert
    };
    this.addedToCart = false;
    var name = this.expertNames([expert]);
    var when = fmt(this.tz, { weekday: "long", day: "numeric", month: "long", hour: "2-digit", minute: "2-digit" })
      .format(new Date(slot.start));
    var summary = this.title + T.with + name + ": " + when + " (" + this.tz.replace(/_/g, " ") + ")";
    if (this.shopTz && this.shopTz !== this.tz) {
      summary += " — " + this.timeLabel(slot.start, this.shopTz) + " " + T.shopTime + " (" + this.shopTz.replace(/_/g, " ") + ")";
    }
    this.holdSummary.textContent = summary;
    this.addBtn.disabled = false;
    this.releaseBtn.disabled = false;
    this.holdPanel.hidden = false;
    this.holdPanel.dataset.hold = this.hold.id;
    this.renderSlots();  // mark the held time
    this.say("");
    this.lastAnnounced = Math.ceil((this.hold.expiresAt - (Date.now() - this.skew)) / 60000);
    this.tick();
    clearInterval(this.timer);
    this.timer = setInterval(function () { self.tick(); }, 1000);
    this.holdHeading.focus();
  };

  Booking.prototype.tick = function () {
    if (!this.hold) return;
    var left = Math.max(0, Math.round((this.hold.expiresAt - (Date.now() - this.skew)) / 1000));
    this.countdown.textContent = Math.floor(left / 60) + ":" + pad(left % 60);
    // The visible timer is silent; screen readers hear the whole minutes only.
    var minutes = Math.ceil(left / 60);
    if (left > 0 && left % 60 === 0 && minutes !== this.lastAnnounced) {
      this.lastAnnounced = minutes;
      this.holdAnnounce.textContent = T.heldAnnounce(minutes);
    }
    if (left <= 0) this.expire();
  };

  Booking.prototype.clearHold = function () {
    clearInterval(this.timer);
    this.timer = null;
    this.hold = null;
    this.holdPanel.hidden = true;
    delete this.holdPanel.dataset.hold;
    Array.prototype.forEach.call(this.slotList.querySelectorAll(".cb-held"), function (b) {
      b.classList.remove("cb-held");
      b.removeAttribute("aria-current");
    });
  };

  Booking.prototype.expire = function () {
    if (this.addedToCart) return;
    this.clearHold();
    this.warn(T.expired);
    var self = this;
    this.load(true).then(function () { self.slotsHeading.focus(); });
  };

  // Back out: give the slot back at once. `interactive` refreshes and moves focus.
  Booking.prototype.release = function (interactive) {
    var self = this, hold = this.hold;
    if (!hold) return Promise.resolve();
    this.clearHold();
    var req = fetch(this.api + "/holds/" + encodeURIComponent(hold.id),
                    { method: "DELETE", credentials: "same-origin" }).catch(function () { return null; });
    if (!interactive) return req;
    this.releaseBtn.disabled = true;
    return req.then(function () {
      self.warn("");
      return self.load(true, false, T.released);
    }).then(function () { self.slotsHeading.focus(); });
  };

  // Leaving the page without adding to the cart backs out too (keepalive outlives the page).
  Booking.prototype.releaseOnExit = function () {
    if (!this.hold || this.addedToCart) return;
    try {
      fetch(this.api + "/holds/" + encodeURIComponent(this.hold.id),
            { method: "DELETE", credentials: "same-origin", keepalive: true });
    } catch (e) { /* the hold expires on its own */ }
    this.clearHold();
  };

  Booking.prototype.addToCart = function () {
    var self = this, hold = this.hold;
    if (!hold) return;
    if (!this.variant) { this.warn(T.noVariant); return; }
    this.addBtn.disabled = true;
    this.say(T.adding);
    fetch(this.storeRoot + "cart/add.js", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ items: [{ id: Number(this.variant), quantity: 1, properties: hold.props }] })
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (b) { return { ok: r.ok, body: b }; });
    }).then(function (res) {
      if (!res.ok) {
        self.addBtn.disabled = false;
        self.say("");
        self.warn(T.cartFailed + (res.body.description || res.body.message || res.body.status || ""));
        return;
      }
      self.addedToCart = true;
      clearInterval(self.timer);
      window.location.href = self.storeRoot + "cart";
    }).catch(function () {
      self.addBtn.disabled = false;
      self.say("");
      self.warn(T.failed);
    });
  };

  // A theme block passes its translated strings as JSON in data-i18n (same keys as T).
  function translate(root) {
    if (!root.dataset.i18n) return;
    try {
      var given = JSON.parse(root.dataset.i18n);
      Object.keys(given).forEach(function (k) {
        if (typeof T[k] === "string" && typeof given[k] === "string" && given[k]) T[k] = given[k];
      });
    } catch (e) { /* keep English */ }
  }

  function mount() {
    var roots = document.querySelectorAll("[data-consultbook-booking]");
    Array.prototype.forEach.call(roots, function (root) {
      if (root.dataset.consultbookMounted) return;
      root.dataset.consultbookMounted = "1";
      translate(root);
      new Booking(root).start();
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mount);
  else mount();
})();
