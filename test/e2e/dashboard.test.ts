/**
 * The dashboard in a real browser: Debian's chromium (installed by scripts/install-chromium.sh,
 * run here first; if it cannot be installed this file fails) driven by playwright-core, against
 * the real Worker and a real agent. It logs in with an API key, sees the device come online,
 * submits a job from the page and watches it finish, sees a service's status and a rollout's
 * state change, all live through GET /v1/events.
 * Screenshots and the measured figures go to test-artifacts/ (gitignored).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { chromium, type Browser, type Page } from "playwright-core";
import { ADMIN_TOKEN as ADMIN, startControlPlane, type ControlPlane } from "../helpers/control-plane.js";
import { startAgent, type AgentProcess } from "../helpers/agent-process.js";
import { compileWat, WAT } from "../helpers/wat.js";
import { exportJWK, generateKeyPair, SignJWT } from "jose";

const ARTIFACTS = "test-artifacts/dashboard";
let cp: ControlPlane;
let browser: Browser;
let page: Page;
let agent: AgentProcess | undefined;
let userKey: string;
let digest: string;

beforeAll(async () => {
  execFileSync("sh", ["scripts/install-chromium.sh"], { stdio: "inherit", timeout: 600_000 });
  mkdirSync(ARTIFACTS, { recursive: true });
  cp = await startControlPlane();
  userKey = (await cp.admin.createKey("user", "dashboard")).key;
  digest = (await cp.admin.uploadModule(readFileSync("examples/wasm/fibo.wasm"))).digest;
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
  page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
}, 600_000);

afterAll(async () => {
  await browser?.close();
  await agent?.kill();
  await cp?.stop();
});

describe("the dashboard", { timeout: 120_000 }, () => {
  it("loads from the Worker alone, logs in with a key kept only as an HttpOnly cookie", async () => {
    const foreign: string[] = [];
    page.on("request", (r) => {
      if (!r.url().startsWith(cp.url)) foreign.push(r.url());
    });
    await page.goto(`${cp.url}/dashboard/`);
    await page.getByTestId("key").waitFor();
    const paint = await page.evaluate(() => Object.fromEntries(performance.getEntriesByType("paint").map((p) => [p.name, Math.round(p.startTime)])));
    const nav = await page.evaluate(() => {
      const n = performance.getEntriesByType("navigation")[0] as PerformanceNavigationTiming;
      return { domContentLoaded: Math.round(n.domContentLoadedEventEnd), load: Math.round(n.loadEventEnd) };
    });
    expect(paint["first-contentful-paint"]).toBeGreaterThan(0);
    await page.screenshot({ path: `${ARTIFACTS}/1-login.png` });

    await page.getByTestId("key").fill(userKey);
    await page.getByTestId("login").click();
    await expect.poll(() => page.getByTestId("who").textContent(), { timeout: 30_000 }).toBe("user");
    await expect.poll(() => page.getByTestId("live").textContent(), { timeout: 30_000 }).toBe("live");

    const cookies = await page.context().cookies();
    expect(cookies).toHaveLength(1);
    // __Host-: Secure, Path=/, no Domain (Chromium keeps a Secure cookie from http://127.0.0.1: a loopback origin is trustworthy)
    expect(cookies[0]).toMatchObject({ name: "__Host-wasmvisor_session", httpOnly: true, sameSite: "Strict", secure: true, path: "/" });
    expect(cookies[0]!.value).not.toContain(userKey.split(".")[2]);
    const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie);
    expect(stored).not.toContain(userKey.split(".")[2]);
    expect(await page.getByTestId("key").inputValue()).toBe("");
    expect(await page.getByTestId("key").isVisible()).toBe(false);
    expect(foreign).toEqual([]);
    writeFileSync(`${ARTIFACTS}/first-paint.json`, JSON.stringify({ paint, nav }, null, 2));
    console.log(`dashboard first paint: ${JSON.stringify(paint)}; navigation: ${JSON.stringify(nav)}`);
  });

  it("sees a device come online, submits a job from the page and watches it finish", async () => {
    const register = await cp.admin.createKey("register", "dashboard-agent");
    agent = await startAgent({ server: cp.url, token: register.key, args: ["--pool-size", "1", "--name", "browser-device"] });
    const row = page.locator(`tr[data-device="${agent.deviceId}"]`);
    await expect.poll(() => row.getByTestId("device-status").textContent(), { timeout: 60_000 }).toBe("online");
    // health comes from the device's own object once it is online
    await expect.poll(() => row.locator("td").nth(3).textContent(), { timeout: 30_000 }).toMatch(/^\d+%$/);
    await page.screenshot({ path: `${ARTIFACTS}/2-device-online.png`, fullPage: true });

    await page.getByTestId("job-device").selectOption(agent.deviceId);
    await page.getByTestId("job-module").fill(digest);
    await page.getByTestId("job-function").fill("fibo");
    await page.getByTestId("job-args").fill("[12]");
    await page.getByTestId("job-submit").click();
    await expect.poll(() => page.getByTestId("submit-result").getAttribute("data-job"), { timeout: 30_000 }).toBeTruthy();
    const jobId = (await page.getByTestId("submit-result").getAttribute("data-job"))!;
    const jobRow = page.locator(`tr[data-job="${jobId}"]`);
    await expect.poll(() => jobRow.getByTestId("job-state").textContent(), { timeout: 60_000 }).toBe("SUCCEEDED");
    await expect.poll(() => jobRow.getByTestId("job-result").textContent(), { timeout: 30_000 }).toBe("233");
    await page.screenshot({ path: `${ARTIFACTS}/3-job-finished.png`, fullPage: true });

    // The job as the API has it, and the page's record of when its end arrived.
    const job = await cp.admin.getJob(jobId);
    expect(job).toMatchObject({ state: "SUCCEEDED", result: { value: 233 } });
    const ends = await page.evaluate(() => (window as unknown as { __wasmvisor: { jobEnds: { job: string; ms: number }[] } }).__wasmvisor.jobEnds);
    const mine = ends.find((e) => e.job === jobId);
    expect(mine).toBeDefined();
    expect(mine!.ms).toBeGreaterThanOrEqual(0);
    // the event history of the device shows on its row
    expect(await row.textContent()).toContain("succeeded");
    writeFileSync(`${ARTIFACTS}/update-latency.json`, JSON.stringify({ job: jobId, jobEndToPageMs: mine!.ms }, null, 2));
    console.log(`update latency, job end (device object) to result on the page: ${mine!.ms} ms`);
  });

  it("shows a service's status and a rollout's state as they change", async () => {
    const api = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${cp.url}${path}`, {
        method, headers: { authorization: `Bearer ${ADMIN}`, ...(body ? { "content-type": "application/json" } : {}) }, body: body ? JSON.stringify(body) : undefined, signal: AbortSignal.timeout(60_000),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
      return JSON.parse(text);
    };
    const deviceId = agent!.deviceId;
    // A service on the device: STARTING, then RUNNING once the real agent runs it.
    const counter = (await cp.admin.uploadModule(await compileWat(WAT.countService))).digest;
    await api("POST", `/v1/devices/${deviceId}/services`, { name: "count", module: counter });
    const svc = page.locator(`tr[data-service="${deviceId}/count"]`);
    await expect.poll(() => svc.getByTestId("service-status").textContent(), { timeout: 60_000 }).toBe("RUNNING");
    await page.screenshot({ path: `${ARTIFACTS}/4-service-running.png`, fullPage: true });
    await api("POST", `/v1/devices/${deviceId}/services/count/kill`);
    await expect.poll(() => svc.getByTestId("service-status").textContent(), { timeout: 60_000 }).toBe("KILLED");

    // A rollout of a signed deployment to the devices linking fd_write: running, then paused by an operator.
    const pair = await generateKeyPair("EdDSA", { extractable: true });
    const { kid } = await api("POST", "/v1/orchestrator-keys", { jwk: await exportJWK(pair.publicKey), label: "dashboard" });
    const manifest = { id: "dash-app", selector: { interfaces: ["fd_write"] }, modules: [{ name: "fibo", digest, functions: { fibo: { params: [{ name: "n", type: "integer" }], result: "integer" } } }] };
    const jws = await new SignJWT({ deployment: manifest }).setProtectedHeader({ alg: "EdDSA", kid }).setIssuedAt().setExpirationTime("5m").setJti(crypto.randomUUID()).sign(pair.privateKey);
    await api("POST", "/v1/rollouts", { id: "dash-ro", deployment: jws, strategy: { waveSize: { count: 1 } }, gate: { soakMs: 3_600_000 } });
    const ro = page.locator(`tr[data-rollout="dash-ro"]`);
    await expect.poll(() => ro.getByTestId("rollout-state").textContent(), { timeout: 60_000 }).toBe("running");
    await api("POST", "/v1/rollouts/dash-ro/pause");
    await expect.poll(() => ro.getByTestId("rollout-state").textContent(), { timeout: 60_000 }).toBe("paused");
    expect(await ro.textContent()).toContain("dash-app");
    await page.screenshot({ path: `${ARTIFACTS}/5-rollout-paused.png`, fullPage: true });
    // after a reload the page lists them from the API (GET /v1/rollouts, the device's services), not only from events
    await page.reload();
    await expect.poll(() => page.locator(`tr[data-rollout="dash-ro"]`).getByTestId("rollout-state").textContent(), { timeout: 60_000 }).toBe("paused");
    await expect.poll(() => page.locator(`tr[data-service="${deviceId}/count"]`).getByTestId("service-status").textContent(), { timeout: 60_000 }).toBe("KILLED");
  });

  it("logs out: the cookie is gone and the API refuses the page", async () => {
    await page.getByTestId("logout").click();
    await page.getByTestId("key").waitFor({ state: "visible" });
    expect(await page.context().cookies()).toEqual([]);
    const status = await page.evaluate(async () => (await fetch("/v1/devices")).status);
    expect(status).toBe(401);
    await page.screenshot({ path: `${ARTIFACTS}/6-logged-out.png` });
  });
});
