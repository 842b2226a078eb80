import { defineConfig } from "vitest/config";

/** `npm run bench`: browser media figures in real Chromium against a real `darktower serve` (bench/). */
export default defineConfig({
  test: {
    include: ["bench/**/*.bench.ts"],
    environment: "node",
    testTimeout: 300_000,
    hookTimeout: 60_000,
    fileParallelism: false,
  },
});
