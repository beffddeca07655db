// Redoc's side menu shows Redocly's logo from their CDN (https://cdn.redoc.ly/...). These docs
// load nothing from another host, and their Content-Security-Policy would refuse the image
// anyway (a violation on every visit). Loaded before Redoc, this points any image Redoc gives
// a cdn.redoc.ly address, as an attribute or a property, at an empty inline one instead: no
// request, no violation.
(function () {
  "use strict";
  var EMPTY_IMAGE = "data:image/svg+xml,%3Csvg%20xmlns%3D%22http%3A%2F%2Fwww.w3.org%2F2000%2Fsvg%22%2F%3E";
  var REDOCLY_CDN = /^https:\/\/cdn\.redoc\.ly\//;

  function local(value) {
    return REDOCLY_CDN.test(String(value)) ? EMPTY_IMAGE : value;
  }

  var setAttribute = Element.prototype.setAttribute;
  Element.prototype.setAttribute = function (name, value) {
    if (this instanceof HTMLImageElement && String(name).toLowerCase() === "src") {
      value = local(value);
    }
    return setAttribute.call(this, name, value);
  };

  var src = Object.getOwnPropertyDescriptor(HTMLImageElement.prototype, "src");
  Object.defineProperty(HTMLImageElement.prototype, "src", {
    configurable: true,
    enumerable: src.enumerable,
    get: src.get,
    set: function (value) {
      src.set.call(this, local(value));
    },
  });
})();
