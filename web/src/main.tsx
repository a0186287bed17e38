import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App";
import { loadConfig } from "./config";
import { Session } from "./session";
import "./styles.css";

const root = document.getElementById("root");
if (root) {
  const session = new Session(await loadConfig());
  createRoot(root).render(
    <StrictMode>
      <App session={session} />
    </StrictMode>,
  );
}
