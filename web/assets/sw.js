// Pro-tonn dashboard service worker. Static assets are cached per release; pages the server
// marks as readable offline are kept after viewing (without CSRF tokens) and forgotten at
// logout. Nothing else (no form posts, no login, no JSON, no export) is ever cached.
"use strict";
var VERSION = "__VERSION__";
var STATIC = "protonn-static-" + VERSION;
var PAGES = "protonn-pages-" + VERSION;
var ASSETS = ["/assets/app.css?v=" + VERSION, "/assets/app.js?v=" + VERSION, "/assets/icon.svg", "/manifest.webmanifest", "/offline"];

self.addEventListener("install", function (event) {
  event.waitUntil(caches.open(STATIC).then(function (cache) { return cache.addAll(ASSETS); }).then(function () { return self.skipWaiting(); }));
});

self.addEventListener("activate", function (event) {
  event.waitUntil(caches.keys().then(function (names) {
    return Promise.all(names.filter(function (n) { return n !== STATIC && n !== PAGES; }).map(function (n) { return caches.delete(n); }));
  }).then(function () { return self.clients.claim(); }));
});

self.addEventListener("message", function (event) {
  if (event.data && event.data.type === "logout") { event.waitUntil(caches.delete(PAGES)); }
});

self.addEventListener("fetch", function (event) {
  var request = event.request;
  var url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) { return; }
  if (url.pathname.indexOf("/assets/") === 0 || url.pathname === "/manifest.webmanifest") {
    event.respondWith(caches.match(request, { cacheName: STATIC }).then(function (hit) { return hit || fetch(request); }));
    return;
  }
  if (request.mode !== "navigate") { return; }
  event.respondWith(fetch(request).then(function (response) {
    if (response.ok && response.headers.get("X-Protonn-Offline") === "page") {
      // Kept without the session's CSRF token: session data stays on the server, and a
      // page read offline cannot submit anything anyway.
      var copy = response.clone();
      copy.text().then(function (html) {
        var kept = new Response(html.replace(/name="csrf" value="[^"]*"/g, 'name="csrf" value=""'), { status: copy.status, headers: copy.headers });
        return caches.open(PAGES).then(function (cache) { return cache.put(request, kept); });
      });
    } else if (response.headers.get("X-Protonn-Offline") === "forget") {
      caches.delete(PAGES);
    }
    return response;
  }, function () {
    return caches.match(request, { cacheName: PAGES }).then(function (hit) {
      return hit || caches.match("/offline", { cacheName: STATIC });
    });
  }));
});
