// What test/helpers/global-setup.ts provides to the workerd tests.
export {};
declare module "vitest" {
  export interface ProvidedContext {
    wasm: Record<string, string>;
  }
}
