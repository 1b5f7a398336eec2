// Preload (`node -r ./tests/interop/loopback-only.cjs ...`; a bare relative path is taken as a package name) that makes every
// TCP listen() without a host (or with a wildcard host) bind to 127.0.0.1
// instead of the wildcard address. server-everything (`app.listen(PORT)`) and the
// conformance mock servers (`listen(0)`) give no host, and the interop
// harness must only listen on loopback.
"use strict";
const net = require("net");

const HOST = process.env.INTEROP_LISTEN_HOST || "127.0.0.1";
const WILDCARD = new Set([null, undefined, "", "::", "0.0.0.0"]);

// net.Server#listen() ends in `server._listen2(address, port, addressType,
// backlog, fd, flags)` (Node keeps that name so that code can wrap it). The
// address is null when no host was given. Rewriting it here keeps listen()
// synchronous, so `server.listen(0); server.address().port` still works.
const origListen2 = net.Server.prototype._listen2;
net.Server.prototype._listen2 = function (address, port, addressType, backlog, fd, flags) {
  if ((fd === undefined || fd === null || fd === -1) && WILDCARD.has(address)) {
    address = HOST;
    addressType = net.isIP(HOST);
  }
  return origListen2.call(this, address, port, addressType, backlog, fd, flags);
};

// Lifetime guards for processes started by test harnesses:
//  INTEROP_EXIT_ON_STDIN_EOF=1  exit when stdin reaches EOF (the parent holds
//                               the write end and dies / drops it)
//  INTEROP_MAX_LIFETIME_MS=N    exit after N ms no matter what
if (process.env.INTEROP_EXIT_ON_STDIN_EOF === "1") {
  const bye = () => process.exit(0);
  process.stdin.on("end", bye);
  process.stdin.on("close", bye);
  process.stdin.on("error", bye);
  process.stdin.resume();
}
const maxLife = Number(process.env.INTEROP_MAX_LIFETIME_MS || 0);
if (maxLife > 0) setTimeout(() => process.exit(0), maxLife).unref();
