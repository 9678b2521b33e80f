/**
 * Files the agent loads by path at run time (worker threads, service processes, the
 * package's own metadata), resolved from this module's folder. The published CLI is one
 * bundled file in this same folder (scripts/bundle-agent.mjs), so a path relative to
 * dist/device-agent/ holds whether this module is bundled or not; a URL taken from a
 * module in a subfolder would not.
 */
export const agentFile = (pathFromAgentFolder: string): URL => new URL(pathFromAgentFolder, import.meta.url);
