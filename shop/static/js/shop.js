/* Small enhancements; every page works without them. No inline scripts (the CSP forbids them). */
(function () {
  "use strict";
  // Scripts run: what only a page without them needs can hide (.js in shop.css).
  document.documentElement.classList.add("js");
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
  // htmx does not swap error responses: tell the shopper instead of doing nothing.
  document.addEventListener("htmx:responseError", function () {
    var live = document.getElementById("live");
    if (live) { live.textContent = "Something went wrong. Please try again."; }
  });
})();
