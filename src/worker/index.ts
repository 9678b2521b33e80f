import { createApp } from "./app.js";

export { DeviceObject } from "../durable/device-object.js";
export { RegistryObject } from "../durable/registry-object.js";
export { JobIndexObject } from "../durable/job-index-object.js";
export { DeploymentObject } from "../durable/deployment-object.js";
export { DeviceListObject } from "../durable/device-list-object.js";
export { EventsObject } from "../durable/events-object.js";
export { AuditObject } from "../durable/audit-object.js";
export { RolloutObject } from "../durable/rollout-object.js";

export default createApp();
