// Builds the JavaScript example plugins into components with componentize-js
// (its JS API: the `jco componentize` CLI fails on Node 20).
//
//   node build.mjs OUT_DIR
//
// Each plugin is a directory with an entry module; see PLUGINS below.

import { componentize } from '@bytecodealliance/componentize-js';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const wit = resolve(here, '../../../wit');

const PLUGINS = [
  { name: 'auth-rules', entry: 'auth-rules/auth.js', world: 'wasmftpd:plugin/auth-plugin' },
];

const out = resolve(process.argv[2] ?? join(here, 'out'));
await mkdir(out, { recursive: true });
for (const plugin of PLUGINS) {
  const { component } = await componentize({
    sourcePath: join(here, plugin.entry),
    witPath: wit,
    worldName: plugin.world,
    // `http` gives `fetch` (over wasi:http, which the host limits to the
    // section's `allowed_hosts`); plugins serve no HTTP, so no `fetch-event`.
    disableFeatures: ['fetch-event'],
  });
  const file = join(out, `${plugin.name}.wasm`);
  await writeFile(file, component);
  console.log(`${file}: ${component.length} bytes`);
}
