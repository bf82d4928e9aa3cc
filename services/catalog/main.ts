import { runService } from "../../platform/service/run-service.js";
import { catalogDefinition } from "./service.js";

await runService(catalogDefinition);
