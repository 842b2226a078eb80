import { defineConfig } from "vitest/config";

/** `npm run test:e2e`: real Chromium against a real `darktower serve` (see e2e/meeting.e2e.ts). */
export default defineConfig({
  test: {
    include: ["e2e/**/*.e2e.ts"],
    environment: "node",
    testTimeout: 90_000,
    hookTimeout: 60_000,
    fileParallelism: false,
  },
});
