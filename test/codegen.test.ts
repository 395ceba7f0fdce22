// The protocol generator, checked against libwayland's own wayland-scanner (Debian's
// libwayland-bin) as the oracle, plus round trips through the generated writers and dispatchers.

import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as generated from '../src/generated/index.js';
import {
  WlDataOfferEventHandlers,
  XdgToplevelEventHandlers,
  allInterfaces,
  dispatchWlDataOfferRequest,
  dispatchWlKeyboardEvent,
  dispatchWlPointerEvent,
  dispatchWlRegistryRequest,
  dispatchWlSurfaceRequest,
  dispatchXdgToplevelEvent,
  dispatchXdgToplevelRequest,
  dispatchZwpLinuxBufferParamsV1Request,
  interfacesByName,
  protocols,
  WL_REGISTRY_BIND,
  WL_KEYBOARD_EVENT_KEYMAP,
  WL_SURFACE_ATTACH,
  WlOutputTransform,
  WlSeatCapability,
  writeWlDataOfferAccept,
  writeWlDataOfferReceive,
  writeWlKeyboardEventEnter,
  writeWlKeyboardEventKeymap,
  writeWlPointerEventMotion,
  writeWlRegistryBind,
  writeWlSurfaceAttach,
  writeXdgToplevelEventConfigure,
  writeXdgToplevelSetParent,
  writeXdgToplevelSetTitle,
  writeZwpLinuxBufferParamsV1Add,
  XDG_TOPLEVEL_EVENT_CONFIGURE,
  XDG_TOPLEVEL_SET_TITLE,
  XdgToplevelState,
} from '../src/generated/index.js';
import { ArgKind, type MessageMeta } from '../src/protocol/meta.js';
import { WireError } from '../src/wire/errors.js';
import { ArgReader } from '../src/wire/reader.js';
import { MessageWriter } from '../src/wire/writer.js';

const root = join(import.meta.dirname, '..');
const protocolsDir = join(root, 'protocols');
const tmp = mkdtempSync(join(tmpdir(), 'tswl-codegen-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Every XML below dir, relative, with `/` separators. */
function xmlFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.xml')) out.push(relative(dir, p).split(sep).join('/'));
    }
  };
  walk(dir);
  return out.sort();
}

function runCodegen(inDir: string, outDir: string): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [join(root, 'codegen/main.mjs'), inDir, outDir], {
    encoding: 'utf8',
  });
  return { status: r.status, stderr: r.stderr };
}

// ---------------------------------------------------------------------------------------------
// wayland-scanner as the oracle

interface ScannerMessage {
  name: string;
  signature: string;
  /** Interface names from the types array, one per XML argument; null for NULL. */
  types: (string | null)[];
}
interface ScannerInterface {
  name: string;
  version: number;
  requests: ScannerMessage[];
  events: ScannerMessage[];
}

function scanner(mode: 'private-code' | 'client-header', xml: string): string {
  const out = join(tmp, mode === 'private-code' ? 'out.c' : 'out.h');
  const r = spawnSync('wayland-scanner', [mode, xml, out], { encoding: 'utf8' });
  // no skipping: without the oracle the generator is unchecked
  if (r.error) throw new Error(`wayland-scanner: ${r.error.message} (install libwayland-bin)`);
  if (r.status !== 0) throw new Error(`wayland-scanner ${mode} ${xml} failed: ${r.stderr}`);
  return readFileSync(out, 'utf8');
}

/** Parses the static tables of `wayland-scanner private-code` output. */
function parsePrivateCode(c: string): ScannerInterface[] {
  const types: (string | null)[] = [];
  const typesBlock = /static const struct wl_interface \*\w+_types\[\] = \{([\s\S]*?)\n\};/.exec(c);
  if (typesBlock) {
    for (const t of typesBlock[1].split(',')) {
      const s = t.trim();
      if (s === '') continue;
      const m = /^&(\w+)_interface$/.exec(s);
      if (s !== 'NULL' && !m) throw new Error(`unexpected types entry ${s}`);
      types.push(m ? m[1] : null);
    }
  }
  const messages = new Map<string, { name: string; signature: string; offset: number }[]>();
  for (const block of c.matchAll(/static const struct wl_message (\w+)\[\] = \{([\s\S]*?)\n\};/g)) {
    const list = [...block[2].matchAll(/\{ "(\w+)", "([^"]*)", \w+_types \+ (\d+) \}/g)].map(
      (m) => ({ name: m[1], signature: m[2], offset: Number(m[3]) }),
    );
    messages.set(block[1], list);
  }
  const out: ScannerInterface[] = [];
  for (const m of c.matchAll(
    /(?:WL_PRIVATE|WL_EXPORT) const struct wl_interface (\w+)_interface = \{\s*"(\w+)", (\d+),\s*(\d+), (\w+),\s*(\d+), (\w+),\s*\};/g,
  )) {
    const side = (count: string, table: string): ScannerMessage[] => {
      const list = table === 'NULL' ? [] : (messages.get(table) ?? []);
      expect(list.length, `${table} length`).toBe(Number(count));
      return list.map((msg) => {
        const nargs = msg.signature.replace(/^[0-9]+/, '').replace(/\?|su(?=n)/g, '').length;
        return {
          name: msg.name,
          signature: msg.signature,
          types: types.slice(msg.offset, msg.offset + nargs),
        };
      });
    };
    out.push({
      name: m[2],
      version: Number(m[3]),
      requests: side(m[4], m[5]),
      events: side(m[6], m[7]),
    });
  }
  return out;
}

/** The signature libwayland would use, rebuilt from the argument table alone. */
function signatureFromArgs(m: MessageMeta): string {
  const letters = ['i', 'u', 'f', 's', 'o', 'n', 'a', 'h'];
  let s = m.since > 1 ? String(m.since) : '';
  for (const a of m.args) {
    if (a.nullable) s += '?';
    if (a.kind === ArgKind.NewId && a.interface === null) s += 'su';
    s += letters[a.kind];
  }
  return s;
}

/** `#define NAME value` and enum `NAME = value` pairs of `wayland-scanner client-header`. */
function parseClientHeader(h: string): {
  defines: Map<string, number>;
  enums: Map<string, Map<string, number>>;
} {
  const defines = new Map<string, number>();
  for (const m of h.matchAll(/^#define (\w+) (\d+)$/gm)) defines.set(m[1], Number(m[2]));
  const enums = new Map<string, Map<string, number>>();
  for (const m of h.matchAll(/^enum (\w+) \{\n([\s\S]*?)^\};/gm)) {
    const entries = new Map<string, number>();
    for (const e of m[2].matchAll(/^\t(\w+) = ([^,]+),$/gm)) entries.set(e[1], Number(e[2]));
    enums.set(m[1], entries);
  }
  return { defines, enums };
}

const lookup = generated as unknown as Record<string, unknown>;

describe('tables match wayland-scanner', () => {
  const files = xmlFiles(protocolsDir);

  it.each(files)('%s', (file) => {
    const xml = join(protocolsDir, file);
    const ours = protocols.find((p) => p.file === file);
    expect(ours, `${file} in protocols`).toBeDefined();
    if (!ours) return;
    const theirs = parsePrivateCode(scanner('private-code', xml));
    expect(ours.interfaces.map((i) => i.name)).toEqual(theirs.map((i) => i.name));

    const { defines, enums } = parseClientHeader(scanner('client-header', xml));
    for (const [index, iface] of ours.interfaces.entries()) {
      const want = theirs[index];
      expect(iface.version, `${iface.name} version`).toBe(want.version);
      for (const [ourList, theirList, dir] of [
        [iface.requests, want.requests, 'request'],
        [iface.events, want.events, 'event'],
      ] as const) {
        expect(ourList.map((m) => m.name)).toEqual(theirList.map((m) => m.name));
        for (const [opcode, m] of ourList.entries()) {
          const what = `${iface.name}.${m.name} (${dir})`;
          const t = theirList[opcode];
          expect(m.opcode, what).toBe(opcode);
          expect(m.signature, what).toBe(t.signature);
          expect(signatureFromArgs(m), `${what} args`).toBe(t.signature);
          const since = /^[0-9]+/.exec(t.signature);
          expect(m.since, what).toBe(since ? Number(since[0]) : 1);
          // The types array: one entry per XML argument, the interface of object/new_id ones.
          expect(
            m.args.map((a) => a.interface),
            `${what} types`,
          ).toEqual(t.types);
          // The generated constants agree with the scanner's #defines.
          const base = `${iface.name}_${m.name}`.toUpperCase();
          const constName =
            dir === 'request' ? base : `${iface.name}_event_${m.name}`.toUpperCase();
          expect(lookup[constName], constName).toBe(opcode);
          expect(lookup[`${constName}_SINCE_VERSION`]).toBe(defines.get(`${base}_SINCE_VERSION`));
          if (dir === 'request') expect(defines.get(base), base).toBe(opcode);
        }
      }
      // Enums against the client header: entries, values, since-versions.
      for (const e of iface.enums) {
        const cName = `${iface.name}_${e.name}`;
        const want = enums.get(cName);
        expect(want, cName).toBeDefined();
        const got = new Map(e.entries.map((n) => [`${cName}_${n.name}`.toUpperCase(), n.value]));
        expect(got).toEqual(want);
        for (const n of e.entries) {
          const key = `${cName}_${n.name}_SINCE_VERSION`.toUpperCase();
          expect(n.since, key).toBe(defines.get(key) ?? 1);
        }
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('generated index', () => {
  it('lists every XML in protocols/, wayland.xml first', () => {
    const files = xmlFiles(protocolsDir);
    expect(files.length).toBeGreaterThan(40);
    expect(protocols.map((p) => p.file).sort()).toEqual(files);
    expect(protocols[0].file).toBe('wayland.xml');
    expect(protocols[0].name).toBe('wayland');
  });

  it('has the protocols the proxy needs', () => {
    for (const name of [
      'wl_display',
      'xdg_wm_base',
      'zxdg_shell_v6',
      'zwp_linux_dmabuf_v1',
      'zwp_tablet_manager_v2',
      'zxdg_decoration_manager_v1',
      'zwp_primary_selection_device_manager_v1',
      'zwp_pointer_constraints_v1',
      'zwp_relative_pointer_manager_v1',
      'zxdg_output_manager_v1',
      'zwp_text_input_manager_v3',
      'zwp_idle_inhibit_manager_v1',
      'zwp_keyboard_shortcuts_inhibit_manager_v1',
      'zxdg_exporter_v1',
      'zxdg_exporter_v2',
      'wp_viewporter',
      'wp_presentation',
      'wp_fractional_scale_manager_v1',
      'wl_fixes',
      'zwp_pointer_gestures_v1',
      'org_kde_kwin_server_decoration_manager',
      'zwlr_layer_shell_v1',
      'zwlr_screencopy_manager_v1',
      'zwp_virtual_keyboard_manager_v1',
      'zwp_input_method_manager_v2',
    ]) {
      expect(interfacesByName.get(name)?.name, name).toBe(name);
    }
    expect(new Set(allInterfaces.map((i) => i.name)).size).toBe(allInterfaces.length);
    expect(allInterfaces.length).toBe(protocols.reduce((n, p) => n + p.interfaces.length, 0));
  });

  it('has constants and enums under the documented names', () => {
    expect(XDG_TOPLEVEL_SET_TITLE).toBe(2);
    expect(XDG_TOPLEVEL_EVENT_CONFIGURE).toBe(0);
    expect(XdgToplevelState.maximized).toBe(1);
    expect(WlOutputTransform._90).toBe(1);
    expect(WlSeatCapability.keyboard).toBe(2);
    const bind = interfacesByName.get('wl_registry')?.requests[WL_REGISTRY_BIND];
    expect(bind?.signature).toBe('usun');
    expect(bind?.args[1]).toEqual({
      name: 'id',
      kind: ArgKind.NewId,
      nullable: false,
      interface: null,
      enum: null,
    });
    const attach = interfacesByName.get('wl_surface')?.requests[WL_SURFACE_ATTACH];
    expect(attach?.args[0]).toMatchObject({ nullable: true, interface: 'wl_buffer' });
    const output = interfacesByName.get('wl_output')?.events[0].args[7];
    expect(output).toMatchObject({ name: 'transform', enum: 'transform' });
  });

  it('is what the generator writes now (run npm run codegen if not)', () => {
    const out = join(tmp, 'fresh');
    const r = runCodegen(protocolsDir, out);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const dir = join(root, 'src/generated');
    const names = readdirSync(out).sort();
    expect(readdirSync(dir).sort()).toEqual(names);
    for (const name of names) {
      expect(
        readFileSync(join(dir, name), 'utf8') === readFileSync(join(out, name), 'utf8'),
        name,
      ).toBe(true);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Writers and dispatchers

/** Reads back the single message a writer holds. */
function readBack(w: MessageWriter): { id: number; opcode: number; r: ArgReader } {
  const id = w.view.getUint32(0, true);
  const word = w.view.getUint32(4, true);
  const size = word >>> 16;
  expect(size).toBe(w.len);
  const r = new ArgReader().reset(w.buf, w.view, 8, size);
  r.setFds(Int32Array.from(w.fds), 0, w.fds.length);
  return { id, opcode: word & 0xffff, r };
}

describe('typed writers and dispatchers round-trip', () => {
  it('a string (xdg_toplevel.set_title) and a null object (set_parent)', () => {
    const w = new MessageWriter(16);
    writeXdgToplevelSetTitle(w, 7, 'héllo wörld ✓');
    const { id, opcode, r } = readBack(w);
    expect([id, opcode]).toEqual([7, XDG_TOPLEVEL_SET_TITLE]);
    const seen: unknown[] = [];
    const result = dispatchXdgToplevelRequest(
      {
        set_title(ctx: string, title) {
          seen.push(ctx, title);
          return true;
        },
      },
      'ctx',
      opcode,
      r,
    );
    expect(result).toBe(true);
    expect(seen).toEqual(['ctx', 'héllo wörld ✓']);
    expect(r.pos).toBe(r.end);

    const w2 = new MessageWriter();
    writeXdgToplevelSetParent(w2, 7, 0);
    const m2 = readBack(w2);
    let parent = -1;
    dispatchXdgToplevelRequest(
      { set_parent: (_: null, p) => void (parent = p) },
      null,
      m2.opcode,
      m2.r,
    );
    expect(parent).toBe(0);
  });

  it('an array event (xdg_toplevel.configure), fixed values (wl_pointer.motion)', () => {
    const w = new MessageWriter();
    const states = new Uint8Array(new Uint32Array([XdgToplevelState.activated, 2, 9]).buffer);
    writeXdgToplevelEventConfigure(w, 12, 800, -600, states);
    let m = readBack(w);
    const got: [number, number, number[]][] = [];
    const h: XdgToplevelEventHandlers<number> = {
      configure(ctx, width, height, s) {
        expect(ctx).toBe(1);
        got.push([width, height, [...new Uint32Array(Uint8Array.from(s).buffer)]]);
      },
    };
    expect(dispatchXdgToplevelEvent(h, 1, m.opcode, m.r)).toBeUndefined();
    expect(got).toEqual([[800, -600, [4, 2, 9]]]);

    const w2 = new MessageWriter();
    writeWlPointerEventMotion(w2, 3, 123456, 10.5, -3.25);
    m = readBack(w2);
    let motion: number[] = [];
    dispatchWlPointerEvent(
      { motion: (_: void, ...a) => void (motion = a) },
      undefined,
      m.opcode,
      m.r,
    );
    expect(motion).toEqual([123456, 10.5, -3.25]);
  });

  it('fds (wl_data_offer.receive, wl_keyboard.keymap) and an odd-length array (enter)', () => {
    const w = new MessageWriter();
    writeWlDataOfferReceive(w, 20, 'text/plain;charset=utf-8', 42);
    expect(w.fds).toEqual([42]);
    const m = readBack(w);
    let receive: unknown[] = [];
    dispatchWlDataOfferRequest({ receive: (_: 0, ...a) => void (receive = a) }, 0, m.opcode, m.r);
    expect(receive).toEqual(['text/plain;charset=utf-8', 42]);
    expect(m.r.fdPos).toBe(1);

    const w2 = new MessageWriter();
    writeWlKeyboardEventKeymap(w2, 21, 1, 43, 4096);
    const m2 = readBack(w2);
    expect(m2.opcode).toBe(WL_KEYBOARD_EVENT_KEYMAP);
    let keymap: number[] = [];
    dispatchWlKeyboardEvent({ keymap: (_: 0, ...a) => void (keymap = a) }, 0, m2.opcode, m2.r);
    expect(keymap).toEqual([1, 43, 4096]);

    const w3 = new MessageWriter();
    writeWlKeyboardEventEnter(w3, 21, 5, 30, Buffer.from([1, 2, 3, 4, 5]));
    const m3 = readBack(w3);
    let keys: number[] = [];
    dispatchWlKeyboardEvent(
      { enter: (_: 0, serial, surface, k) => void (keys = [serial, surface, ...k]) },
      0,
      m3.opcode,
      m3.r,
    );
    expect(keys).toEqual([5, 30, 1, 2, 3, 4, 5]);
  });

  it('nullable strings (wl_data_offer.accept), untyped new_id (wl_registry.bind)', () => {
    for (const mime of [null, 'text/uri-list']) {
      const w = new MessageWriter();
      writeWlDataOfferAccept(w, 20, 99, mime);
      const m = readBack(w);
      let got: unknown[] = [];
      dispatchWlDataOfferRequest({ accept: (_: 0, ...a) => void (got = a) }, 0, m.opcode, m.r);
      expect(got).toEqual([99, mime]);
    }
    const w = new MessageWriter();
    writeWlRegistryBind(w, 2, 17, 'xdg_wm_base', 6, 0x10);
    const m = readBack(w);
    expect(m.opcode).toBe(WL_REGISTRY_BIND);
    let bind: unknown[] = [];
    dispatchWlRegistryRequest({ bind: (_: 0, ...a) => void (bind = a) }, 0, m.opcode, m.r);
    expect(bind).toEqual([17, 'xdg_wm_base', 6, 0x10]);
  });

  it('nullable objects (wl_surface.attach) and a message with an fd among ints', () => {
    const w = new MessageWriter();
    writeWlSurfaceAttach(w, 9, 0, 1, 2);
    let m = readBack(w);
    let attach: number[] = [];
    dispatchWlSurfaceRequest({ attach: (_: 0, ...a) => void (attach = a) }, 0, m.opcode, m.r);
    expect(attach).toEqual([0, 1, 2]);

    const w2 = new MessageWriter();
    writeZwpLinuxBufferParamsV1Add(w2, 30, 55, 0, 64, 4096, 0x01000000, 0x12345678);
    m = readBack(w2);
    let add: number[] = [];
    dispatchZwpLinuxBufferParamsV1Request(
      { add: (_: 0, ...a) => void (add = a) },
      0,
      m.opcode,
      m.r,
    );
    expect(add).toEqual([55, 0, 64, 4096, 0x01000000, 0x12345678]);
  });

  it('reads nothing when the handler is missing; rejects a null non-nullable string', () => {
    const w = new MessageWriter();
    writeXdgToplevelSetTitle(w, 7, 'x');
    const m = readBack(w);
    expect(dispatchXdgToplevelRequest({}, 0, m.opcode, m.r)).toBeUndefined();
    expect(m.r.pos).toBe(8);
    expect(dispatchXdgToplevelRequest({ set_title: () => true }, 0, 99, m.r)).toBeUndefined();

    const bad = new MessageWriter();
    bad.begin(7, XDG_TOPLEVEL_SET_TITLE);
    bad.string(null);
    bad.end();
    const b = readBack(bad);
    expect(() => dispatchXdgToplevelRequest({ set_title: () => true }, 0, b.opcode, b.r)).toThrow(
      WireError,
    );
    const h: WlDataOfferEventHandlers<number> = {};
    expect(h).toEqual({});
  });
});

// ---------------------------------------------------------------------------------------------
// Failures

describe('generator errors', () => {
  function fails(files: Record<string, string>): {
    status: number | null;
    stderr: string;
    out: string;
  } {
    const dir = mkdtempSync(join(tmp, 'bad-'));
    for (const [name, text] of Object.entries(files)) {
      mkdirSync(join(dir, 'in', name, '..'), { recursive: true });
      writeFileSync(join(dir, 'in', name), text);
    }
    const out = join(dir, 'out');
    return { ...runCodegen(join(dir, 'in'), out), out };
  }
  const ok = (name: string, body = '') =>
    `<?xml version="1.0"?>\n<protocol name="${name}">\n  <interface name="${name}_a" version="2">\n${body}  </interface>\n</protocol>\n`;

  it('reports malformed XML with file and line, writes nothing', () => {
    const r = fails({
      'good.xml': ok('good'),
      'sub/bad.xml':
        '<?xml version="1.0"?>\n<protocol name="bad">\n  <interface name="x" version="1">\n    <request name="r">\n  </interface>\n</protocol>\n',
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/sub\/bad\.xml:5: malformed XML: .*request/);
    expect(() => readdirSync(r.out)).toThrow();
  });

  it('reports an argument naming an unknown interface', () => {
    const r = fails({
      'a.xml': ok(
        'a',
        '    <request name="get">\n      <arg name="id" type="new_id" interface="nowhere_v1"/>\n    </request>\n',
      ),
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(
      "a.xml:5: a_a.get arg id: interface 'nowhere_v1' is not defined in any protocol file",
    );
  });

  it('reports bad attributes and duplicate interfaces across files', () => {
    const r = fails({
      'a.xml': ok(
        'a',
        '    <event name="e" since="3">\n      <arg name="n" type="int" allow-null="true"/>\n      <arg name="t" type="float"/>\n    </event>\n    <enum name="e"><entry name="x" value="twelve"/></enum>\n',
      ),
      'b.xml': ok('a').replace('name="a"', 'name="b"'),
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('a.xml:4: a_a.e: since 3 is above the interface version 2');
    expect(r.stderr).toContain('a.xml:5: a_a.e arg n: allow-null is only valid for');
    expect(r.stderr).toContain("a.xml:6: a_a.e arg t: unknown type 'float'");
    expect(r.stderr).toContain('a.xml:8: a_a.e.x: value "twelve" is neither decimal');
    expect(r.stderr).toMatch(/b\.xml:3: interface a_a is also defined in .*a\.xml:3/);
  });

  it('ignores unknown attributes and elements', () => {
    const r = fails({
      'a.xml': ok(
        'a',
        '    <request name="r" frozen="yes" deprecated-since="2">\n      <description summary="x">text</description>\n      <arg name="s" type="string" new-thing="1"/>\n    </request>\n    <whatever/>\n',
      ),
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const text = readFileSync(join(r.out, 'a.ts'), 'utf8');
    expect(text).toContain(
      'export function writeAAR(w: MessageWriter, objectId: number, s: string): void {',
    );
  });
});
