// Image layouts as rutabaga's system gralloc computes them (no GPU: memfd-backed, linear, no
// stride alignment), so that guests see the same strides, offsets and sizes as under crosvm.

export const PAGE_SIZE = 4096;

/** Largest image the host lays out: the page-rounded size and every offset must fit in a u32. */
export const MAX_IMAGE_SIZE = 0x1_0000_0000 - PAGE_SIZE;

export function fourcc(code: string): number {
  return (
    (code.charCodeAt(0) |
      (code.charCodeAt(1) << 8) |
      (code.charCodeAt(2) << 16) |
      (code.charCodeAt(3) << 24)) >>>
    0
  );
}

interface PlanarLayout {
  bytesPerPixel: readonly number[];
  horizontalSubsampling: readonly number[];
  verticalSubsampling: readonly number[];
}

const packed = (bpp: number): PlanarLayout => ({
  bytesPerPixel: [bpp],
  horizontalSubsampling: [1],
  verticalSubsampling: [1],
});

/** The formats the system gralloc lays out, by fourcc. */
const LAYOUTS = new Map<number, PlanarLayout>([
  [fourcc('R8  '), packed(1)],
  [fourcc('RG16'), packed(2)],
  [fourcc('BG24'), packed(3)],
  [fourcc('AR24'), packed(4)],
  [fourcc('XR24'), packed(4)],
  [fourcc('AB24'), packed(4)],
  [fourcc('XB24'), packed(4)],
  [fourcc('AR30'), packed(4)],
  [fourcc('XR30'), packed(4)],
  [fourcc('AB30'), packed(4)],
  [fourcc('XB30'), packed(4)],
  [fourcc('AB4H'), packed(8)],
  [
    fourcc('NV12'),
    { bytesPerPixel: [1, 2], horizontalSubsampling: [1, 2], verticalSubsampling: [1, 2] },
  ],
  [
    fourcc('YV12'),
    { bytesPerPixel: [1, 1, 1], horizontalSubsampling: [1, 2, 2], verticalSubsampling: [1, 2, 2] },
  ],
]);

export interface ImageRequirements {
  readonly width: number;
  readonly height: number;
  readonly drmFormat: number;
  readonly strides: readonly [number, number, number, number];
  readonly offsets: readonly [number, number, number, number];
  /** Rounded up to a page, as RutabagaGralloc does. */
  readonly size: number;
}

export function formatName(drmFormat: number): string {
  let s = '';
  for (let i = 0; i < 4; i++) {
    const c = (drmFormat >>> (8 * i)) & 0xff;
    s += c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : '?';
  }
  return `${s.trimEnd()} (0x${drmFormat.toString(16).padStart(8, '0')})`;
}

/**
 * The canonical layout: stride[p] = bpp[p] × (width / hsub[p]), planes back to back, size
 * rounded up to a page. Throws (with the reason) for unknown formats, empty images and images
 * too large to describe.
 */
export function imageRequirements(
  width: number,
  height: number,
  drmFormat: number,
): ImageRequirements {
  const layout = LAYOUTS.get(drmFormat);
  if (!layout) throw new Error(`unsupported image format ${formatName(drmFormat)}`);
  const strides: [number, number, number, number] = [0, 0, 0, 0];
  const offsets: [number, number, number, number] = [0, 0, 0, 0];
  // Products of two u32s exceed 2^53: sum in bigints and check each value that goes on the wire.
  let offset = 0n;
  for (let p = 0; p < layout.bytesPerPixel.length; p++) {
    const stride =
      BigInt(layout.bytesPerPixel[p]) * BigInt(Math.floor(width / layout.horizontalSubsampling[p]));
    const planeSize = BigInt(Math.floor(height / layout.verticalSubsampling[p])) * stride;
    if (offset > BigInt(MAX_IMAGE_SIZE) || stride > 0xffff_ffffn) {
      throw new Error(`image ${width}x${height} ${formatName(drmFormat)} is too large`);
    }
    strides[p] = Number(stride);
    offsets[p] = Number(offset);
    offset += planeSize;
  }
  if (offset === 0n) throw new Error(`image ${width}x${height} has no pixels`);
  const size = ((offset + BigInt(PAGE_SIZE - 1)) / BigInt(PAGE_SIZE)) * BigInt(PAGE_SIZE);
  if (size > BigInt(MAX_IMAGE_SIZE)) {
    throw new Error(
      `image ${width}x${height} ${formatName(drmFormat)} is too large (${size} bytes)`,
    );
  }
  return { width, height, drmFormat, strides, offsets, size: Number(size) };
}
