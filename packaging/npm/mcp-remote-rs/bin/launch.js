'use strict';
// Runs this package's native binary for the platform it is on, found among the
// optional dependencies npm installed with it: the arguments and the standard
// streams go to it untouched (it inherits them; no byte passes through Node),
// SIGINT, SIGTERM and SIGHUP are passed on, and its exit code (or the signal that
// ended it) becomes this process's. Nothing is downloaded, at install or here.

const { spawn } = require('node:child_process');

const PLATFORMS = {
  'linux-x64': 'mcp-remote-rs-linux-x64',
  'linux-arm64': 'mcp-remote-rs-linux-arm64',
  'darwin-x64': 'mcp-remote-rs-darwin-x64',
  'darwin-arm64': 'mcp-remote-rs-darwin-arm64',
  'win32-x64': 'mcp-remote-rs-win32-x64',
};

function fail(message) {
  process.stderr.write(`mcp-remote-rs: ${message}\n`);
  process.exit(1);
}

function binaryPath(name) {
  const key = `${process.platform}-${process.arch}`;
  const pkg = PLATFORMS[key];
  if (!pkg) {
    fail(`no build for ${key} (there are: ${Object.keys(PLATFORMS).join(', ')}); ` +
      'cargo install mcp-remote builds one from source');
  }
  const file = process.platform === 'win32' ? `${name}.exe` : name;
  try {
    return require.resolve(`${pkg}/bin/${file}`);
  } catch (_) {
    fail(`the package ${pkg}, which holds the program for this platform, is not installed. ` +
      'npm installs it as an optional dependency: was --omit=optional or --no-optional used? ' +
      `Install it with: npm install ${pkg}`);
  }
}

module.exports = function launch(name) {
  const child = spawn(binaryPath(name), process.argv.slice(2), {
    stdio: 'inherit',
    // Tells `mcp-remote-client config add` how this was started.
    env: { ...process.env, MCP_REMOTE_LAUNCHER: process.env.MCP_REMOTE_LAUNCHER || 'npx' },
    windowsHide: true,
  });
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  const forward = (signal) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  for (const signal of signals) process.on(signal, forward);
  child.on('error', (e) => fail(`could not start ${name}: ${e.message}`));
  child.on('exit', (code, signal) => {
    for (const s of signals) process.removeListener(s, forward);
    if (signal) {
      // Ended by a signal: end the same way, so the parent sees what happened.
      process.kill(process.pid, signal);
      return;
    }
    process.exit(code === null ? 1 : code);
  });
};
