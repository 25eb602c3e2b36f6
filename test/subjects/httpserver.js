// An HTTP/1.1 server on 127.0.0.1:PORT (process.argv[2]) for Node.js,
// keeping connections open with no timeout, that answers each request
// with the count of requests served so far: "request N path P". It
// prints "ready" once it listens.
const http = require('http');

let served = 0;
const server = http.createServer((req, res) => {
	served++;
	const body = `request ${served} path ${req.url}\n`;
	res.writeHead(200, {'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body)});
	res.end(body);
});
server.keepAliveTimeout = 0;
server.listen(Number(process.argv[2]), '127.0.0.1', () => console.log('ready'));
