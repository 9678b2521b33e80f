/** Where the control plane keeps its blobs in the MODULES bucket: one place for every R2 key's shape. */

/** A module's binary, content-addressed and immutable. */
export const moduleBinaryKey = (digest: string) => `modules/${digest}.wasm`;
/** The inspection of a module, beside its binary. */
export const moduleInfoKey = (digest: string) => `modules/${digest}.json`;

/** A job's files. */
export const inputKey = (jobId: string, name: string) => `jobs/${jobId}/inputs/${name}`;
export const outputKey = (jobId: string, name: string) => `jobs/${jobId}/outputs/${name}`;
/** Every file of a job (inputs and outputs) is under this prefix: deleted with the job. */
export const jobFilesPrefix = (jobId: string) => `jobs/${jobId}/`;
/** A deployment's data file, content-addressed. */
export const dataKey = (digest: string) => `data/${digest}`;
