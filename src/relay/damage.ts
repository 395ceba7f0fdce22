// Damage in buffer pixels: a short list of rectangles, collapsed to their bounding box when it
// grows long. Overlaps are allowed (a pixel may be copied twice); contained rectangles are dropped.

/** Beyond this many rectangles the damage becomes their bounding box. */
const MAX_RECTS = 16;

export class Damage {
  full = false;
  /** x, y, width, height of each rectangle, clipped to the buffer. */
  private readonly rects: number[] = [];

  get count(): number {
    return this.full ? 1 : this.rects.length / 4;
  }

  get empty(): boolean {
    return !this.full && this.rects.length === 0;
  }

  clear(): void {
    this.full = false;
    this.rects.length = 0;
  }

  setFull(): void {
    this.full = true;
    this.rects.length = 0;
  }

  /** Adds a rectangle, clipped to a buffer of width × height. */
  add(x: number, y: number, w: number, h: number, width: number, height: number): void {
    if (this.full) return;
    let x0 = Math.max(0, Math.floor(x));
    let y0 = Math.max(0, Math.floor(y));
    let x1 = Math.min(width, Math.ceil(x + w));
    let y1 = Math.min(height, Math.ceil(y + h));
    if (x1 <= x0 || y1 <= y0) return;
    if (x0 === 0 && y0 === 0 && x1 === width && y1 === height) return this.setFull();
    const r = this.rects;
    for (let i = 0; i < r.length; i += 4) {
      if (r[i] <= x0 && r[i + 1] <= y0 && r[i] + r[i + 2] >= x1 && r[i + 1] + r[i + 3] >= y1)
        return;
    }
    if (r.length >= MAX_RECTS * 4) {
      for (let i = 0; i < r.length; i += 4) {
        x0 = Math.min(x0, r[i]);
        y0 = Math.min(y0, r[i + 1]);
        x1 = Math.max(x1, r[i] + r[i + 2]);
        y1 = Math.max(y1, r[i + 1] + r[i + 3]);
      }
      r.length = 0;
    }
    r.push(x0, y0, x1 - x0, y1 - y0);
  }

  /** Pixels covered, at most (overlapping rectangles count twice). */
  area(width: number, height: number): number {
    if (this.full) return width * height;
    let n = 0;
    const r = this.rects;
    for (let i = 0; i < r.length; i += 4) n += r[i + 2] * r[i + 3];
    return n;
  }

  /** Adds every rectangle of `other` (same buffer size). */
  addAll(other: Damage, width: number, height: number): void {
    if (other.full) return this.setFull();
    const r = other.rects;
    for (let i = 0; i < r.length; i += 4)
      this.add(r[i], r[i + 1], r[i + 2], r[i + 3], width, height);
  }

  /** Writes the rectangles into `out` (growing it if needed); returns it and the count. */
  write(out: Int32Array, width: number, height: number): Int32Array {
    const n = this.count;
    if (out.length < n * 4) out = new Int32Array(Math.max(n * 4, out.length * 2));
    if (this.full) out.set([0, 0, width, height]);
    else out.set(this.rects);
    return out;
  }
}

/**
 * Adds surface-coordinate damage to `out` in buffer pixels, for a buffer of bufferWidth ×
 * bufferHeight shown with `scale` and `transform` (wl_output.transform), as compositors map
 * surface points to buffer points.
 */
export function addSurfaceDamage(
  out: Damage,
  x: number,
  y: number,
  w: number,
  h: number,
  bufferWidth: number,
  bufferHeight: number,
  scale: number,
  transform: number,
): void {
  if (scale < 1 || transform < 0 || transform > 7) return out.setFull();
  const swapped = (transform & 1) === 1;
  // the surface's size in surface coordinates
  const sw = (swapped ? bufferHeight : bufferWidth) / scale;
  const sh = (swapped ? bufferWidth : bufferHeight) / scale;
  // clip first: clients damage (0, 0, INT32_MAX, INT32_MAX)
  const x0 = Math.max(0, x);
  const y0 = Math.max(0, y);
  const x1 = Math.min(sw, x + w);
  const y1 = Math.min(sh, y + h);
  if (x1 <= x0 || y1 <= y0) return;
  const [ax, ay] = toBuffer(x0, y0, sw, sh, transform);
  const [bx, by] = toBuffer(x1, y1, sw, sh, transform);
  const left = Math.min(ax, bx) * scale;
  const top = Math.min(ay, by) * scale;
  const right = Math.max(ax, bx) * scale;
  const bottom = Math.max(ay, by) * scale;
  out.add(left, top, right - left, bottom - top, bufferWidth, bufferHeight);
}

/** A surface point to an untransformed buffer point (before scaling). */
function toBuffer(
  sx: number,
  sy: number,
  w: number,
  h: number,
  transform: number,
): [number, number] {
  switch (transform) {
    case 1: // 90
      return [sy, w - sx];
    case 2: // 180
      return [w - sx, h - sy];
    case 3: // 270
      return [h - sy, sx];
    case 4: // flipped
      return [w - sx, sy];
    case 5: // flipped 90
      return [sy, sx];
    case 6: // flipped 180
      return [sx, h - sy];
    case 7: // flipped 270
      return [h - sy, w - sx];
    default:
      return [sx, sy];
  }
}
