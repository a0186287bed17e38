import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// The dev server's origin (http://localhost:5173) is in the services' default
// CORS_ALLOWED_ORIGINS, so `npm run dev` works against `cargo run -p todo-stack` as is.
export default defineConfig({
  plugins: [react()],
  base: "./",
  server: { port: 5173, strictPort: true },
});
