/* The back office's behaviour without inline handlers (the CSP forbids them): Flask-Admin's
   "Add variant/image" buttons, bulk actions, delete confirmations and its placeholder links. */
(function () {
  "use strict";
  // Flask-Admin renames a new inline row's inputs ("sku" -> "variants-2-sku") but not the
  // labels' "for": point them at the renamed inputs so every field keeps its label.
  function relabel(container) {
    if (!container) { return; }
    var rows = container.querySelectorAll(".inline-field-list > .inline-field.fresh");
    var row = rows[rows.length - 1];
    if (!row || !row.id) { return; }
    row.querySelectorAll("label[for]").forEach(function (label) {
      var id = row.id + "-" + label.getAttribute("for");
      if (document.getElementById(id)) { label.setAttribute("for", id); }
    });
  }

  // Capture phase: runs before Flask-Admin's own handlers, which still run afterwards.
  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (!target) { return; }
    var add = target.closest("[data-inline-add]");
    if (add) {
      event.preventDefault();
      if (window.faForm) {
        window.faForm.addInlineField(add, add.getAttribute("data-inline-add"));
        relabel(add.closest(".inline-field"));
      }
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
