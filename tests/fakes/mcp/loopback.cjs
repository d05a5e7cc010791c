// loopback.cjs — preloaded (node --require) into npm MCP servers that listen on every
// interface: makes a listen(port) without a host listen on 127.0.0.1 only, so tests never
// open ports beyond this machine.
'use strict';
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if ((typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) &&
      typeof args[1] !== 'string') {
    args.splice(1, 0, '127.0.0.1');
  }
  return listen.apply(this, args);
};
