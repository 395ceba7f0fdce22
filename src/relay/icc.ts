// wp_image_description_creator_icc_v1.set_icc_file across a VM boundary: the client's ICC file
// is guest memory the host cannot open, so its bytes are copied into host memory (the same kind
// as shadow shm buffers) and that file goes to the compositor instead.
import { fstatSync, readSync } from 'node:fs';
import type { WpImageDescriptionCreatorIccV1RequestHandlers } from '../generated/color-management-v1.js';
import {
  WpImageDescriptionCreatorIccV1Error,
  dispatchWpImageDescriptionCreatorIccV1Request,
  writeWpImageDescriptionCreatorIccV1SetIccFile,
} from '../generated/color-management-v1.js';
import { closeQuietly } from '../wire/fd-queue.js';
import { ProtocolError } from './errors.js';
import type { HookContext, InterfaceHooks } from './relay.js';
import type { Shadowing } from './shm.js';

/** The protocol's limit on an ICC profile. */
const MAX_ICC_SIZE = 32 * 1024 * 1024;

export function iccHooks(shadowing: Shadowing): Map<string, InterfaceHooks> {
  const requests: WpImageDescriptionCreatorIccV1RequestHandlers<HookContext> = {
    set_icc_file({ relay, obj }, fd, offset, length) {
      const state = shadowing.state(relay);
      if (!state) return false;
      // on a throw the relay closes the fd; once handled here it is ours to close
      const fail = (code: number, why: string): never => {
        throw new ProtocolError(obj.clientId, code, `set_icc_file: ${why}`);
      };
      if (length === 0 || length > MAX_ICC_SIZE)
        fail(WpImageDescriptionCreatorIccV1Error.bad_size, `${length} bytes`);
      let size = 0;
      try {
        size = fstatSync(fd).size;
      } catch (e) {
        fail(WpImageDescriptionCreatorIccV1Error.bad_fd, (e as Error).message);
      }
      if (offset + length > size) {
        fail(
          WpImageDescriptionCreatorIccV1Error.out_of_file,
          `bytes ${offset}+${length} of a ${size}-byte file`,
        );
      }
      const memory = state.allocator.allocate(length);
      try {
        for (let at = 0; at < length;) {
          const n = readSync(fd, memory.bytes, at, length - at, offset + at);
          if (n <= 0) fail(WpImageDescriptionCreatorIccV1Error.out_of_file, 'the file ended early');
          at += n;
        }
        writeWpImageDescriptionCreatorIccV1SetIccFile(
          relay.host.out,
          obj.hostId,
          memory.exportFd(),
          0,
          length,
        );
      } finally {
        // the compositor gets a file of its own; our mapping goes once the request is out
        memory.free();
      }
      closeQuietly(fd);
      return true;
    },
  };
  return new Map([
    [
      'wp_image_description_creator_icc_v1',
      {
        request: (ctx, opcode, args) =>
          dispatchWpImageDescriptionCreatorIccV1Request(requests, ctx, opcode, args),
      },
    ],
  ]);
}
