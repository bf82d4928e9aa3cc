/**
 * Runs the mesh starter against another repository root (MESH_TEST_ROOT), so
 * tests can drive it with stand-in services instead of the real ones.
 */
import { runMesh } from "../mesh.js";

const root = process.env["MESH_TEST_ROOT"];
if (!root) throw new Error("MESH_TEST_ROOT is required");
process.exit(await runMesh(process.env, root));
