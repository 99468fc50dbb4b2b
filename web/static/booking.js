/* consultbook storefront booking calendar.
 *
 * Mounts on every element with [data-consultbook-booking]. Configuration comes from its
 * data attributes:
 *   data-api          the App Proxy prefix on the shop ("/apps/consult"); Shopify signs
 *                     every call made under it and forwards it to the app's /proxy/*
 *   data-root         the storefront root ("/"), where /cart/add.js lives
 *   data-service      the service id (required)
 *   data-variant      the product variant added to the cart (numeric id)
 *   data-experts      JSON [{id, name, timezone[, photo_url, bio]}], data-shop-timezone,
 *                     data-service-title, data-seats (seats per session), data-questions
 *                     (JSON intake questions): optional; fetched from
 *                     {api}/book?format=json when absent
 *   data-expert       an expert id to preselect (optional)
 *   data-heading      a heading to show above the calendar (optional)
 *   data-locale       the shop's locale (Liquid: request.locale.iso_code); else <html lang>
 *   data-i18n         JSON message catalog for that locale, keyed like EN below: the App
 *                     Proxy page inlines web/static/i18n/<locale>.json, the theme block
 *                     builds it with Liquid's `t` filter from its locales/*.json (optional;
 *                     English when absent)
 * "Any expert" asks the server (availability and holds with expert=any; the hold names
 * the expert it assigned). A service with seats offers a seats picker; its questions are
 * asked before the hold. A day without times offers the waiting list.
 * window.consultbookCalendar(root, onPick) mounts the same calendar for another use (the
 * manage page's reschedule): a chosen time calls onPick(slot, expert) instead of holding.
 * Strings come only from the catalog; dates and times only from Intl. Merchant-entered
 * text (service title, expert names) is shown as entered. No dependencies, no network
 * access except the shop's own origin.
 */
(function () {
  "use strict";

  // BEGIN GENERATED i18n-en: scripts/sync_extension_assets.py from web/static/i18n/en.json
  var EN = {
    "your_zone": "Your time zone",
    "zone_summary": "{city}, {offset}, now {time}",
    "zone_hint": "Type a city or a UTC offset to search.",
    "zones": "Time zones",
    "zone_none": "No time zone matches.",
    "zone_results_one": "1 time zone found.",
    "zone_results_other": "{n} time zones found.",
    "show_zones": "Show all time zones",
    "shop_zone_line": "Shop time zone: {zone} ({offset}, now {time})",
    "expert": "Expert",
    "any_expert": "Any expert",
    "choose_day": "Choose a day",
    "prev_month": "Previous month",
    "next_month": "Next month",
    "day_times_one": "{date}, 1 free time",
    "day_times_other": "{date}, {n} free times",
    "day_none": "{date}, no free times",
    "legend": "Days with free times are marked with a dot.",
    "choose_time": "Choose a time",
    "times_on": "Times on {date}",
    "loading": "Loading free times…",
    "none_month": "No free times in this month. Try the next month.",
    "no_day": "Choose a day to see its free times.",
    "shop_time_of": "{time} shop time",
    "slot_with": "with {names}",
    "holding": "Holding this time…",
    "held_title": "This time is held for you",
    "held_for": "Held for {time}",
    "held_announce_one": "One minute left on your hold.",
    "held_announce_other": "{n} minutes left on your hold.",
    "held_summary": "{service} with {expert}: {when} ({zone})",
    "held_shop": "{time} shop time ({zone})",
    "add_to_cart": "Add to cart",
    "adding": "Adding to cart…",
    "another": "Choose another time",
    "released": "The time was released. Choose another time.",
    "taken": "Sorry, that time was just taken by someone else. Please choose another time.",
    "not_offered": "That time is no longer offered. Please choose another time.",
    "too_many": "You are already holding as many times as allowed. Finish checking out, or release a time you are holding, then try again.",
    "expired": "Your hold has expired, so the time was released. Please choose a time again.",
    "failed": "Something went wrong. Please try again.",
    "load_failed": "Free times could not be loaded. Please reload the page.",
    "cart_failed": "The appointment could not be added to the cart: {reason}",
    "no_variant": "This consultation is not linked to a product yet, so it cannot be added to the cart.",
    "seats_left_one": "1 seat left",
    "seats_left_other": "{n} seats left",
    "seats": "Seats",
    "seats_n_one": "1 seat",
    "seats_n_other": "{n} seats",
    "ask_title": "Your details for {when}",
    "required": "(required)",
    "choose_option": "Choose…",
    "hold_this": "Hold this time",
    "answer_required": "Please answer this question.",
    "answer_invalid": "Please check this answer.",
    "email_invalid": "Please enter a valid email address.",
    "limit": "This expert cannot take more bookings in that period. Please choose another time.",
    "legend_wait": "Choose a day without times to hear when one frees up.",
    "day_full": "No free times on this day.",
    "wait_offer": "Tell me when a time frees up",
    "wait_email": "Your email",
    "wait_send": "Notify me",
    "wait_done": "Thank you. We will email you if a time frees up on {date}.",
    "wait_limit": "You are already on as many waiting lists as allowed."
  };
  // END GENERATED i18n-en

  // BEGIN GENERATED tz-aliases: scripts/tz_aliases.py from tzdata 2026f
  var TZ_ALIASES = {"Africa/Asmera":"Africa/Nairobi","Africa/Timbuktu":"Africa/Abidjan","America/Argentina/ComodRivadavia":"America/Argentina/Catamarca","America/Atka":"America/Adak","America/Buenos_Aires":"America/Argentina/Buenos_Aires","America/Catamarca":"America/Argentina/Catamarca","America/Coral_Harbour":"America/Panama","America/Cordoba":"America/Argentina/Cordoba","America/Ensenada":"America/Tijuana","America/Fort_Wayne":"America/Indiana/Indianapolis","America/Godthab":"America/Nuuk","America/Indianapolis":"America/Indiana/Indianapolis","America/Jujuy":"America/Argentina/Jujuy","America/Knox_IN":"America/Indiana/Knox","America/Louisville":"America/Kentucky/Louisville","America/Mendoza":"America/Argentina/Mendoza","America/Montreal":"America/Toronto","America/Nipigon":"America/Toronto","America/Pangnirtung":"America/Iqaluit","America/Porto_Acre":"America/Rio_Branco","America/Rainy_River":"America/Winnipeg","America/Rosario":"America/Argentina/Cordoba","America/Santa_Isabel":"America/Tijuana","America/Shiprock":"America/Denver","America/Thunder_Bay":"America/Toronto","America/Virgin":"America/Puerto_Rico","America/Yellowknife":"America/Edmonton","Antarctica/South_Pole":"Pacific/Auckland","Asia/Ashkhabad":"Asia/Ashgabat","Asia/Calcutta":"Asia/Kolkata","Asia/Choibalsan":"Asia/Ulaanbaatar","Asia/Chongqing":"Asia/Shanghai","Asia/Chungking":"Asia/Shanghai","Asia/Dacca":"Asia/Dhaka","Asia/Harbin":"Asia/Shanghai","Asia/Istanbul":"Europe/Istanbul","Asia/Kashgar":"Asia/Urumqi","Asia/Katmandu":"Asia/Kathmandu","Asia/Macao":"Asia/Macau","Asia/Rangoon":"Asia/Yangon","Asia/Saigon":"Asia/Ho_Chi_Minh","Asia/Tel_Aviv":"Asia/Jerusalem","Asia/Thimbu":"Asia/Thimphu","Asia/Ujung_Pandang":"Asia/Makassar","Asia/Ulan_Bator":"Asia/Ulaanbaatar","Atlantic/Faeroe":"Atlantic/Faroe","Atlantic/Jan_Mayen":"Europe/Berlin","Australia/ACT":"Australia/Sydney","Australia/Canberra":"Australia/Sydney","Australia/Currie":"Australia/Hobart","Australia/LHI":"Australia/Lord_Howe","Australia/NSW":"Australia/Sydney","Australia/North":"Australia/Darwin","Australia/Queensland":"Australia/Brisbane","Australia/South":"Australia/Adelaide","Australia/Tasmania":"Australia/Hobart","Australia/Victoria":"Australia/Melbourne","Australia/West":"Australia/Perth","Australia/Yancowinna":"Australia/Broken_Hill","Brazil/Acre":"America/Rio_Branco","Brazil/DeNoronha":"America/Noronha","Brazil/East":"America/Sao_Paulo","Brazil/West":"America/Manaus","CET":"Europe/Brussels","Canada/Atlantic":"America/Halifax","Canada/Central":"America/Winnipeg","Canada/Eastern":"America/Toronto","Canada/Mountain":"America/Edmonton","Canada/Newfoundland":"America/St_Johns","Canada/Pacific":"America/Vancouver","Canada/Saskatchewan":"America/Regina","Canada/Yukon":"America/Whitehorse","Chile/Continental":"America/Santiago","Chile/EasterIsland":"Pacific/Easter","Cuba":"America/Havana","EET":"Europe/Athens","EST":"America/Panama","Egypt":"Africa/Cairo","Eire":"Europe/Dublin","Etc/GMT+0":"Etc/GMT","Etc/GMT-0":"Etc/GMT","Etc/GMT0":"Etc/GMT","Etc/Greenwich":"Etc/GMT","Etc/UCT":"UTC","Etc/Universal":"UTC","Etc/Zulu":"UTC","Europe/Belfast":"Europe/London","Europe/Kiev":"Europe/Kyiv","Europe/Nicosia":"Asia/Nicosia","Europe/Tiraspol":"Europe/Chisinau","Europe/Uzhgorod":"Europe/Kyiv","Europe/Zaporozhye":"Europe/Kyiv","GB":"Europe/London","GB-Eire":"Europe/London","GMT":"Etc/GMT","GMT+0":"Etc/GMT","GMT-0":"Etc/GMT","GMT0":"Etc/GMT","Greenwich":"Etc/GMT","HST":"Pacific/Honolulu","Hongkong":"Asia/Hong_Kong","Iceland":"Africa/Abidjan","Iran":"Asia/Tehran","Israel":"Asia/Jerusalem","Jamaica":"America/Jamaica","Japan":"Asia/Tokyo","Kwajalein":"Pacific/Kwajalein","Libya":"Africa/Tripoli","MET":"Europe/Brussels","MST":"America/Phoenix","Mexico/BajaNorte":"America/Tijuana","Mexico/BajaSur":"America/Mazatlan","Mexico/General":"America/Mexico_City","NZ":"Pacific/Auckland","NZ-CHAT":"Pacific/Chatham","Navajo":"America/Denver","PRC":"Asia/Shanghai","Pacific/Enderbury":"Pacific/Kanton","Pacific/Johnston":"Pacific/Honolulu","Pacific/Ponape":"Pacific/Guadalcanal","Pacific/Samoa":"Pacific/Pago_Pago","Pacific/Truk":"Pacific/Port_Moresby","Pacific/Yap":"Pacific/Port_Moresby","Poland":"Europe/Warsaw","Portugal":"Europe/Lisbon","ROC":"Asia/Taipei","ROK":"Asia/Seoul","Singapore":"Asia/Singapore","Turkey":"Europe/Istanbul","UCT":"UTC","US/Alaska":"America/Anchorage","US/Aleutian":"America/Adak","US/Arizona":"America/Phoenix","US/Central":"America/Chicago","US/East-Indiana":"America/Indiana/Indianapolis","US/Eastern":"America/New_York","US/Hawaii":"Pacific/Honolulu","US/Indiana-Starke":"America/Indiana/Knox","US/Michigan":"America/Detroit","US/Mountain":"America/Denver","US/Pacific":"America/Los_Angeles","US/Samoa":"Pacific/Pago_Pago","Universal":"UTC","W-SU":"Europe/Moscow","WET":"Europe/Lisbon","Zulu":"UTC"};
  // END GENERATED tz-aliases

  // Languages with a shipped catalog (web/static/i18n); any other falls back to English.
  var SHIPPED = ["en", "de", "fr", "es", "it", "nl", "pt", "ja", "ar"];
  var RTL = ["ar", "he", "fa", "ur", "ps", "yi", "dv", "ckb", "sd", "ug"];
  var T = {};
  var LOCALE = "en";     // the Intl locale (a shipped language, refined by the browser's region)
  var PLURAL = null;

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
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }

  function append(node, c) {
    if (c === null || c === undefined) return;
    if (Array.isArray(c)) { c.forEach(function (x) { append(node, x); }); return; }
    node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  }

  // A catalog string with {name} placeholders filled in.
  function t(key, vars) {
    var s = typeof T[key] === "string" ? T[key] : (EN[key] || key);
    return s.replace(/\{(\w+)\}/g, function (m, k) {
      return vars && vars[k] !== undefined && typeof vars[k] !== "object" ? String(vars[k]) : m;
    });
  }

  // The plural form for n (key_one, key_few, ... key_other), n formatted for the locale.
  function tn(key, n, vars) {
    var cat = "other";
    try { cat = PLURAL.select(n); } catch (e) { cat = n === 1 ? "one" : "other"; }
    var k = key + "_" + cat;
    if (typeof T[k] !== "string" && typeof EN[k] !== "string") k = key + "_other";
    var nf = FORMATS["n|" + LOCALE] || (FORMATS["n|" + LOCALE] = new Intl.NumberFormat(LOCALE));
    var v = { n: nf.format(n) };
    Object.keys(vars || {}).forEach(function (x) { v[x] = vars[x]; });
    return t(k, v);
  }

  // The same, as nodes: placeholders whose value is a DOM node are put in as that node.
  function tnodes(key, vars) {
    var s = typeof T[key] === "string" ? T[key] : (EN[key] || key), out = [], last = 0;
    s.replace(/\{(\w+)\}/g, function (m, k, at) {
      out.push(s.slice(last, at));
      var v = vars[k];
      out.push(v === undefined ? m : (typeof v === "object" ? v : String(v)));
      last = at + m.length;
      return m;
    });
    out.push(s.slice(last));
    return out;
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  // Dates are "YYYY-MM-DD" strings; arithmetic happens on UTC noon, which no zone shifts.
  function utcNoon(ymd) { return new Date(ymd + "T12:00:00Z"); }
  function ymdOf(d) { return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()); }
  function addDays(ymd, n) { var d = utcNoon(ymd); d.setUTCDate(d.getUTCDate() + n); return ymdOf(d); }
  // ISO weekday: Monday 1 ... Sunday 7.
  function weekday(ymd) { return utcNoon(ymd).getUTCDay() || 7; }
  function monthOf(ymd) { return ymd.slice(0, 7); }
  function addMonths(ym, n) {
    var y = +ym.slice(0, 4), m = +ym.slice(5, 7) - 1 + n;
    y += Math.floor(m / 12); m = ((m % 12) + 12) % 12;
    return y + "-" + pad(m + 1);
  }
  // The same day of the month n months on, clamped to that month's last day.
  function shiftMonths(ymd, n) {
    var ym = addMonths(monthOf(ymd), n), day = +ymd.slice(8, 10);
    var last = +addDays(addMonths(ym, 1) + "-01", -1).slice(8, 10);
    return ym + "-" + pad(Math.min(day, last));
  }

  function todayIn(tz, when) {
    var parts = {};
    new Intl.DateTimeFormat("en-US", { timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit" })
      .formatToParts(when || new Date()).forEach(function (p) { parts[p.type] = p.value; });
    return parts.year + "-" + parts.month + "-" + parts.day;
  }

  function validZone(tz) {
    if (!tz || typeof tz !== "string") return false;
    try { new Intl.DateTimeFormat("en-US", { timeZone: tz }); return true; } catch (e) { return false; }
  }

  // The tz database's name for a zone: browsers report ICU's (often the old) names, such
  // as Asia/Calcutta; the server and the mails use the current ones (Asia/Kolkata).
  function canonicalZone(tz) {
    var seen = 0;
    while (TZ_ALIASES[tz] && seen++ < 4) tz = TZ_ALIASES[tz];
    return tz;
  }

  // "UTC+05:30" and its minutes, at `when`.
  function offsetOf(tz, when) {
    var name = "";
    try {
      new Intl.DateTimeFormat("en-US", { timeZone: tz, timeZoneName: "longOffset" })
        .formatToParts(when).forEach(function (p) { if (p.type === "timeZoneName") name = p.value; });
    } catch (e) { name = ""; }
    var m = /^GMT([+\-\u2212])(\d{1,2})(?::?(\d{2}))?$/.exec(name);
    if (!m) return { label: "UTC", minutes: 0 };
    var minutes = (+m[2] * 60 + (+m[3] || 0)) * (m[1] === "+" ? 1 : -1);
    return { label: "UTC" + (minutes < 0 ? "\u2212" : "+") + pad(+m[2]) + ":" + (m[3] || "00"), minutes: minutes };
  }

  function cityOf(tz) {
    if (tz.indexOf("/") < 0 || tz.indexOf("Etc/") === 0) return tz.replace("Etc/", "");
    return tz.slice(tz.lastIndexOf("/") + 1).replace(/_/g, " ");
  }

  // Formatters are costly to make (a month's labels and times would make hundreds): one
  // per locale, zone and options, kept.
  var FORMATS = {};
  function fmt(tz, opts) {
    var key = LOCALE + "|" + tz + "|" + JSON.stringify(opts);
    if (FORMATS[key]) return FORMATS[key];
    var o = { timeZone: tz };
    Object.keys(opts).forEach(function (k) { o[k] = opts[k]; });
    try { FORMATS[key] = new Intl.DateTimeFormat(LOCALE, o); } catch (e) { FORMATS[key] = new Intl.DateTimeFormat("en", o); }
    return FORMATS[key];
  }

  // For searching: lower case, no accents, "_" and "/" as spaces, any minus as "-".
  function fold(s) {
    return s.normalize("NFD").replace(/[\u0300-\u036f]/g, "").toLowerCase()
      .replace(/[_/]/g, " ").replace(/\u2212/g, "-");
  }

  function errorOf(body) {
    return body && body.error ? body.error : { code: "", message: "" };
  }

  // Whether a refusal is about the field `name`: the server's validation messages start
  // with the API name of the field they are about ("email is not a valid email address",
  // "date 2026-12-01 has passed ..."; the admin's forms read them the same way). A status
  // alone names no field: a refusal of something the customer did not type is said as
  // the server's message.
  function about(err, name) {
    var message = (err && err.message) || "", next = message.charAt(name.length);
    return message.slice(0, name.length) === name && (next === "" || " .[:".indexOf(next) >= 0);
  }

  // The locale asked for (data-locale, else the page's language), the language whose
  // catalog is used, and the Intl locale: the asked one when its catalog ships, else
  // English; a bare language takes the browser's region ("en" + "en-GB", "de" + "de-CH").
  function setLocale(root) {
    var asked = root.dataset.locale || "";
    if (!/^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$/.test(asked)) asked = document.documentElement.lang || "";
    try { asked = Intl.getCanonicalLocales(asked.replace(/_/g, "-"))[0] || "en"; } catch (e) { asked = "en"; }
    var lang = asked.split("-")[0].toLowerCase();
    var loc = SHIPPED.indexOf(lang) >= 0 ? asked : "en";
    var nav = navigator.language || "";
    if (loc.indexOf("-") < 0 && nav.toLowerCase().indexOf(loc.toLowerCase() + "-") === 0) loc = nav;
    LOCALE = loc;
    try { PLURAL = new Intl.PluralRules(loc); } catch (e) { PLURAL = null; }
    var textLang = loc.split("-")[0].toLowerCase();
    T = {};
    if (root.dataset.i18n) {
      try {
        var given = JSON.parse(root.dataset.i18n);
        Object.keys(EN).forEach(function (k) { if (typeof given[k] === "string" && given[k]) T[k] = given[k]; });
      } catch (e) { T = {}; }
    }
    root.setAttribute("lang", loc);
    root.setAttribute("dir", RTL.indexOf(textLang) >= 0 ? "rtl" : "ltr");
  }

  function firstDayOfWeek() {
    try {
      var l = new Intl.Locale(LOCALE);
      var info = l.getWeekInfo ? l.getWeekInfo() : l.weekInfo;
      if (info && info.firstDay >= 1 && info.firstDay <= 7) return info.firstDay;
    } catch (e) { /* older browsers: Monday */ }
    return 1;
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
    this.seats = +d.seats || 1;
    this.questions = [];
    if (d.questions) { try { this.questions = JSON.parse(d.questions) || []; } catch (e) { this.questions = []; } }
    var detected = "";
    try { detected = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { detected = ""; }
    var canonical = canonicalZone(detected);
    this.detectedTz = validZone(canonical) ? canonical : (validZone(detected) ? detected : "");
    this.tz = "";
    this.month = "";        // "YYYY-MM" on show
    this.days = {};         // date -> {date, slots: [{start, end, local, experts: [id...]}]}
    this.selectedDay = "";
    this.focusDate = "";    // the grid's one tab stop
    this.hold = null;       // {id, expiresAt, props, slot, expert}
    this.addedToCart = false;
    this.skew = 0;
    this.loadSeq = 0;
    this.loading = false;
  }

  Booking.prototype.start = function () {
    var self = this;
    if (!this.service) return;  // an unconfigured block: its Liquid explains that in the editor
    var ready = (this.experts && this.shopTz) ? Promise.resolve() : this.fetchConfig();
    ready.then(function () {
      self.shopTz = canonicalZone(self.shopTz);
      self.tz = self.detectedTz || self.shopTz;
      self.weekStart = firstDayOfWeek();
      self.today = todayIn(self.tz);
      self.month = monthOf(self.today);
      self.build();
      self.load({ initial: 2 });
    }).catch(function () {
      self.root.appendChild(el("p", { role: "alert", text: t("load_failed") }));
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
        var s = c.service || {};
        self.seats = s.seats || 1;
        self.questions = s.questions || [];
      });
  };

  Booking.prototype.build = function () {
    var self = this, id = this.id, root = this.root;
    // A page of its own renders its heading; a block on a product page may ask for one.
    if (root.dataset.heading && !root.querySelector(".cb-title")) {
      root.appendChild(el("h2", { class: "cb-title", text: root.dataset.heading }));
    }
    // Section headings sit one level under the calendar's title, or under the page's h1.
    var H = root.querySelector(".cb-title") ? "h3" : "h2";

    // The shop's time, once, under the heading.
    this.shopLine = el("p", { class: "cb-shop-tz" });

    // Time zone: a combobox (type to search) over a listbox grouped by UTC offset.
    this.tzInput = el("input", {
      id: id + "-tz", type: "text", class: "cb-tz-input", role: "combobox", autocomplete: "off",
      spellcheck: "false", "aria-autocomplete": "list", "aria-expanded": "false",
      "aria-controls": id + "-tz-list", "aria-describedby": id + "-tz-desc " + id + "-tz-hint"
    });
    this.tzToggle = el("button", { type: "button", class: "cb-tz-toggle", tabindex: "-1",
      "aria-label": t("show_zones"), "aria-controls": id + "-tz-list", "aria-expanded": "false",
      onclick: function () { self.tzOpen ? self.closeZones(true) : (self.openZones(""), self.tzInput.focus()); } });
    this.tzList = el("div", { id: id + "-tz-list", class: "cb-tz-list", role: "listbox",
      "aria-label": t("zones"), hidden: true });
    this.tzDesc = el("span", { id: id + "-tz-desc", class: "cb-tz-desc" });
    this.tzHint = el("span", { id: id + "-tz-hint", class: "cb-sr", text: t("zone_hint") });
    this.tzCount = el("span", { class: "cb-sr", "aria-live": "polite" });
    this.wireZones();

    this.expertSelect = el("select", { id: id + "-expert", onchange: function () { self.setExpert(this.value); } },
      el("option", { value: "", text: t("any_expert") }));
    this.experts.forEach(function (x) { self.expertSelect.appendChild(el("option", { value: x.id, text: x.name })); });
    if (this.experts.some(function (x) { return x.id === self.expert; })) this.expertSelect.value = this.expert;
    else this.expert = "";

    var controls = el("div", { class: "cb-controls" },
      el("div", { class: "cb-field cb-tz" }, el("label", { for: id + "-tz", text: t("your_zone") }),
        el("div", { class: "cb-tz-box" }, this.tzInput, this.tzToggle, this.tzList),
        this.tzDesc, this.tzHint, this.tzCount),
      el("div", { class: "cb-field" }, el("label", { for: id + "-expert", text: t("expert") }), this.expertSelect));
    this.cardBox = el("div", { class: "cb-card-box" });

    this.status = el("p", { class: "cb-status", role: "status", "aria-live": "polite" });
    this.alert = el("p", { class: "cb-alert", role: "alert" });

    // The month: a grid of 6 weeks, one tab stop (roving tabindex), days with times marked.
    this.prevBtn = el("button", { type: "button", class: "cb-nav-btn", "aria-label": t("prev_month"),
      onclick: function () { self.showMonth(addMonths(self.month, -1)); } }, el("span", { "aria-hidden": "true", text: "\u2039" }));
    this.nextBtn = el("button", { type: "button", class: "cb-nav-btn", "aria-label": t("next_month"),
      onclick: function () { self.showMonth(addMonths(self.month, 1)); } }, el("span", { "aria-hidden": "true", text: "\u203a" }));
    this.monthLabel = el(H, { id: id + "-month", class: "cb-h cb-month", "aria-live": "polite" });
    var head = el("tr");
    for (var i = 0; i < 7; i++) {
      var wd = ymdOf(new Date(Date.UTC(2024, 0, 1 + ((this.weekStart - 1 + i) % 7), 12)));  // 2024-01-01 was a Monday
      head.appendChild(el("th", { scope: "col", abbr: fmt("UTC", { weekday: "long" }).format(utcNoon(wd)) },
        fmt("UTC", { weekday: "narrow" }).format(utcNoon(wd))));
    }
    this.gridBody = el("tbody");
    this.cells = [];
    for (var r = 0; r < 6; r++) {
      var row = el("tr");
      for (var c = 0; c < 7; c++) {
        var b = el("button", { type: "button", class: "cb-cell", tabindex: "-1" });
        var td = el("td", { role: "gridcell" }, b);
        this.cells.push({ td: td, button: b });
        row.appendChild(td);
      }
      this.gridBody.appendChild(row);
    }
    this.grid = el("table", { class: "cb-grid", role: "grid", "aria-labelledby": id + "-month" },
      el("thead", null, head), this.gridBody);
    this.grid.addEventListener("keydown", function (e) { self.gridKey(e); });
    this.grid.addEventListener("click", function (e) {
      var b = e.target.closest && e.target.closest("button.cb-cell");
      if (b && b.dataset.date) self.pickDay(b.dataset.date, true);
    });
    this.grid.addEventListener("focusin", function (e) {
      if (e.target.dataset && e.target.dataset.date) self.setFocusDate(e.target.dataset.date);
    });
    var daysSection = el("section", { class: "cb-section cb-days-section", "aria-labelledby": id + "-days-h" },
      el(H, { id: id + "-days-h", class: "cb-h cb-sr", text: t("choose_day") }),
      el("div", { class: "cb-nav" }, this.prevBtn, this.monthLabel, this.nextBtn),
      this.grid,
      el("p", { class: "cb-legend", text: t("legend") }),
      this.onPick ? null : el("p", { class: "cb-hint", text: t("legend_wait") }));

    // Times of the chosen day: a fixed-height list, so loading never moves the page.
    this.slotsHeading = el(H, { class: "cb-h", id: id + "-slots-h", tabindex: "-1", text: t("choose_time") });
    this.slotList = el("ul", { class: "cb-slots", "aria-labelledby": id + "-slots-h" });
    this.waitBox = el("div", { class: "cb-wait", hidden: true });
    this.slotsSection = el("section", { class: "cb-section cb-slots-section" }, this.slotsHeading, this.slotList, this.waitBox);

    // Before the hold, when the service asks: how many seats, the intake questions.
    this.askHeading = el(H, { class: "cb-h", id: id + "-ask-h", tabindex: "-1" });
    this.askForm = el("form", { class: "cb-ask-form", novalidate: true });
    this.askPanel = el("section", { class: "cb-ask", hidden: true, "aria-labelledby": id + "-ask-h" },
      this.askHeading, this.askForm);

    // The hold: what is held, a countdown, add to cart or back out.
    this.holdHeading = el(H, { class: "cb-h", id: id + "-hold-h", tabindex: "-1", text: t("held_title") });
    this.holdSummary = el("p", { class: "cb-hold-summary" });
    this.holdCard = el("div");
    this.countdown = el("span", { class: "cb-countdown", role: "timer", "aria-live": "off" });
    this.holdAnnounce = el("span", { class: "cb-sr", "aria-live": "polite" });
    this.addBtn = el("button", { type: "button", class: "cb-primary", onclick: function () { self.addToCart(); } }, t("add_to_cart"));
    this.releaseBtn = el("button", { type: "button", class: "cb-secondary", onclick: function () { self.release(true); } }, t("another"));
    this.holdPanel = el("section", { class: "cb-hold", hidden: true, "aria-labelledby": id + "-hold-h" },
      this.holdHeading, this.holdSummary, this.holdCard,
      el("p", { class: "cb-timer" }, tnodes("held_for", { time: this.countdown }), this.holdAnnounce),
      el("div", { class: "cb-actions" }, this.addBtn, this.releaseBtn));

    var title = root.querySelector(".cb-title");
    if (title && title.nextSibling) root.insertBefore(this.shopLine, title.nextSibling);
    else root.appendChild(this.shopLine);
    root.appendChild(controls);
    root.appendChild(this.cardBox);
    root.appendChild(this.status);
    root.appendChild(this.alert);
    root.appendChild(el("div", { class: "cb-picker" }, daysSection, this.slotsSection));
    root.appendChild(this.askPanel);
    root.appendChild(this.holdPanel);
    this.showZone();
    this.showCard();
    this.renderGrid();
    this.renderSlots();
    root.classList.add("cb-ready");
  };

  Booking.prototype.say = function (text) { this.status.textContent = text || ""; };
  Booking.prototype.warn = function (text) { this.alert.textContent = text || ""; };

  // ------------------------------------------------------------------ time zones

  Booking.prototype.showZone = function () {
    var now = new Date(), off = offsetOf(this.tz, now);
    this.tzInput.value = this.tz;
    this.tzDesc.textContent = t("zone_summary", { city: cityOf(this.tz), offset: off.label,
      time: fmt(this.tz, { hour: "2-digit", minute: "2-digit" }).format(now) });
    this.shopLine.textContent = "";
    append(this.shopLine, tnodes("shop_zone_line", {
      zone: el("strong", { "data-shop-tz": "", text: this.shopTz }),
      offset: offsetOf(this.shopTz, now).label,
      time: fmt(this.shopTz, { hour: "2-digit", minute: "2-digit" }).format(now)
    }));
  };

  // Every zone the browser knows, under its tz database name, with its offset now.
  Booking.prototype.zones = function () {
    if (this.zoneList) return this.zoneList;
    var names = [], seen = {}, aliasesOf = {}, now = new Date();
    Object.keys(TZ_ALIASES).forEach(function (a) {
      var c = canonicalZone(a);
      (aliasesOf[c] = aliasesOf[c] || []).push(a);
    });
    var all = [];
    try { all = Intl.supportedValuesOf("timeZone").slice(); } catch (e) { all = []; }
    all.concat([this.tz, this.shopTz, "UTC"], this.experts.map(function (x) { return x.timezone; }))
      .forEach(function (z) {
        if (!z) return;
        var c = canonicalZone(z);
        if (!validZone(c)) c = z;
        if (!seen[c] && validZone(c)) { seen[c] = 1; names.push(c); }
      });
    var generic = null;
    try { generic = new Intl.DateTimeFormat(LOCALE, { timeZoneName: "longGeneric" }); } catch (e) { generic = null; }
    this.zoneList = names.map(function (z) {
      var off = offsetOf(z, now), city = cityOf(z), long = "";
      if (generic) {
        try {
          new Intl.DateTimeFormat(LOCALE, { timeZone: z, timeZoneName: "longGeneric" }).formatToParts(now)
            .forEach(function (p) { if (p.type === "timeZoneName") long = p.value; });
        } catch (e) { long = ""; }
      }
      var keys = [z, city, long, off.label, off.label.replace(/([+\u2212])0/, "$1").replace(":00", "")]
        .concat(aliasesOf[z] || []);
      return { id: z, city: city, long: long, offset: off, search: fold(keys.join(" ")) };
    }).sort(function (a, b) { return a.offset.minutes - b.offset.minutes || (a.city < b.city ? -1 : a.city > b.city ? 1 : 0); });
    return this.zoneList;
  };

  Booking.prototype.wireZones = function () {
    var self = this, input = this.tzInput;
    input.addEventListener("focus", function () { input.select(); });
    input.addEventListener("input", function () { self.openZones(input.value); });
    input.addEventListener("blur", function () { if (!self.pointerInList) self.closeZones(true); });
    input.addEventListener("keydown", function (e) {
      var k = e.key;
      if (k === "ArrowDown" || k === "ArrowUp") {
        e.preventDefault();
        if (!self.tzOpen) { self.openZones(""); return; }
        self.moveActive(k === "ArrowDown" ? 1 : -1);
      } else if (k === "Enter") {
        if (self.tzOpen) { e.preventDefault(); if (self.tzActive >= 0) self.chooseZone(self.tzShown[self.tzActive].id); }
      } else if (k === "Escape") {
        if (self.tzOpen) { e.preventDefault(); self.closeZones(true); }
      } else if (k === "Tab") {
        self.closeZones(true);
      }
    });
    this.tzList.addEventListener("mousedown", function (e) { e.preventDefault(); });  // keep focus in the input
    this.tzList.addEventListener("pointerenter", function () { self.pointerInList = true; });
    this.tzList.addEventListener("pointerleave", function () { self.pointerInList = false; });
    this.tzList.addEventListener("click", function (e) {
      var o = e.target.closest && e.target.closest("[role=option]");
      if (o) self.chooseZone(o.dataset.zone);
    });
  };

  // Show the zones matching `query` (all when empty), grouped by offset; the first match
  // (or the current zone) is the active option.
  Booking.prototype.openZones = function (query) {
    var self = this, id = this.id, q = fold(query.trim());
    if (q === fold(this.tz)) q = "";
    var words = q.split(/\s+/).filter(Boolean);
    this.tzShown = this.zones().filter(function (z) {
      return words.every(function (w) { return z.search.indexOf(w) >= 0; });
    });
    var list = this.tzList, group = null, groupLabel = "", n = 0;
    list.textContent = "";
    this.tzActive = -1;
    this.tzShown.forEach(function (z, i) {
      if (z.offset.label !== groupLabel || !group) {
        groupLabel = z.offset.label;
        n += 1;
        group = el("div", { role: "group", "aria-labelledby": id + "-g" + n },
          el("div", { role: "presentation", id: id + "-g" + n, class: "cb-tz-group", text: groupLabel }));
        list.appendChild(group);
      }
      var selected = z.id === self.tz;
      if (selected && !words.length) self.tzActive = i;
      group.appendChild(el("div", { role: "option", id: id + "-z" + i, class: "cb-tz-option" + (selected ? " cb-current" : ""),
        "data-zone": z.id, "aria-selected": "false" },
        el("span", { class: "cb-tz-city", text: z.city }),
        el("span", { class: "cb-tz-meta", text: (z.long ? z.long + " \u00b7 " : "") + z.id })));
    });
    if (!this.tzShown.length) list.appendChild(el("div", { class: "cb-tz-empty", role: "presentation", text: t("zone_none") }));
    if (this.tzActive < 0 && this.tzShown.length) this.tzActive = 0;
    list.hidden = false;
    this.tzOpen = true;
    this.tzInput.setAttribute("aria-expanded", "true");
    this.tzToggle.setAttribute("aria-expanded", "true");
    this.markActive();
    clearTimeout(this.tzCountTimer);
    this.tzCountTimer = setTimeout(function () {
      self.tzCount.textContent = self.tzShown.length ? tn("zone_results", self.tzShown.length) : t("zone_none");
    }, 400);
  };

  Booking.prototype.moveActive = function (step) {
    if (!this.tzShown.length) return;
    this.tzActive = Math.max(0, Math.min(this.tzShown.length - 1, this.tzActive + step));
    this.markActive();
  };

  Booking.prototype.markActive = function () {
    var self = this, prev = this.tzList.querySelector("[aria-selected=true]");
    if (prev) prev.setAttribute("aria-selected", "false");
    if (this.tzActive < 0) { this.tzInput.removeAttribute("aria-activedescendant"); return; }
    var o = document.getElementById(this.id + "-z" + this.tzActive);
    if (!o) return;
    o.setAttribute("aria-selected", "true");
    this.tzInput.setAttribute("aria-activedescendant", o.id);
    var list = self.tzList;
    if (o.offsetTop < list.scrollTop) list.scrollTop = o.offsetTop - 24;
    else if (o.offsetTop + o.offsetHeight > list.scrollTop + list.clientHeight) {
      list.scrollTop = o.offsetTop + o.offsetHeight - list.clientHeight;
    }
  };

  Booking.prototype.closeZones = function (restore) {
    this.tzOpen = false;
    this.pointerInList = false;
    this.tzList.hidden = true;
    this.tzList.textContent = "";
    this.tzInput.setAttribute("aria-expanded", "false");
    this.tzToggle.setAttribute("aria-expanded", "false");
    this.tzInput.removeAttribute("aria-activedescendant");
    if (restore) this.tzInput.value = this.tz;
  };

  Booking.prototype.chooseZone = function (tz) {
    this.closeZones(false);
    this.setZone(tz);
    this.tzInput.value = this.tz;
  };

  Booking.prototype.setZone = function (tz) {
    tz = canonicalZone(tz);
    if (!validZone(tz)) return;
    this.tz = tz;
    this.today = todayIn(tz);
    if (this.month < monthOf(this.today)) this.month = monthOf(this.today);
    this.showZone();
    this.load({ keepDay: true });
  };

  Booking.prototype.setExpert = function (expert) {
    this.expert = expert;
    this.showCard();
    this.load({ keepDay: true });
  };

  Booking.prototype.expertById = function (id) {
    return this.experts.filter(function (x) { return x.id === id; })[0] || null;
  };

  // An expert's photo and short bio, when the merchant gave them (shown as entered).
  Booking.prototype.card = function (id) {
    var x = this.expertById(id), photo = x && /^https?:\/\//.test(x.photo_url || "") ? x.photo_url : "";
    if (!x || !(photo || x.bio)) return null;
    return el("div", { class: "cb-expert" },
      photo ? el("img", { src: photo, alt: "", width: "56", height: "56", loading: "lazy", decoding: "async" }) : null,
      el("div", null, el("strong", { text: x.name }), x.bio ? el("p", { text: x.bio }) : null));
  };

  Booking.prototype.showCard = function () {
    this.cardBox.textContent = "";
    append(this.cardBox, this.card(this.expert));
  };

  // ------------------------------------------------------------------ the month grid

  // The 42 dates shown: six weeks from the week (per the locale's first weekday) of the 1st.
  Booking.prototype.gridDates = function () {
    var first = this.month + "-01";
    var start = addDays(first, -((weekday(first) - this.weekStart + 7) % 7));
    var out = [];
    for (var i = 0; i < 42; i++) out.push(addDays(start, i));
    return out;
  };

  Booking.prototype.showMonth = function (month, focusDate) {
    var min = monthOf(this.today), max = addMonths(min, 24);
    if (month < min) month = min;
    if (month > max) month = max;
    if (month === this.month && !focusDate) return;
    var changed = month !== this.month;
    this.month = month;
    if (focusDate) this.focusDate = focusDate;
    else if (monthOf(this.focusDate || "") !== month) this.focusDate = month === min ? this.today : month + "-01";
    this.renderGrid();
    if (focusDate) this.focusCell(focusDate);
    if (changed) this.load({ keepDay: true });
  };

  Booking.prototype.dayLabel = function (ymd, long) {
    return fmt("UTC", long ? { weekday: "long", day: "numeric", month: "long", year: "numeric" }
                           : { weekday: "short", day: "numeric", month: "short" }).format(utcNoon(ymd));
  };

  Booking.prototype.renderGrid = function () {
    var self = this, dates = this.gridDates(), today = this.today;
    this.monthLabel.textContent = fmt("UTC", { month: "long", year: "numeric" }).format(utcNoon(this.month + "-15"));
    this.prevBtn.disabled = this.month <= monthOf(today);
    this.nextBtn.disabled = this.month >= addMonths(monthOf(today), 24);
    if (!this.focusDate || dates.indexOf(this.focusDate) < 0) this.focusDate = this.defaultFocus(dates);
    var dayNum = fmt("UTC", { day: "numeric" });
    dates.forEach(function (date, i) {
      var cell = self.cells[i], b = cell.button, day = self.days[date];
      var open = !!(day && day.slots.length) && date >= today;
      var selected = open && date === self.selectedDay;
      b.dataset.date = date;
      b.textContent = dayNum.format(utcNoon(date));
      b.className = "cb-cell" + (open ? " cb-day" : " cb-off") + (monthOf(date) !== self.month ? " cb-outside" : "") +
        (self.loading ? " cb-pending" : "");
      b.setAttribute("tabindex", date === self.focusDate ? "0" : "-1");
      b.setAttribute("aria-label", open ? tn("day_times", day.slots.length, { date: self.dayLabel(date, true) })
                                        : t("day_none", { date: self.dayLabel(date, true) }));
      // A day of this month still to come without times offers the waiting list.
      var wait = !open && !self.loading && !self.onPick && date >= today && monthOf(date) === self.month;
      if (open || wait) {
        b.setAttribute("aria-pressed", selected || (wait && date === self.waitDate) ? "true" : "false");
        b.removeAttribute("aria-disabled");
      } else { b.removeAttribute("aria-pressed"); b.setAttribute("aria-disabled", "true"); }
      if (date === today) b.setAttribute("aria-current", "date"); else b.removeAttribute("aria-current");
      cell.td.setAttribute("aria-selected", selected ? "true" : "false");
    });
  };

  // The tab stop when nothing was focused yet: the chosen day, else the first with times
  // in the month, else today (this month) or the 1st.
  Booking.prototype.defaultFocus = function (dates) {
    var self = this;
    if (this.selectedDay && dates.indexOf(this.selectedDay) >= 0) return this.selectedDay;
    var open = dates.filter(function (d) { return monthOf(d) === self.month && self.days[d] && d >= self.today; });
    if (open.length) return open[0];
    return this.month === monthOf(this.today) ? this.today : this.month + "-01";
  };

  Booking.prototype.cellFor = function (date) {
    for (var i = 0; i < this.cells.length; i++) if (this.cells[i].button.dataset.date === date) return this.cells[i].button;
    return null;
  };

  Booking.prototype.setFocusDate = function (date) {
    if (this.focusDate === date) return;
    var old = this.cellFor(this.focusDate);
    if (old) old.setAttribute("tabindex", "-1");
    this.focusDate = date;
    var b = this.cellFor(date);
    if (b) b.setAttribute("tabindex", "0");
  };

  Booking.prototype.focusCell = function (date) {
    this.setFocusDate(date);
    var b = this.cellFor(date);
    if (b) b.focus();
  };

  // The WAI-ARIA date grid's keys: arrows a day / a week, Home/End the week's first and
  // last day, Page Up/Down a month (with Shift a year). Enter and Space press the button.
  Booking.prototype.gridKey = function (e) {
    var d = this.focusDate, k = e.key, next = null, rtl = this.root.getAttribute("dir") === "rtl";
    if (!d || e.altKey || e.ctrlKey || e.metaKey) return;
    if (k === "ArrowRight") next = addDays(d, rtl ? -1 : 1);
    else if (k === "ArrowLeft") next = addDays(d, rtl ? 1 : -1);
    else if (k === "ArrowDown") next = addDays(d, 7);
    else if (k === "ArrowUp") next = addDays(d, -7);
    else if (k === "Home") next = addDays(d, -((weekday(d) - this.weekStart + 7) % 7));
    else if (k === "End") next = addDays(d, 6 - ((weekday(d) - this.weekStart + 7) % 7));
    else if (k === "PageDown") next = shiftMonths(d, e.shiftKey ? 12 : 1);
    else if (k === "PageUp") next = shiftMonths(d, e.shiftKey ? -12 : -1);
    else return;
    e.preventDefault();
    var first = monthOf(this.today), shown = this.gridDates(), m = monthOf(next);
    if (m < first) {
      // Nothing before this month: its grid's leading (past) days can be visited, no more.
      if (this.month === first) { if (shown.indexOf(next) >= 0) this.focusCell(next); return; }
      next = first + "-01";
      m = first;
    }
    if (m > addMonths(first, 24)) return;
    if (m === this.month) this.focusCell(next);
    else this.showMonth(m, next);
  };

  Booking.prototype.pickDay = function (date, moveFocus) {
    var day = this.days[date];
    if (date < this.today || this.loading) return;  // aria-disabled
    if (!day || !day.slots.length) {
      if (!this.onPick && monthOf(date) === this.month) this.offerWait(date, moveFocus);
      return;
    }
    this.waitDate = "";
    this.selectedDay = date;
    this.focusDate = date;
    this.renderGrid();
    this.renderSlots();
    if (moveFocus) this.slotsHeading.focus();
  };

  // ------------------------------------------------------------------ loading

  // The grid's six weeks in the customer's zone. A customer's day can start up to a day
  // before or after the shop's, so ask the shop for one extra day on each side.
  // opts: keepDay (keep the chosen day if it still has times), initial (skip ahead up to
  // this many empty months), note (status text when done).
  Booking.prototype.load = function (opts) {
    opts = opts || {};
    var self = this, seq = ++this.loadSeq, month = this.month;
    var dates = this.gridDates(), first = dates[0], last = dates[41];
    var url = this.api + "/availability?service=" + encodeURIComponent(this.service) +
      "&start=" + addDays(first, -1) + "&days=44&tz=" + encodeURIComponent(this.tz) +
      "&expert=" + encodeURIComponent(this.expert || (this.noAny ? "" : "any"));
    this.loading = true;
    this.say(t("loading"));
    this.root.setAttribute("aria-busy", "true");
    this.days = {};
    this.renderGrid();
    this.renderSkeleton();
    var finish = function () { self.loading = false; self.root.removeAttribute("aria-busy"); };
    return fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json().then(function (b) { return { ok: r.ok, status: r.status, body: b }; }); })
      .then(function (res) {
        if (seq !== self.loadSeq) return;
        // A server without expert=any: every expert's slots, grouped here as before.
        if (!res.ok && res.status === 422 && !self.expert && !self.noAny) { self.noAny = true; return self.load(opts); }
        finish();
        if (!res.ok) { self.say(""); self.warn(errorOf(res.body).message || t("load_failed")); self.renderGrid(); self.renderSlots(); return; }
        var byDay = {}, any = false;
        (res.body.slots || []).forEach(function (s) {
          var day = s.local.slice(0, 10);
          if (day < first || day > last || day < self.today) return;
          var bucket = byDay[day] || (byDay[day] = { date: day, slots: [], index: {} });
          var slot = bucket.index[s.start];
          if (!slot) { slot = bucket.index[s.start] = { start: s.start, end: s.end, local: s.local, experts: [] }; bucket.slots.push(slot); }
          slot.experts.push(s.expert);
          if (s.seats_left > (slot.seatsLeft || 0)) slot.seatsLeft = s.seats_left;
          if (monthOf(day) === month) any = true;
        });
        if (!any && opts.initial > 0) {
          // Nothing left this month: show the next one (a new visitor should see times).
          self.month = addMonths(month, 1);
          self.focusDate = "";
          return self.load({ initial: opts.initial - 1, note: opts.note });
        }
        self.days = byDay;
        if (!opts.keepDay || !byDay[self.selectedDay]) {
          var open = Object.keys(byDay).sort().filter(function (d) { return monthOf(d) === month; });
          self.selectedDay = open.length ? open[0] : "";
        }
        self.renderGrid();
        self.renderSlots();
        self.say(opts.note || (any ? "" : t("none_month")));
      })
      .catch(function () {
        if (seq !== self.loadSeq) return;
        finish();
        self.say("");
        self.warn(t("load_failed"));
        self.renderGrid();
        self.renderSlots();
      });
  };

  // Grey placeholders where the times will be (the list's height is fixed in the CSS).
  Booking.prototype.renderSkeleton = function () {
    this.slotList.textContent = "";
    this.slotList.setAttribute("aria-busy", "true");
    for (var i = 0; i < 8; i++) this.slotList.appendChild(el("li", { class: "cb-skel", "aria-hidden": "true" }));
  };

  Booking.prototype.timeLabel = function (iso, tz) {
    return fmt(tz, { hour: "2-digit", minute: "2-digit" }).format(new Date(iso));
  };

  Booking.prototype.renderSlots = function () {
    var self = this;
    this.slotList.textContent = "";
    this.slotList.removeAttribute("aria-busy");
    var day = this.days[this.selectedDay];
    this.waitBox.hidden = !!day || !this.waitDate;
    if (!day && this.waitDate) {
      this.slotsHeading.textContent = t("times_on", { date: this.dayLabel(this.waitDate, true) });
      this.slotList.appendChild(el("li", { class: "cb-empty", text: t("day_full") }));
      return;
    }
    if (!day) {
      this.slotsHeading.textContent = t("choose_time");
      this.slotList.appendChild(el("li", { class: "cb-empty", text: Object.keys(this.days).length ? t("no_day") : "" }));
      return;
    }
    this.slotsHeading.textContent = t("times_on", { date: this.dayLabel(day.date, true) });
    var showShop = this.shopTz && this.shopTz !== this.tz;
    day.slots.forEach(function (slot) {
      var mine = self.timeLabel(slot.start, self.tz);
      var held = self.hold && self.hold.slot.start === slot.start;
      // One line on screen; the shop's time (shown once above) and the experts are spoken.
      self.slotList.appendChild(el("li", null, el("button", {
        type: "button", class: held ? "cb-slot cb-held" : "cb-slot", "data-start": slot.start,
        "data-experts": slot.experts.join(" "), "aria-current": held ? "true" : null,
        onclick: function () { self.take(slot, this); }
      }, el("span", { class: "cb-slot-time", text: mine }),
         self.seats > 1 && slot.seatsLeft ? el("span", { class: "cb-seats", text: tn("seats_left", slot.seatsLeft) }) : null,
         showShop ? el("span", { class: "cb-slot-shop cb-sr", text: ", " + t("shop_time_of", { time: self.timeLabel(slot.start, self.shopTz) }) }) : null,
         self.expert || slot.experts[0] === "any" ? null : el("span", { class: "cb-sr", text: ", " + t("slot_with", { names: self.expertNames(slot.experts) }) }))));
    });
  };

  Booking.prototype.expertNames = function (ids) {
    var names = {};
    this.experts.forEach(function (x) { names[x.id] = x.name; });
    names.any = t("any_expert");
    return ids.map(function (i) { return names[i] || i; }).join(" / ");
  };

  // ------------------------------------------------------------------ requests

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

  // ------------------------------------------------------------------ waiting list

  // A day without free times: "tell me when a time frees up", then an email field.
  Booking.prototype.offerWait = function (date, moveFocus) {
    var self = this, id = this.id + "-wait", box = this.waitBox;
    this.selectedDay = "";
    this.waitDate = date;
    this.focusDate = date;
    this.renderGrid();
    this.renderSlots();
    box.textContent = "";
    var email = el("input", { id: id, type: "email", autocomplete: "email", required: true, maxlength: "254",
      "aria-describedby": id + "-err" });
    var err = el("span", { id: id + "-err", class: "cb-err" });
    var form = el("form", { novalidate: true, hidden: true,
      onsubmit: function (e) { e.preventDefault(); self.joinWait(date, email, err); } },
      el("div", { class: "cb-field" }, el("label", { for: id, text: t("wait_email") }), email, err),
      el("button", { type: "submit", class: "cb-primary" }, t("wait_send")));
    var offer = el("button", { type: "button", class: "cb-secondary", "aria-expanded": "false",
      onclick: function () { form.hidden = false; offer.setAttribute("aria-expanded", "true"); email.focus(); } }, t("wait_offer"));
    append(box, [offer, form]);
    if (moveFocus) this.slotsHeading.focus();
  };

  function invalid(input, err, text) {
    input.setAttribute("aria-invalid", "true");
    err.textContent = text;
  }

  function valid(input, err) {
    input.removeAttribute("aria-invalid");
    err.textContent = "";
  }

  var EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

  Booking.prototype.joinWait = function (date, email, err) {
    var self = this, v = email.value.trim();
    this.warn("");
    if (!EMAIL.test(v)) { invalid(email, err, t("email_invalid")); email.focus(); return; }
    valid(email, err);
    this.post("/waitlist", { service: this.service, date: this.shopDateOf(date), email: v, expert: this.expert || "any", tz: this.tz || undefined }).then(function (res) {
      var e = errorOf(res.body);
      if (res.status === 201) {
        var done = t("wait_done", { date: self.dayLabel(date, true) });
        self.waitBox.textContent = "";
        self.waitBox.appendChild(el("p", { class: "cb-done", text: done }));
        self.say(done);
      } else if (e.code === "too_many_entries") self.warn(t("wait_limit"));
      else if (about(e, "email")) { invalid(email, err, t("email_invalid")); email.focus(); }
      else self.warn(e.message || t("failed"));
    }, function () { self.warn(t("failed")); });
  };

  // The instant (ms) the customer's day `ymd` begins in their zone.
  Booking.prototype.dayStart = function (ymd) {
    var wall = utcNoon(ymd).getTime() - 12 * 3600000, at = wall - offsetOf(this.tz, new Date(wall)).minutes * 60000;
    return wall - offsetOf(this.tz, new Date(at)).minutes * 60000;
  };

  // The waiting list counts in the shop's dates; the customer chose a day of their own.
  // Of that day, what is still ahead of them counts (from its start, or from now when it
  // has begun, to its end): the shop's date at the middle of that stretch, which is the
  // shop date holding the most of it. For a day still to come that is the shop's date at
  // the customer's noon; for today it is never a shop date already past, nor one about
  // to end while most of the customer's evening falls on the next.
  Booking.prototype.shopDateOf = function (ymd) {
    var start = this.dayStart(ymd), end = this.dayStart(addDays(ymd, 1));
    var from = Math.min(Math.max(start, Date.now() - this.skew), end - 1);
    return todayIn(this.shopTz, new Date(from + (end - from) / 2));
  };

  // ------------------------------------------------------------------ seats and questions

  Booking.prototype.take = function (slot, button) {
    if (this.busy) return;
    var expert = slot.experts.length === 1 ? slot.experts[0] : "any";
    if (this.onPick) { this.onPick(slot, expert); return; }
    if (this.seats > 1 || this.questions.length) this.ask(slot, button);
    else this.doHold(slot, button, 1, null);
  };

  // One field per question (merchant text as entered), each with its label, required
  // state and an error line the input points at (aria-describedby).
  Booking.prototype.field = function (q) {
    var id = this.id + "-q-" + q.id, input, box = el("div", { class: "cb-field cb-q" });
    var err = el("span", { id: id + "-err", class: "cb-err" });
    var attrs = { id: id, name: q.id, "aria-describedby": id + "-err", required: q.required, "aria-required": q.required ? "true" : null };
    var label = el("label", { for: id }, q.label, q.required ? el("span", { class: "cb-req", text: " " + t("required") }) : null);
    if (q.type === "choice") {
      input = el("select", attrs, el("option", { value: "", text: t("choose_option") }));
      (q.choices || []).forEach(function (c) { input.appendChild(el("option", { value: c, text: c })); });
    } else if (q.type === "textarea") {
      attrs.maxlength = "2000"; attrs.rows = "3";
      input = el("textarea", attrs);
    } else {
      attrs.maxlength = "2000";
      attrs.type = { checkbox: "checkbox", email: "email", phone: "tel" }[q.type] || "text";
      attrs.autocomplete = { email: "email", phone: "tel" }[q.type] || null;
      input = el("input", attrs);
    }
    if (q.type === "checkbox") { box.className += " cb-check"; append(box, [el("div", null, input, label), err]); }
    else append(box, [label, input, err]);
    return { q: q, input: input, err: err, box: box };
  };

  Booking.prototype.ask = function (slot, button) {
    var self = this, form = this.askForm, max = Math.min(slot.seatsLeft || this.seats, this.seats);
    form.textContent = "";
    this.asking = { slot: slot, button: button, fields: this.questions.map(function (q) { return self.field(q); }) };
    this.askHeading.textContent = t("ask_title", { when: this.when(slot.start) });
    if (this.seats > 1) {
      this.seatSelect = el("select", { id: this.id + "-seats" });
      for (var i = 1; i <= Math.max(1, max); i++) this.seatSelect.appendChild(el("option", { value: String(i), text: String(i) }));
      form.appendChild(el("div", { class: "cb-field cb-q" }, el("label", { for: this.id + "-seats", text: t("seats") }), this.seatSelect));
    } else this.seatSelect = null;
    this.asking.fields.forEach(function (f) { form.appendChild(f.box); });
    form.appendChild(el("div", { class: "cb-actions" },
      el("button", { type: "submit", class: "cb-primary" }, t("hold_this")),
      el("button", { type: "button", class: "cb-secondary", onclick: function () { self.closeAsk(true); } }, t("another"))));
    form.onsubmit = function (e) { e.preventDefault(); self.submitAsk(); };
    this.askPanel.hidden = false;
    this.askHeading.focus();
  };

  Booking.prototype.closeAsk = function (refocus) {
    this.askPanel.hidden = true;
    this.asking = null;
    if (refocus) this.slotsHeading.focus();
  };

  // The answers as the hold wants them; a per-field error for what is plainly wrong.
  Booking.prototype.submitAsk = function () {
    var a = this.asking, answers = {}, first = null;
    if (!a || this.busy) return;
    a.fields.forEach(function (f) {
      var q = f.q, v = q.type === "checkbox" ? (f.input.checked ? "true" : "false") : f.input.value.trim();
      var problem = "";
      if (q.required && (v === "" || (q.type === "checkbox" && v !== "true"))) problem = t("answer_required");
      else if (v && q.type === "email" && !EMAIL.test(v)) problem = t("email_invalid");
      if (problem) { invalid(f.input, f.err, problem); first = first || f.input; }
      else valid(f.input, f.err);
      if (v !== "") answers[q.id] = v;
    });
    if (first) { first.focus(); return; }
    this.doHold(a.slot, a.button, this.seatSelect ? +this.seatSelect.value : 1, answers);
  };

  // 422 invalid_answers names the question ("answer to 'id' (label): ..."): mark that
  // field. One that names none of the asked questions (a question the merchant has since
  // removed, answers of the wrong shape) is no field's: false, and it is said as is.
  Booking.prototype.badAnswer = function (message) {
    var a = this.asking, hit = null;
    if (!a) return false;
    a.fields.forEach(function (f) {
      if (!hit && message.indexOf("answer to '" + f.q.id + "'") === 0) hit = f;
    });
    if (!hit) return false;
    invalid(hit.input, hit.err, hit.q.type === "email" ? t("email_invalid") : t("answer_invalid"));
    hit.input.focus();
    return true;
  };

  Booking.prototype.when = function (iso) {
    return fmt(this.tz, { weekday: "long", day: "numeric", month: "long", hour: "2-digit", minute: "2-digit" })
      .format(new Date(iso));
  };

  // ------------------------------------------------------------------ holds

  Booking.prototype.doHold = function (slot, button, seats, answers) {
    var self = this;
    this.busy = true;
    this.warn("");
    this.say(t("holding"));
    var done = function () { self.busy = false; };
    var previous = this.hold ? this.release(false) : Promise.resolve();
    var candidates = slot.experts.length > 1 ? slot.experts.slice() : [slot.experts[0]];
    var attempt = function () {
      var expert = candidates.shift(), body = { service: self.service, expert: expert, start: slot.start, tz: self.tz };
      if (seats > 1) body.seats = seats;
      if (answers) body.answers = answers;
      return self.post("/holds", body).then(function (res) {
        if (res.status === 201) { self.closeAsk(false); self.held(res, slot, res.body.expert || expert); return; }
        var err = errorOf(res.body), code = err.code;
        // Grouped slots (a server without "any"): another expert free then is as good.
        if (res.status === 409 && candidates.length) return attempt();
        self.say("");
        if (code === "invalid_answers") {
          // On the question it names; else the server's words, the answers kept to correct.
          if (!self.badAnswer(err.message || "")) self.warn(err.message || t("failed"));
          return;
        }
        self.closeAsk(false);
        // Each refusal by its code (a status alone says too little: a 422 may be about the
        // answers, a 400 about any field); anything else in the server's words.
        if (code === "limit_reached") self.refused(t("limit"), button);
        else if (code === "slot_unavailable") self.refused(t("taken"), button);
        else if (code === "not_a_slot") self.refused(t("not_offered"), button);
        else if (code === "too_many_holds") self.refused(t("too_many"), null);
        else self.refused(err.message || t("failed"), null);
      });
    };
    previous.then(attempt).then(done, function () { done(); self.say(""); self.warn(t("failed")); });
  };

  Booking.prototype.refused = function (message, button) {
    var self = this;
    if (button) {
      button.disabled = true;
      button.setAttribute("aria-disabled", "true");
    }
    this.warn(message);
    // The list is stale: fetch it again, keep the day, and put focus back in the times.
    this.load({ keepDay: true }).then(function () { self.slotsHeading.focus(); });
  };

  Booking.prototype.held = function (res, slot, expert) {
    var self = this;
    if (!isNaN(res.date)) this.skew = Date.now() - res.date;
    this.hold = {
      id: res.body.hold, expiresAt: Date.parse(res.body.expires_at), props: res.body.line_item_properties || {},
      slot: slot, expert: expert, seats: res.body.seats || 1
    };
    this.addedToCart = false;
    var summary = t("held_summary", { service: this.title, expert: this.expertNames([expert]), when: this.when(slot.start), zone: this.tz });
    if (this.hold.seats > 1) summary += " \u00b7 " + tn("seats_n", this.hold.seats);
    if (this.shopTz && this.shopTz !== this.tz) {
      summary += " \u2014 " + t("held_shop", { time: this.timeLabel(slot.start, this.shopTz), zone: this.shopTz });
    }
    this.holdSummary.textContent = summary;
    this.holdCard.textContent = "";
    append(this.holdCard, this.card(expert));
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
      this.holdAnnounce.textContent = tn("held_announce", minutes);
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
    this.warn(t("expired"));
    var self = this;
    this.load({ keepDay: true }).then(function () { self.slotsHeading.focus(); });
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
      return self.load({ keepDay: true, note: t("released") });
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
    if (!this.variant) { this.warn(t("no_variant")); return; }
    this.addBtn.disabled = true;
    this.say(t("adding"));
    fetch(this.storeRoot + "cart/add.js", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ items: [{ id: Number(this.variant), quantity: hold.seats, properties: hold.props }] })
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (b) { return { ok: r.ok, body: b }; });
    }).then(function (res) {
      if (!res.ok) {
        self.addBtn.disabled = false;
        self.say("");
        self.warn(t("cart_failed", { reason: res.body.description || res.body.message || res.body.status || "" }));
        return;
      }
      self.addedToCart = true;
      clearInterval(self.timer);
      window.location.href = self.storeRoot + "cart";
    }).catch(function () {
      self.addBtn.disabled = false;
      self.say("");
      self.warn(t("failed"));
    });
  };

  // The calendar for another page (the manage page's reschedule): a chosen time is
  // handed to onPick(slot, expert) instead of being held.
  window.consultbookCalendar = function (root, onPick) {
    setLocale(root);
    var b = new Booking(root);
    b.onPick = onPick;
    b.start();
    return b;
  };

  function mount() {
    var roots = document.querySelectorAll("[data-consultbook-booking]");
    Array.prototype.forEach.call(roots, function (root) {
      if (root.dataset.consultbookMounted) return;
      root.dataset.consultbookMounted = "1";
      setLocale(root);
      new Booking(root).start();
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mount);
  else mount();
})();
