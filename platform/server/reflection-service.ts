import type { MessageInitShape } from "@bufbuild/protobuf";
import { type DescFile, type DescService, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type {
  ServerReflection,
  ServerReflectionRequest,
  ServerReflectionResponse,
  ServerReflectionResponseSchema,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";

type ResponseInit = MessageInitShape<typeof ServerReflectionResponseSchema>;

/**
 * grpc.reflection.v1 so stock tools (grpcurl, buf curl, Postman) can discover
 * and call the services without a copy of the protos.
 */
export function createReflectionService(
  services: DescService[],
): ServiceImpl<typeof ServerReflection> {
  const files = new Map<string, DescFile>();
  const symbols = new Map<string, DescFile>();
  const addFile = (file: DescFile) => {
    if (files.has(file.proto.name)) return;
    files.set(file.proto.name, file);
    for (const m of file.messages) indexMessage(m, file);
    for (const e of file.enums) symbols.set(e.typeName, file);
    for (const s of file.services) {
      symbols.set(s.typeName, file);
      for (const method of s.methods) symbols.set(`${s.typeName}.${method.name}`, file);
    }
    for (const x of file.extensions) symbols.set(x.typeName, file);
    for (const dep of file.dependencies) addFile(dep);
  };
  const indexMessage = (m: DescFile["messages"][number], file: DescFile) => {
    symbols.set(m.typeName, file);
    for (const nested of m.nestedMessages) indexMessage(nested, file);
    for (const e of m.nestedEnums) symbols.set(e.typeName, file);
  };
  for (const s of services) addFile(s.file);

  /** The file and everything it imports, dependencies first. */
  const withDependencies = (file: DescFile): Uint8Array[] => {
    const seen = new Set<string>();
    const out: Uint8Array[] = [];
    const visit = (f: DescFile) => {
      if (seen.has(f.proto.name)) return;
      seen.add(f.proto.name);
      for (const d of f.dependencies) visit(d);
      out.push(toBinary(FileDescriptorProtoSchema, f.proto));
    };
    visit(file);
    return out.reverse();
  };

  const answer = (req: ServerReflectionRequest): ResponseInit => {
    const base = { validHost: req.host, originalRequest: req };
    const notFound = (what: string): ResponseInit => ({
      ...base,
      messageResponse: {
        case: "errorResponse",
        value: { errorCode: 5, errorMessage: `${what} not found` },
      },
    });
    const fileResponse = (file: DescFile): ResponseInit => ({
      ...base,
      messageResponse: {
        case: "fileDescriptorResponse",
        value: { fileDescriptorProto: withDependencies(file) },
      },
    });
    switch (req.messageRequest.case) {
      case "listServices":
        return {
          ...base,
          messageResponse: {
            case: "listServicesResponse",
            value: { service: services.map((s) => ({ name: s.typeName })) },
          },
        };
      case "fileByFilename": {
        const file = files.get(req.messageRequest.value);
        return file ? fileResponse(file) : notFound(`file ${req.messageRequest.value}`);
      }
      case "fileContainingSymbol": {
        const file = symbols.get(req.messageRequest.value);
        return file ? fileResponse(file) : notFound(`symbol ${req.messageRequest.value}`);
      }
      case "fileContainingExtension": {
        const { containingType, extensionNumber } = req.messageRequest.value;
        for (const file of files.values()) {
          for (const x of file.extensions) {
            if (x.extendee.typeName === containingType && x.number === extensionNumber) {
              return fileResponse(file);
            }
          }
        }
        return notFound(`extension ${containingType}:${extensionNumber}`);
      }
      case "allExtensionNumbersOfType": {
        const typeName = req.messageRequest.value;
        const numbers: number[] = [];
        for (const file of files.values()) {
          for (const x of file.extensions)
            if (x.extendee.typeName === typeName) numbers.push(x.number);
        }
        return {
          ...base,
          messageResponse: {
            case: "allExtensionNumbersResponse",
            value: { baseTypeName: typeName, extensionNumber: numbers },
          },
        };
      }
      default:
        return {
          ...base,
          messageResponse: {
            case: "errorResponse",
            value: { errorCode: 3, errorMessage: "unsupported reflection request" },
          },
        };
    }
  };

  return {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        yield answer(req) as ServerReflectionResponse;
      }
    },
  };
}
