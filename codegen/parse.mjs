// @ts-check
// Wayland protocol XML -> a checked model. Unknown elements and attributes are ignored; anything
// the generated code depends on is validated, and every problem is reported with file and line.

import { XMLParser, XMLValidator } from 'fast-xml-parser';

/** @typedef {'int' | 'uint' | 'fixed' | 'string' | 'object' | 'new_id' | 'array' | 'fd'} ArgType */

/**
 * @typedef {object} Arg
 * @property {string} name
 * @property {ArgType} type
 * @property {boolean} nullable
 * @property {string | null} interface
 * @property {string | null} enum
 * @property {number} line
 */

/**
 * @typedef {object} Message
 * @property {string} name
 * @property {number} opcode
 * @property {number} since
 * @property {boolean} destructor
 * @property {Arg[]} args
 * @property {number} line
 */

/**
 * @typedef {object} Entry
 * @property {string} name
 * @property {number} value
 * @property {number} since
 * @property {number} line
 */

/**
 * @typedef {object} Enum
 * @property {string} name
 * @property {boolean} bitfield
 * @property {Entry[]} entries
 * @property {number} line
 */

/**
 * @typedef {object} Interface
 * @property {string} name
 * @property {number} version
 * @property {Message[]} requests
 * @property {Message[]} events
 * @property {Enum[]} enums
 * @property {number} line
 */

/**
 * @typedef {object} Protocol
 * @property {string} name the protocol's name attribute
 * @property {string} file path below the protocols folder, with `/` separators
 * @property {string} stem file name without `.xml`
 * @property {string} path path as given to the generator, for messages
 * @property {Interface[]} interfaces
 */

/** A problem in one input file. */
export class CodegenError extends Error {
  /**
   * @param {string} path
   * @param {number} line 0 when unknown
   * @param {string} message
   */
  constructor(path, line, message) {
    super(`${path}${line > 0 ? `:${line}` : ''}: ${message}`);
    this.name = 'CodegenError';
  }
}

/** @type {readonly ArgType[]} */
const ARG_TYPES = ['int', 'uint', 'fixed', 'string', 'object', 'new_id', 'array', 'fd'];
/** @type {ReadonlySet<string>} */
const NULLABLE_TYPES = new Set(['string', 'object', 'new_id', 'array']);
const LISTS = new Set(['interface', 'request', 'event', 'arg', 'enum', 'entry']);
const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ENTRY_NAME = /^[A-Za-z0-9_]+$/;

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  parseAttributeValue: false,
  parseTagValue: false,
  htmlEntities: false,
  ignoreDeclaration: true,
  ignorePiTags: true,
  captureMetaData: true,
  isArray: (tagName, _jPath, _isLeaf, isAttribute) => !isAttribute && LISTS.has(tagName),
});
// Typed `Symbol` (the wrapper) by fast-xml-parser; it is a plain symbol.
const META = /** @type {symbol} */ (/** @type {unknown} */ (XMLParser.getMetaDataSymbol()));

/** @typedef {Record<string | symbol, unknown>} Node */

/**
 * Parses one protocol file.
 * @param {string} text the XML
 * @param {string} path for messages
 * @param {string} file path below the protocols folder
 * @returns {{ protocol: Protocol | null, errors: CodegenError[] }}
 */
export function parseProtocol(text, path, file) {
  /** @type {CodegenError[]} */
  const errors = [];
  const valid = XMLValidator.validate(text);
  if (valid !== true) {
    errors.push(new CodegenError(path, valid.err.line, `malformed XML: ${valid.err.msg}`));
    return { protocol: null, errors };
  }

  // Line starts, to turn the parser's character offsets into line numbers.
  /** @type {number[]} */
  const lineStarts = [0];
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) lineStarts.push(i + 1);
  /** @param {Node} node */
  const lineOf = (node) => {
    const meta = /** @type {{ startIndex?: number } | undefined} */ (node[META]);
    const at = meta?.startIndex;
    if (typeof at !== 'number') return 0;
    let lo = 0;
    let hi = lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (lineStarts[mid] <= at) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  };
  /**
   * @param {Node} node
   * @param {string} message
   */
  const fail = (node, message) => errors.push(new CodegenError(path, lineOf(node), message));

  /** @type {Node} */
  let doc;
  try {
    doc = parser.parse(text);
  } catch (e) {
    errors.push(new CodegenError(path, 0, `malformed XML: ${e instanceof Error ? e.message : e}`));
    return { protocol: null, errors };
  }

  /**
   * Child elements named `tag`, as nodes (an element without attributes or children parses as a
   * string; it becomes an empty node).
   * @param {Node} node
   * @param {string} tag
   * @returns {Node[]}
   */
  const children = (node, tag) => {
    const v = node[tag];
    const list = Array.isArray(v) ? v : v === undefined ? [] : [v];
    return list.map((c) => (typeof c === 'object' && c !== null ? /** @type {Node} */ (c) : {}));
  };
  /**
   * @param {Node} node
   * @param {string} name
   * @returns {string | undefined}
   */
  const attr = (node, name) => {
    const v = node[`@_${name}`];
    return typeof v === 'string' ? v : undefined;
  };
  /**
   * A required identifier attribute.
   * @param {Node} node
   * @param {string} what e.g. `interface`
   * @param {RegExp} [pattern]
   */
  const nameOf = (node, what, pattern = IDENT) => {
    const name = attr(node, 'name');
    if (name === undefined) {
      fail(node, `${what} without a name attribute`);
      return `?`;
    }
    if (!pattern.test(name)) fail(node, `${what} name '${name}' is not a valid identifier`);
    return name;
  };
  /**
   * An optional positive integer attribute (since, version).
   * @param {Node} node
   * @param {string} name
   * @param {string} where
   * @param {number | undefined} fallback undefined when required
   */
  const positive = (node, name, where, fallback) => {
    const v = attr(node, name);
    if (v === undefined) {
      if (fallback === undefined) fail(node, `${where}: missing ${name} attribute`);
      return fallback ?? 1;
    }
    if (!/^\s*[0-9]+\s*$/.test(v) || Number(v) < 1 || Number(v) > 0x7fffffff) {
      fail(node, `${where}: ${name}="${v}" is not a positive integer`);
      return 1;
    }
    return Number(v);
  };
  /**
   * @param {Node} node
   * @param {string} name
   * @param {string} where
   */
  const flag = (node, name, where) => {
    const v = attr(node, name);
    if (v === undefined || v === 'false') return false;
    if (v === 'true') return true;
    fail(node, `${where}: ${name}="${v}" must be "true" or "false"`);
    return false;
  };

  const root = children(doc, 'protocol');
  if (root.length !== 1) {
    errors.push(new CodegenError(path, 0, 'expected exactly one <protocol> root element'));
    return { protocol: null, errors };
  }
  const protocolNode = root[0];
  const protocolName = nameOf(protocolNode, 'protocol');

  /** @type {Interface[]} */
  const interfaces = [];
  for (const ifNode of children(protocolNode, 'interface')) {
    const ifName = nameOf(ifNode, 'interface');
    const version = positive(ifNode, 'version', `interface ${ifName}`, undefined);

    /**
     * @param {'request' | 'event'} tag
     * @returns {Message[]}
     */
    const messages = (tag) => {
      /** @type {Message[]} */
      const list = [];
      for (const mNode of children(ifNode, tag)) {
        const mName = nameOf(mNode, tag);
        const where = `${ifName}.${mName}`;
        const since = positive(mNode, 'since', where, 1);
        if (since > version) {
          fail(mNode, `${where}: since ${since} is above the interface version ${version}`);
        }
        const type = attr(mNode, 'type');
        if (type !== undefined && type !== 'destructor') {
          fail(mNode, `${where}: unknown message type '${type}'`);
        }
        if (list.some((m) => m.name === mName)) fail(mNode, `${where}: duplicate ${tag} name`);
        /** @type {Arg[]} */
        const args = [];
        for (const aNode of children(mNode, 'arg')) {
          const aName = nameOf(aNode, 'arg');
          const aWhere = `${where} arg ${aName}`;
          const t = attr(aNode, 'type');
          const argType = ARG_TYPES.find((x) => x === t);
          if (argType === undefined) {
            fail(aNode, `${aWhere}: ${t === undefined ? 'missing type' : `unknown type '${t}'`}`);
            continue;
          }
          if (args.some((a) => a.name === aName)) fail(aNode, `${aWhere}: duplicate argument name`);
          const nullable = flag(aNode, 'allow-null', aWhere);
          if (nullable && !NULLABLE_TYPES.has(argType)) {
            fail(aNode, `${aWhere}: allow-null is only valid for string, object, new_id and array`);
          }
          const iface = attr(aNode, 'interface') ?? null;
          if (iface !== null && argType !== 'object' && argType !== 'new_id') {
            fail(aNode, `${aWhere}: an interface attribute needs type object or new_id`);
          }
          if (iface !== null && !IDENT.test(iface)) {
            fail(aNode, `${aWhere}: interface '${iface}' is not a valid identifier`);
          }
          const en = attr(aNode, 'enum') ?? null;
          if (en !== null && argType !== 'int' && argType !== 'uint') {
            fail(aNode, `${aWhere}: an enum attribute needs type int or uint`);
          }
          if (en !== null && !/^([A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*$/.test(en)) {
            fail(aNode, `${aWhere}: enum '${en}' is not a valid enum reference`);
          }
          args.push({
            name: aName,
            type: argType,
            nullable,
            interface: iface,
            enum: en,
            line: lineOf(aNode),
          });
        }
        list.push({
          name: mName,
          opcode: list.length,
          since,
          destructor: type === 'destructor',
          args,
          line: lineOf(mNode),
        });
      }
      return list;
    };

    /** @type {Enum[]} */
    const enums = [];
    for (const eNode of children(ifNode, 'enum')) {
      const eName = nameOf(eNode, 'enum');
      const where = `${ifName}.${eName}`;
      if (enums.some((e) => e.name === eName)) fail(eNode, `${where}: duplicate enum name`);
      /** @type {Entry[]} */
      const entries = [];
      for (const nNode of children(eNode, 'entry')) {
        const nName = nameOf(nNode, 'entry', ENTRY_NAME);
        const nWhere = `${where}.${nName}`;
        if (entries.some((n) => n.name === nName)) fail(nNode, `${nWhere}: duplicate entry name`);
        const raw = attr(nNode, 'value');
        let value = 0;
        if (raw === undefined) {
          fail(nNode, `${nWhere}: missing value attribute`);
        } else if (/^\s*(0[xX][0-9a-fA-F]+|[0-9]+)\s*$/.test(raw)) {
          value = Number(raw.trim());
          if (value > 0xffffffff) fail(nNode, `${nWhere}: value ${raw} does not fit 32 bits`);
        } else {
          fail(nNode, `${nWhere}: value "${raw}" is neither decimal nor 0x hexadecimal`);
        }
        const since = positive(nNode, 'since', nWhere, 1);
        if (since > version) {
          fail(nNode, `${nWhere}: since ${since} is above the interface version ${version}`);
        }
        entries.push({ name: nName, value, since, line: lineOf(nNode) });
      }
      enums.push({
        name: eName,
        bitfield: flag(eNode, 'bitfield', where),
        entries,
        line: lineOf(eNode),
      });
    }

    if (interfaces.some((i) => i.name === ifName)) fail(ifNode, `duplicate interface ${ifName}`);
    interfaces.push({
      name: ifName,
      version,
      requests: messages('request'),
      events: messages('event'),
      enums,
      line: lineOf(ifNode),
    });
  }

  const stem = file.replace(/^.*\//, '').replace(/\.xml$/, '');
  return {
    protocol: { name: protocolName, file, stem, path, interfaces },
    errors,
  };
}

/**
 * Checks what spans files: unique interface names, and that every interface and enum an argument
 * names exists somewhere in the set.
 * @param {Protocol[]} protocols
 * @returns {CodegenError[]}
 */
export function checkReferences(protocols) {
  /** @type {CodegenError[]} */
  const errors = [];
  /** @type {Map<string, { iface: Interface, protocol: Protocol }>} */
  const byName = new Map();
  for (const protocol of protocols) {
    for (const iface of protocol.interfaces) {
      const seen = byName.get(iface.name);
      if (seen !== undefined && seen.protocol !== protocol) {
        errors.push(
          new CodegenError(
            protocol.path,
            iface.line,
            `interface ${iface.name} is also defined in ${seen.protocol.path}:${seen.iface.line}`,
          ),
        );
      } else if (seen === undefined) {
        byName.set(iface.name, { iface, protocol });
      }
    }
  }
  for (const protocol of protocols) {
    for (const iface of protocol.interfaces) {
      for (const m of [...iface.requests, ...iface.events]) {
        for (const a of m.args) {
          const where = `${iface.name}.${m.name} arg ${a.name}`;
          if (a.interface !== null && !byName.has(a.interface)) {
            errors.push(
              new CodegenError(
                protocol.path,
                a.line,
                `${where}: interface '${a.interface}' is not defined in any protocol file`,
              ),
            );
          }
          if (a.enum === null) continue;
          const dot = a.enum.indexOf('.');
          const owner = dot < 0 ? iface : byName.get(a.enum.slice(0, dot))?.iface;
          const enumName = dot < 0 ? a.enum : a.enum.slice(dot + 1);
          const en = owner?.enums.find((e) => e.name === enumName);
          if (en === undefined) {
            errors.push(
              new CodegenError(protocol.path, a.line, `${where}: enum '${a.enum}' is not defined`),
            );
          } else if (en.bitfield && a.type === 'int') {
            errors.push(
              new CodegenError(
                protocol.path,
                a.line,
                `${where}: bitfield enum '${a.enum}' must be used with a uint argument`,
              ),
            );
          }
        }
      }
    }
  }
  return errors;
}
