import { runService } from "../../platform/service/run-service.js";
import { createEdgeDefinition } from "./service.js";

await runService(createEdgeDefinition());
