/**
 * Selectors: which devices fit, used instead of a device id by jobs, deployments and
 * rollouts (services: an extension point, same shape). Every clause must hold (AND).
 */
import { z } from "zod";

const LabelKey = z.string().min(1).max(64);

export const LabelExpression = z.strictObject({
  key: LabelKey,
  operator: z.enum(["In", "NotIn", "Exists", "DoesNotExist"]),
  values: z.array(z.string().max(256)).max(64).default([]),
});
export type LabelExpression = z.output<typeof LabelExpression>;

export const Selector = z
  .strictObject({
    /** label = value, each (Kubernetes' matchLabels) */
    labels: z.record(LabelKey, z.string().max(256)).optional(),
    /** In / NotIn / Exists / DoesNotExist over labels (Kubernetes' matchExpressions) */
    expressions: z.array(LabelExpression).max(32).optional(),
    /** declared capabilities: "camera" or "sensor" (any), "camera:<name>", "sensor:<name>" */
    capabilities: z.array(z.string().min(1).max(140)).max(32).optional(),
    /** host functions the device's agent links (WASI preview1 names, e.g. fd_write) */
    interfaces: z.array(z.string().min(1).max(128)).max(64).optional(),
    /** the device's CPU architecture (platform.cpu.arch), one of these */
    arch: z.array(z.string().min(1).max(64)).min(1).max(16).optional(),
    /** online now (default true); false: only offline devices; null: either */
    online: z.boolean().nullable().default(true),
  })
  .meta({ id: "Selector" });
export type Selector = z.output<typeof Selector>;
export type SelectorInput = z.input<typeof Selector>;

/** Why a candidate was not picked (one per device, bounded in answers). */
export const SelectorMiss = z.object({ device: z.string(), reasons: z.array(z.string()) }).meta({ id: "SelectorMiss" });
export type SelectorMiss = z.infer<typeof SelectorMiss>;

/** How many non-matching candidates an answer names (the rest are counted). */
export const MAX_REASONS_SHOWN = 20;
