// node:http and node:https, loaded with require. An ESM import of either reads every export to
// build its namespace, and the WebSocket/CloseEvent/MessageEvent getters among them load Node's
// bundled undici: ~5 MiB more memory in every process, for classes nothing here uses.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

export const http: typeof import("node:http") = require("node:http");
export const https: typeof import("node:https") = require("node:https");
