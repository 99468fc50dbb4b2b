/* A stand-in for Shopify's App Bridge under `consultbook demo` (never served otherwise).
 * Implements the small part of `window.shopify` the admin page uses: idToken() returns a
 * session token, minted by the demo server for the demo shop, and toast.show(). */
(function () {
  "use strict";
  var cached = null;
  window.shopify = {
    demo: true,
    idToken: function () {
      var now = Date.now() / 1000;
      if (cached && cached.expires_at - now > 10) return Promise.resolve(cached.token);
      return fetch("/demo/session-token", { headers: { Accept: "application/json" }, cache: "no-store" })
        .then(function (r) { if (!r.ok) throw new Error("session token " + r.status); return r.json(); })
        .then(function (body) { cached = body; return body.token; });
    },
    toast: {
      show: function (message) {
        var box = document.getElementById("demo-toast");
        if (!box) {
          box = document.createElement("div");
          box.id = "demo-toast";
          box.setAttribute("aria-hidden", "true"); // the page's own status region announces it
          box.style.cssText = "position:fixed;bottom:1rem;left:50%;transform:translateX(-50%);" +
            "background:#1a1a1a;color:#fff;padding:.5rem 1rem;border-radius:8px;z-index:100";
          document.body.appendChild(box);
        }
        box.textContent = message;
        box.hidden = false;
        clearTimeout(box._t);
        box._t = setTimeout(function () { box.hidden = true; }, 3000);
      }
    }
  };
})();
