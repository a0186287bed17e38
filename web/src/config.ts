/** Where the two services are, read at start-up from `config.json` next to index.html, so one
 * build serves any deployment (edit the file, no rebuild). */
export interface Config {
  authUrl: string;
  taskUrl: string;
}

const fallback: Config = {
  authUrl: "http://127.0.0.1:50051",
  taskUrl: "http://127.0.0.1:50052",
};

export async function loadConfig(): Promise<Config> {
  try {
    const response = await fetch("config.json", { cache: "no-store" });
    if (!response.ok) return fallback;
    const config = (await response.json()) as Partial<Config>;
    return {
      authUrl: config.authUrl ?? fallback.authUrl,
      taskUrl: config.taskUrl ?? fallback.taskUrl,
    };
  } catch {
    return fallback;
  }
}
