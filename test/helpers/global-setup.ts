/** Compiles the WAT test modules once (in Node, where wabt runs) and hands them to the workerd tests. */
import type { TestProject } from "vitest/node";
import { compileAll } from "./wat.js";

export default async function setup(project: TestProject) {
  const modules = await compileAll();
  project.provide("wasm", Object.fromEntries(Object.entries(modules).map(([k, v]) => [k, Buffer.from(v).toString("base64")])));
}

