/**
 * `npm start`: the whole commerce-mesh on one machine. See mesh.ts for the
 * sequence and mesh-config.ts for the environment it reads.
 */
import { runMesh } from "./mesh.js";

const code = await runMesh(process.env);
process.exit(code);
