import { fromBinary } from "@bufbuild/protobuf";
import {
  type DescriptorProto,
  type EnumDescriptorProto,
  FileDescriptorSetSchema,
} from "@bufbuild/protobuf/wkt";

/**
 * Doc comments by full name ("pkg.Message", "pkg.Message.field",
 * "pkg.Service.Method", "pkg.Enum.VALUE"), read from a FileDescriptorSet or
 * buf image built WITH source info (`buf build proto -o x.binpb`). The
 * descriptors protoc-gen-es embeds in gen/ have source info stripped, so the
 * comments must be extracted at build time and shipped beside them.
 */
export function commentsFromDescriptorSet(bytes: Uint8Array): Record<string, string> {
  const set = fromBinary(FileDescriptorSetSchema, bytes);
  const out: Record<string, string> = {};
  for (const file of set.file) {
    const pkg = file.package ? `${file.package}.` : "";
    const byPath = new Map<string, string>();
    for (const location of file.sourceCodeInfo?.location ?? []) {
      const text = location.leadingComments || location.trailingComments;
      if (text.trim()) byPath.set(location.path.join(","), text.trim());
    }
    const put = (name: string, path: number[]) => {
      const text = byPath.get(path.join(","));
      if (text) out[name] = text;
    };
    const visitEnum = (e: EnumDescriptorProto, prefix: string, path: number[]) => {
      const name = `${prefix}${e.name}`;
      put(name, path);
      e.value.forEach((v, i) => {
        put(`${name}.${v.name}`, [...path, 2, i]);
      });
    };
    const visitMessage = (m: DescriptorProto, prefix: string, path: number[]) => {
      const name = `${prefix}${m.name}`;
      put(name, path);
      m.field.forEach((f, i) => {
        put(`${name}.${f.name}`, [...path, 2, i]);
      });
      m.nestedType.forEach((n, i) => {
        visitMessage(n, `${name}.`, [...path, 3, i]);
      });
      m.enumType.forEach((e, i) => {
        visitEnum(e, `${name}.`, [...path, 4, i]);
      });
    };
    // FileDescriptorProto: message_type = 4, enum_type = 5, service = 6.
    file.messageType.forEach((m, i) => {
      visitMessage(m, pkg, [4, i]);
    });
    file.enumType.forEach((e, i) => {
      visitEnum(e, pkg, [5, i]);
    });
    file.service.forEach((s, i) => {
      const name = `${pkg}${s.name}`;
      put(name, [6, i]);
      s.method.forEach((m, j) => {
        put(`${name}.${m.name}`, [6, i, 2, j]);
      });
    });
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
}
