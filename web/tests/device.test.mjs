// Unit: src/device.ts names the device behind a session's user agent for the account page
// ("Chrome on Linux"). Vite compiles device.ts for Node, as errors.test.mjs does errors.ts.

import { before, test } from "node:test";
import assert from "node:assert/strict";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "vite";

const web = resolve(fileURLToPath(import.meta.url), "..", "..");
let deviceName;

before(async () => {
  const outDir = join(web, "node_modules", ".cache", "device-test");
  await build({
    root: web,
    configFile: false,
    publicDir: false,
    logLevel: "warn",
    build: { ssr: true, outDir, emptyOutDir: true, rollupOptions: { input: { device: "src/device.ts" } } },
  });
  ({ deviceName } = await import(pathToFileURL(join(outDir, "device.js")).href));
});

test("common browsers and systems are named, the look-alikes told apart", () => {
  const cases = [
    ["Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36", "Chrome on Linux"],
    ["Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36", "Chrome on Linux"],
    ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0", "Edge on Windows"],
    ["Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15", "Safari on macOS"],
    ["Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", "Safari on iOS"],
    ["Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/126.0.6478.54 Mobile/15E148 Safari/604.1", "Chrome on iOS"],
    ["Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.71 Mobile Safari/537.36", "Chrome on Android"],
    ["Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0", "Firefox on Linux"],
    ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 OPR/111.0.0.0", "Opera on Windows"],
    ["Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36", "Chrome on ChromeOS"],
  ];
  for (const [userAgent, expected] of cases) assert.equal(deviceName(userAgent), expected, userAgent);
});

test("other clients are named by their first product token; an empty one is unknown", () => {
  assert.equal(deviceName("grpcurl/1.9.1 grpc-go/1.61.0"), "grpcurl");
  assert.equal(deviceName("connect-es/2.2.0"), "connect-es");
  assert.equal(deviceName(""), "Unknown device");
  assert.equal(deviceName("   "), "Unknown device");
});
