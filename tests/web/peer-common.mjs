// What the local HTTPS peers of the end-to-end tests (console-server.mjs, h2-server.mjs) share:
// a throw-away test CA with one leaf certificate (made with the openssl CLI), listening on an
// ephemeral loopback port, exiting on SIGTERM/SIGINT, the one JSON line printed to stdout once the
// peer is ready, and two small HTTP helpers. Node standard library only.

import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

function openssl(dir, args) {
  try {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    if (e.code === 'ENOENT') throw new Error('the openssl command was not found (Debian package: openssl)');
    const stderr = e.stderr ? e.stderr.toString().trim() : String(e);
    throw new Error(`openssl ${args[0]} failed: ${stderr}`);
  }
}

function randomSerial() {
  return `0x${crypto.randomBytes(12).toString('hex')}`;
}

/**
 * Creates DIR (if needed) and in it a throw-away CA (`ca.pem`, `ca.key`) named `caName`, and one
 * EC P-256 leaf (`leaf.pem`, `leaf.key`) for `subjectAltName` with EKU serverAuth, both valid for
 * 30 days. Throws an Error that says what went wrong when openssl is missing or fails.
 *
 * @param {string} dir absolute directory for the files
 * @param {{caName: string, subjectAltName: string}} names the CA's common name and the leaf's SANs
 * @returns {{ca: string, key: Buffer, cert: Buffer}} the CA file's path, the leaf key and certificate
 */
export function makeTestCertificates(dir, { caName, subjectAltName }) {
  fs.mkdirSync(dir, { recursive: true });
  const caConf = [
    '[req]', 'distinguished_name = dn', 'prompt = no', 'x509_extensions = ca_ext',
    '[dn]', `CN = ${caName}`, 'O = psmgate tests',
    '[ca_ext]',
    'basicConstraints = critical, CA:TRUE, pathlen:0',
    'keyUsage = critical, keyCertSign, cRLSign',
    'subjectKeyIdentifier = hash',
    '',
  ].join('\n');
  const leafExt = [
    'basicConstraints = critical, CA:FALSE',
    'keyUsage = critical, digitalSignature',
    'extendedKeyUsage = serverAuth',
    `subjectAltName = ${subjectAltName}`,
    'subjectKeyIdentifier = hash',
    'authorityKeyIdentifier = keyid',
    '',
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'ca.cnf'), caConf);
  fs.writeFileSync(path.join(dir, 'leaf.ext'), leafExt);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl(dir, ['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '30', '-sha256',
    '-config', 'ca.cnf', '-set_serial', randomSerial()]);
  openssl(dir, ['req', '-new', ...ec, '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', '/CN=localhost/O=psmgate tests']);
  openssl(dir, ['x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-out', 'leaf.pem',
    '-days', '30', '-sha256', '-extfile', 'leaf.ext', '-set_serial', randomSerial()]);
  fs.chmodSync(path.join(dir, 'ca.key'), 0o600);
  fs.chmodSync(path.join(dir, 'leaf.key'), 0o600);
  return {
    ca: path.join(dir, 'ca.pem'),
    key: fs.readFileSync(path.join(dir, 'leaf.key')),
    cert: fs.readFileSync(path.join(dir, 'leaf.pem')),
  };
}

/**
 * Starts `server` listening on an ephemeral port of `host`.
 *
 * @returns {Promise<number>} the port, or a rejection with the listen error
 */
export function listen(server, host) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      server.off('error', reject);
      resolve(server.address().port);
    });
  });
}

/**
 * On SIGTERM or SIGINT: logs `<program>: <signal>, exiting` to stderr, runs `close` and exits
 * with status 0.
 */
export function exitOnSignal(program, close) {
  const shutdown = (signal) => {
    process.stderr.write(`${program}: ${signal}, exiting\n`);
    close();
    process.exit(0);
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

/** Prints the ready line: `info` as one JSON line on stdout, the only thing a peer writes there. */
export function printReady(info) {
  process.stdout.write(`${JSON.stringify(info)}\n`);
}

/** Whether the request's Accept-Encoding allows `coding` (q > 0, explicitly or through `*`). */
export function accepts(req, coding) {
  const header = req.headers['accept-encoding'];
  if (typeof header !== 'string') return false;
  let star = null;
  for (const part of header.split(',')) {
    const [name, ...params] = part.trim().split(';');
    let q = 1;
    for (const p of params) {
      const m = /^\s*q\s*=\s*([0-9.]+)\s*$/i.exec(p);
      if (m) q = Number(m[1]);
    }
    const n = name.trim().toLowerCase();
    if (n === coding) return q > 0;
    if (n === '*') star = q > 0;
  }
  return star === true;
}

/** `s` with the characters that are special in HTML text and attribute values escaped. */
export function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  })[c]);
}
