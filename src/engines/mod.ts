/**
 * The engine registry: maps an engine name to its implementation, loaded on
 * first use.
 *
 * @example
 * ```ts
 * import { getEngine } from "./mod.ts";
 * const e = await getEngine("local");
 * e.capabilities();
 * ```
 * @module
 */
import type { EngineName } from "../types.ts";
import type { Engine } from "./contract.ts";

/** The engine of that name. @example `await getEngine("record")` */
export async function getEngine(name: EngineName): Promise<Engine> {
  switch (name) {
    case "record":
      return (await import("./record/engine.ts")).recordEngine;
    case "local":
      return (await import("./local/mod.ts")).localEngine;
    case "mvmctl":
      return (await import("./mvmctl/mod.ts")).mvmctlEngine;
  }
}
