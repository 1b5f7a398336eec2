#!/usr/bin/env node
// Lays out the npm packages of this proxy, ready for `npm publish <dir>`:
//
//   node packaging/npm/stage.mjs launcher <out-dir>
//       the `mcp-remote-rs` package: the launcher, one optional dependency per platform
//   node packaging/npm/stage.mjs platform <linux-x64|linux-arm64|darwin-x64|darwin-arm64|win32-x64> <bin-dir> <out-dir>
//       the platform's package: only `mcp-remote` and `mcp-remote-client` from <bin-dir>
//
// The version is the workspace's (Cargo.toml), so the launcher and the binaries
// it finds always come from the same build.
import { readFileSync, mkdirSync, copyFileSync, writeFileSync, chmodSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..');
export const PLATFORMS = {
  'linux-x64': { os: 'linux', cpu: 'x64', target: 'x86_64-unknown-linux-gnu' },
  'linux-arm64': { os: 'linux', cpu: 'arm64', target: 'aarch64-unknown-linux-gnu' },
  'darwin-x64': { os: 'darwin', cpu: 'x64', target: 'x86_64-apple-darwin' },
  'darwin-arm64': { os: 'darwin', cpu: 'arm64', target: 'aarch64-apple-darwin' },
  'win32-x64': { os: 'win32', cpu: 'x64', target: 'x86_64-pc-windows-msvc' },
};
const NAME = 'mcp-remote-rs';

const cargoVersion = () => cargoField('version');

function cargoField(name) {
  const toml = readFileSync(join(repo, 'Cargo.toml'), 'utf8');
  const section = toml.split('[workspace.package]')[1] || '';
  const m = section.match(new RegExp(`^${name}\\s*=\\s*"([^"]+)"`, 'm'));
  if (!m) throw new Error(`no ${name} in [workspace.package] of Cargo.toml`);
  return m[1];
}

const common = (version) => ({
  version,
  license: cargoField('license'),
  homepage: cargoField('repository'),
  repository: { type: 'git', url: cargoField('repository') },
});

function launcher(out) {
  const version = cargoVersion();
  mkdirSync(join(out, 'bin'), { recursive: true });
  for (const f of ['launch.js', 'mcp-remote-rs.js', 'mcp-remote-rs-client.js']) {
    copyFileSync(join(here, NAME, 'bin', f), join(out, 'bin', f));
    chmodSync(join(out, 'bin', f), 0o755);
  }
  copyFileSync(join(here, NAME, 'README.md'), join(out, 'README.md'));
  const pkg = {
    name: NAME,
    ...common(version),
    description: 'Reach a remote MCP server from a client that only speaks stdio: the Rust drop-in for mcp-remote (same arguments, same token folder)',
    keywords: ['mcp', 'model-context-protocol', 'mcp-remote', 'proxy', 'oauth', 'claude', 'cursor'],
    bin: { [NAME]: 'bin/mcp-remote-rs.js', [`${NAME}-client`]: 'bin/mcp-remote-rs-client.js' },
    files: ['bin', 'README.md'],
    engines: { node: '>=18' },
    optionalDependencies: Object.fromEntries(Object.keys(PLATFORMS).map((p) => [`${NAME}-${p}`, version])),
  };
  writeFileSync(join(out, 'package.json'), JSON.stringify(pkg, null, 2) + '\n');
}

function platform(key, binDir, out) {
  const p = PLATFORMS[key];
  if (!p) throw new Error(`unknown platform ${key}: one of ${Object.keys(PLATFORMS).join(', ')}`);
  const version = cargoVersion();
  const exe = p.os === 'win32' ? '.exe' : '';
  mkdirSync(join(out, 'bin'), { recursive: true });
  for (const name of ['mcp-remote', 'mcp-remote-client']) {
    const from = join(binDir, name + exe);
    if (!existsSync(from)) throw new Error(`${from} is missing: build the ${p.target} binaries first`);
    copyFileSync(from, join(out, 'bin', name + exe));
    chmodSync(join(out, 'bin', name + exe), 0o755);
  }
  const pkg = {
    name: `${NAME}-${key}`,
    ...common(version),
    description: `The ${key} programs of ${NAME} (installed by the ${NAME} package; not meant to be used alone)`,
    os: [p.os],
    cpu: [p.cpu],
    files: ['bin'],
    preferUnplugged: true,
  };
  writeFileSync(join(out, 'package.json'), JSON.stringify(pkg, null, 2) + '\n');
  writeFileSync(join(out, 'README.md'), `# ${pkg.name}\n\nThe ${key} build of [${NAME}](https://www.npmjs.com/package/${NAME}). Install \`${NAME}\`, not this.\n`);
}

const [what, ...args] = process.argv.slice(2);
if (what === 'launcher' && args.length === 1) launcher(args[0]);
else if (what === 'platform' && args.length === 3) platform(...args);
else if (what === 'version') process.stdout.write(cargoVersion() + '\n');
else {
  process.stderr.write('usage: stage.mjs launcher <out> | platform <key> <bin-dir> <out> | version\n');
  process.exit(2);
}
