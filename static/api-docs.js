// /docs and /redoc (templates/api_docs.html): Swagger UI or ReDoc, vendored from npm, drawing
// the server's OpenAPI schema. A file rather than FastAPI's inline start-up code, which the
// pages' Content-Security-Policy would refuse; the settings are FastAPI's defaults.
(function () {
  const BLANK = "data:image/gif;base64,R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw==";
  const el = document.getElementById("api-docs");
  const url = el.dataset.openapi;
  if (el.dataset.kind === "swagger") {
    window.ui = window.SwaggerUIBundle({
      url,
      dom_id: "#api-docs",
      layout: "BaseLayout",
      deepLinking: true,
      showExtensions: true,
      showCommonExtensions: true,
      validatorUrl: null, // the default asks a validator on another host
      presets: [window.SwaggerUIBundle.presets.apis, window.SwaggerUIBundle.SwaggerUIStandalonePreset],
    });
  } else {
    // ReDoc's "API docs by Redocly" footer loads a logo from Redocly's CDN: the policy would
    // refuse it (a console error) and the page must work offline, so images from other hosts
    // become an empty picture on this page.
    const own = (value) =>
      /^(data|blob):/.test(value) || new URL(value, location.href).origin === location.origin;
    const src = Object.getOwnPropertyDescriptor(HTMLImageElement.prototype, "src");
    Object.defineProperty(HTMLImageElement.prototype, "src", {
      ...src, set(value) { src.set.call(this, own(value) ? value : BLANK); },
    });
    const setAttribute = Element.prototype.setAttribute;
    HTMLImageElement.prototype.setAttribute = function (name, value) {
      return setAttribute.call(this, name, name === "src" && !own(value) ? BLANK : value);
    };
    window.Redoc.init(url, {}, el);
  }
})();
