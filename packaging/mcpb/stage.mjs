#!/usr/bin/env node
// Lays out the Claude Desktop bundle of one platform, ready for `mcpb pack <dir>`:
//
//   node packaging/mcpb/stage.mjs <darwin|win32|linux> <bin-dir> <out-dir>
//
// manifest.json (this folder's, at the workspace's version, for that platform) and
// server/mcp-remote[.exe] from <bin-dir>. For darwin, <bin-dir> holds a universal
// binary (lipo of the x64 and arm64 builds), so one bundle serves both Macs.
import { readFileSync, mkdirSync, copyFileSync, writeFileSync, chmodSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..');
const [platform, binDir, out] = process.argv.slice(2);
if (!['darwin', 'win32', 'linux'].includes(platform) || !binDir || !out) {
  process.stderr.write('usage: stage.mjs <darwin|win32|linux> <bin-dir> <out-dir>\n');
  process.exit(2);
}
const toml = readFileSync(join(repo, 'Cargo.toml'), 'utf8');
const version = ((toml.split('[workspace.package]')[1] || '').match(/^version\s*=\s*"([^"]+)"/m) || [])[1];
if (!version) throw new Error('no version in [workspace.package] of Cargo.toml');

const manifest = JSON.parse(readFileSync(join(here, 'manifest.json'), 'utf8'));
manifest.version = version;
manifest.compatibility.platforms = [platform];
const exe = platform === 'win32' ? '.exe' : '';
manifest.server.entry_point = `server/mcp-remote${exe}`;
mkdirSync(join(out, 'server'), { recursive: true });
const from = join(binDir, `mcp-remote${exe}`);
if (!existsSync(from)) throw new Error(`${from} is missing: build it first`);
copyFileSync(from, join(out, 'server', `mcp-remote${exe}`));
chmodSync(join(out, 'server', `mcp-remote${exe}`), 0o755);
writeFileSync(join(out, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
