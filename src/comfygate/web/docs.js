// Swagger UI on the gateway's own OpenAPI document; every file comes from the gateway.
"use strict";

window.ui = window.SwaggerUIBundle({
  url: "openapi.json", // relative: the page may be served under a sub-path
  dom_id: "#swagger-ui",
  deepLinking: true,
  // The default validator badge would ask a server elsewhere: none.
  validatorUrl: null,
  presets: [window.SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  defaultModelsExpandDepth: 0,
  tryItOutEnabled: false,
});
