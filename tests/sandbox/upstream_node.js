// A node stand-in: answers every line with what it could do (read /etc/passwd, exec /bin/sh) and
// how many threads it runs, proving a threaded runtime starts and serves under the confinement.
const fs = require('fs');
const rl = require('readline').createInterface({input: process.stdin});
rl.on('line', (line) => {
  const msg = JSON.parse(line);
  const attempt = (f) => { try { f(); return 'ok'; } catch (e) { return e.code || String(e); } };
  const text = JSON.stringify({
    ok: true,
    passwd: attempt(() => fs.readFileSync('/etc/passwd')),
    exec: attempt(() => require('child_process').execFileSync('/bin/sh', ['-c', 'true'])),
    env: process.env,
  });
  process.stdout.write(JSON.stringify({jsonrpc: '2.0', id: msg.id, result: {content: [{type: 'text', text}]}}) + '\n');
});
