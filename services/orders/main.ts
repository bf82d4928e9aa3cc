import { runService } from "../../platform/service/run-service.js";
import { definition } from "./service.js";

await runService(definition);
