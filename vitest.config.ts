import { defineConfig } from "vitest/config";
import { cloudflareTest } from "@cloudflare/vitest-pool-workers";

/** Short timers so lease expiry, retries and presence can be driven by the tests. */
export const TEST_VARS = {
  ADMIN_TOKEN: "test-admin-token-0123456789",
  DEVICE_CREDENTIAL_KEY: "test-device-credential-key-0123456789abcdef",
  ACK_TIMEOUT_MS: "300",
  LEASE_GRACE_MS: "300",
  HEARTBEAT_TIMEOUT_MS: "600",
  RETRY_BASE_MS: "20",
  WASMIOT_FACADE_DOMAIN: "wasmiot.test",
  // open event streams re-check their credential this often (default 30 s)
  STREAM_RECHECK_MS: "200",
};

export default defineConfig({
  test: {
    // The Worker logs every request as JSON; show logs only for failing tests.
    silent: "passed-only",
    projects: [
      {
        test: { name: "unit", include: ["src/**/*.test.ts"], environment: "node" },
      },
      {
        plugins: [
          cloudflareTest({
            main: "./src/worker/index.ts",
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: { bindings: TEST_VARS },
          }),
        ],
        test: {
          name: "workers",
          include: ["test/worker/**/*.test.ts"],
          // Integration tests against workerd on a shared 2-core machine: budgets, not timing assertions.
          testTimeout: 30_000,
          globalSetup: ["test/helpers/global-setup.ts"],
          setupFiles: ["test/worker/setup.ts"],
        },
      },
      {
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          setupFiles: ["test/e2e/setup.ts"],
          environment: "node",
          // Each file starts its own control plane and agents; on 2 cores, one file at a time.
          fileParallelism: false,
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
});
