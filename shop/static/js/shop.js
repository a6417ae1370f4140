/* Small enhancements; every page works without them. No inline scripts (the CSP forbids them). */
(function () {
  "use strict";
  // Scripts run: what only a page without them needs can hide (.js in shop.css).
  document.documentElement.classList.add("js");
  // The header stays at the window's top: what a link leads to or focus reaches is scrolled
  // below it (shop.css's scroll-padding), by its real height, which changes as it wraps.
  var header = document.querySelector(".site-header");
  if (header) {
    var measure = function () {
      document.documentElement.style.setProperty("--header-height", header.offsetHeight + "px");
    };
    measure();
    if (window.ResizeObserver) { new ResizeObserver(measure).observe(header); }
  }
  // A second click on "Place order" while the first is on its way does nothing visible twice
  // (the server is idempotent anyway).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.classList && form.classList.contains("place-order")) {
      var button = form.querySelector("button[type=submit]");
      if (button) {
        window.setTimeout(function () { button.disabled = true; button.textContent = "Placing order…"; }, 0);
      }
    }
  });

  // Messages for an answer that carries none of the shop's own (a proxy's error page).
  var FALLBACK = {
    400: "Your form expired or was sent from elsewhere. Please reload the page and try again.",
    413: "The request is too large; please send less data.",
    429: "Too many requests. Please wait a moment and try again."
  };
  var GENERIC = "Something went wrong. Please try again.";
  var OFFLINE = "The shop could not be reached. Check your connection and try again.";

  // A message over the page (base.html's #toasts, where the shopper is), read out by the live
  // region. One that asks for a reload stays until the page changes; others fade.
  function tell(message, stay) {
    var toasts = document.getElementById("toasts");
    if (toasts) {
      var p = document.createElement("p");
      p.className = "flash flash-error" + (stay ? " toast-stays" : "");
      p.textContent = message;
      toasts.replaceChildren(p);
    }
    var live = document.getElementById("live");
    if (live) { live.textContent = message; }
  }

  // The shop's error page says what went wrong (errors/error.html's .error-message): show
  // that. DOMParser's document runs no script and loads nothing.
  function errorMessage(xhr) {
    var type = xhr.getResponseHeader("Content-Type") || "";
    if (type.indexOf("text/html") === 0 && xhr.responseText) {
      var doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
      var found = doc.querySelector(".error-message");
      if (found && found.textContent.trim()) { return found.textContent.trim(); }
    }
    return FALLBACK[xhr.status] || GENERIC;
  }

  // The fields a request sent, whose values then show a state the shop has (a cart line's
  // quantity, the shipping estimate, a product's option): a form's fields, a radio's group.
  function fieldsOf(elt) {
    var list = elt.elements ? elt.elements : (elt.form && elt.name ? elt.form.elements[elt.name] : null);
    var all = list ? (list.length === undefined ? [list] : Array.prototype.slice.call(list)) : [elt];
    return all.filter(function (f) {
      return /^(INPUT|SELECT|TEXTAREA)$/.test(f.tagName) && !/^(hidden|submit|button)$/.test(f.type);
    });
  }

  // data-shows-saved: these fields show what the shop saved. A request that succeeded makes
  // their values the saved ones; one that failed puts the saved ones back, so the page never
  // shows a quantity or an option the shop did not take.
  function savedFields(elt) {
    var holder = elt && elt.closest ? elt.closest("[data-shows-saved]") : null;
    return holder ? fieldsOf(holder) : [];
  }

  function keep(fields) {
    fields.forEach(function (f) {
      if (f.type === "checkbox" || f.type === "radio") { f.defaultChecked = f.checked; }
      else if (f.options) { Array.prototype.forEach.call(f.options, function (o) { o.defaultSelected = o.selected; }); }
      else { f.defaultValue = f.value; }
    });
  }

  function restore(fields) {
    fields.forEach(function (f) {
      if (f.type === "checkbox" || f.type === "radio") { f.checked = f.defaultChecked; }
      else if (f.options) { Array.prototype.forEach.call(f.options, function (o) { o.selected = o.defaultSelected; }); }
      else { f.value = f.defaultValue; }
    });
  }

  document.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail.successful) {
      keep(savedFields(event.detail.elt));
      // The shopper is doing things again: a message that asked them to reload is stale.
      var stays = document.querySelector("#toasts .toast-stays");
      if (stays) { stays.remove(); }
    }
  });
  // htmx does not swap error answers: say what happened instead of doing nothing.
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    restore(savedFields(event.detail.elt));
    tell(errorMessage(xhr), xhr.status === 400);
  });
  // Focus stays where the shopper is. htmx keeps it on a control the swap replaced by one
  // with the same id; when the focused control is gone (a coupon applied or removed, a cart
  // line removed, a page of results, an address made default, a review sent), it goes on
  // purpose: to the new part's [data-focus-here] or first control (or the part itself), or,
  // when the part itself went away, to the next one (or the one before), else to main.
  var FOCUSABLE = "a[href], button:not([disabled]), input:not([type=hidden]):not([disabled]), " +
                  "select:not([disabled]), textarea:not([disabled])";
  var lostFocus = null;
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    var active = document.activeElement;
    lostFocus = null;
    if (target && target.id && active && active !== document.body && target.contains(active)) {
      lostFocus = {id: target.id,
                   near: [target.nextElementSibling, target.previousElementSibling]};
    }
  });
  function focusInside(part) {
    var here = part.querySelector("[data-focus-here]") || part.querySelector(FOCUSABLE);
    if (!here) {
      here = part;
      if (!here.hasAttribute("tabindex")) { here.setAttribute("tabindex", "-1"); }
    }
    here.focus();
  }
  function placeFocus() {
    var lost = lostFocus;
    lostFocus = null;
    var active = document.activeElement;
    if (!lost || (active && active !== document.body && document.body.contains(active))) { return; }
    var part = document.getElementById(lost.id);
    if (part) { focusInside(part); return; }
    var near = lost.near.filter(function (el) { return el && document.body.contains(el); })[0];
    var main = document.getElementById("main");
    if (near) { focusInside(near); } else if (main) { main.focus(); }
  }
  // htmx wires up new content when it settles: focus waits for that, or a quick Enter on the
  // new control would post its form without htmx. A part swapped away entirely settles
  // nothing in the page; the end of its request (after the swap) places focus then.
  document.addEventListener("htmx:afterRequest", function () {
    var active = document.activeElement;
    var lost = !active || active === document.body || !document.body.contains(active);
    if (lostFocus && lost && document.getElementById(lostFocus.id)) { return; }
    placeFocus();
  });
  document.addEventListener("htmx:afterSettle", placeFocus);

  // A filter's message is swapped in out of band (catalog/_grid_response.html), its field is
  // not: mark the field invalid exactly when its message says something, as the page has it.
  document.addEventListener("htmx:afterSettle", function () {
    document.querySelectorAll("form.filters [aria-describedby]").forEach(function (field) {
      var message = document.getElementById(field.getAttribute("aria-describedby"));
      if (!message || !/^(INPUT|SELECT|TEXTAREA)$/.test(field.tagName)) { return; }
      if (message.textContent.trim()) { field.setAttribute("aria-invalid", "true"); }
      else { field.removeAttribute("aria-invalid"); }
    });
  });
  // No answer at all (offline, the connection dropped).
  document.addEventListener("htmx:sendError", function (event) {
    restore(savedFields(event.detail.elt));
    tell(OFFLINE, false);
  });
})();
