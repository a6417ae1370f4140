/* The back office's behaviour without inline handlers (the CSP forbids them): Flask-Admin's
   "Add variant/image" buttons, bulk actions, delete confirmations and its placeholder links. */
(function () {
  "use strict";
  // Capture phase: runs before Flask-Admin's own handlers, which still run afterwards.
  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (!target) { return; }
    var add = target.closest("[data-inline-add]");
    if (add) {
      event.preventDefault();
      if (window.faForm) { window.faForm.addInlineField(add, add.getAttribute("data-inline-add")); }
      return;
    }
    var bulk = target.closest("[data-model-action]");
    if (bulk) {
      event.preventDefault();
      if (window.modelActions) { window.modelActions.execute(bulk.getAttribute("data-model-action")); }
      return;
    }
    // Flask-Admin's placeholder links ("#", "javascript:void(0)"): running a javascript: URL
    // is inline script, which the CSP refuses; Bootstrap's own handlers still run.
    var link = target.closest("a[href='#'], a[href^='javascript:']");
    if (link) { event.preventDefault(); }
  }, true);

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var button = event.submitter || null;
    var message = (button && button.getAttribute("data-confirm")) || form.getAttribute("data-confirm");
    if (message && !window.confirm(message)) { event.preventDefault(); }
  });
})();
