import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import react from "@vitejs/plugin-react";
import { defineConfig, type Connect, type Logger, type Plugin } from "vite";

/** A service URL from the environment (`http://` or `https://`), or undefined when unset. */
function serviceUrl(name: string): string | undefined {
  const value = process.env[name]?.trim();
  if (!value) return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`${name}=${value} is not a URL: set it as todo-stack's banner prints it, e.g. http://127.0.0.1:41001`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`${name}=${value} must start with http:// or https://`);
  }
  return value.replace(/\/+$/, "");
}

/** With AUTH_URL and/or TASK_URL set, `vite` and `vite preview` serve `/config.json` with those
 * service URLs in place of `public/config.json`'s (which stays as written, 50051/50052), so the
 * app follows services moved with AUTH_LISTEN_ADDR / TASK_LISTEN_ADDR. `vite build` is
 * unaffected: a deployment edits `dist/config.json`. */
function configJsonFromEnv(): Plugin {
  const overrides = Object.fromEntries(
    Object.entries({ authUrl: serviceUrl("AUTH_URL"), taskUrl: serviceUrl("TASK_URL") }).filter(
      ([, url]) => url !== undefined,
    ),
  );
  const active = Object.keys(overrides).length > 0;
  const middleware =
    (file: string): Connect.NextHandleFunction =>
    (req, res, next) => {
      if (new URL(req.url ?? "/", "http://localhost").pathname !== "/config.json") return next();
      let fromFile: Record<string, unknown> = {};
      try {
        fromFile = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
      } catch {
        // No config.json (or not JSON): the environment's values alone.
      }
      res.setHeader("Content-Type", "application/json");
      res.setHeader("Cache-Control", "no-store");
      res.end(JSON.stringify({ ...fromFile, ...overrides }, null, 2));
    };
  const announce = (logger: Logger) =>
    logger.info(`config.json from the environment: ${JSON.stringify(overrides)}`, { timestamp: true });
  return {
    name: "todo:config-json-from-env",
    configureServer(server) {
      if (!active) return;
      announce(server.config.logger);
      server.middlewares.use(middleware(resolve(server.config.publicDir, "config.json")));
    },
    configurePreviewServer(server) {
      if (!active) return;
      announce(server.config.logger);
      server.middlewares.use(middleware(resolve(server.config.root, server.config.build.outDir, "config.json")));
    },
  };
}

// The dev server's origin (http://localhost:5173) is in the services' default
// CORS_ALLOWED_ORIGINS, so `npm run dev` works against `cargo run -p todo-stack` as is.
export default defineConfig({
  plugins: [react(), configJsonFromEnv()],
  base: "./",
  server: { port: 5173, strictPort: true },
});
