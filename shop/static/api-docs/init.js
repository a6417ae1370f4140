/* Starts Swagger UI on /api/docs. A static file, not an inline script: the CSP allows
   scripts from this site only. The document's URL comes from the page (data-spec-url). */
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  if (!root || typeof window.SwaggerUIBundle !== "function") {
    return;
  }
  window.ui = window.SwaggerUIBundle({
    url: root.getAttribute("data-spec-url"),
    domNode: root,
    deepLinking: true,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null,
    tryItOutEnabled: false,
    persistAuthorization: false
  });
  var fallback = document.getElementById("api-operations");
  if (fallback) {
    fallback.hidden = true;
  }
}());
