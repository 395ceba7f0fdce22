// Damage in buffer pixels: a short list of rectangles, collapsed to their bounding box when it
// grows long. Rectangles may overlap as they are added (contained ones are dropped); they are
// written out for the copy as rectangles that do not, so no pixel is copied twice.

/** Beyond this many rectangles the damage becomes their bounding box. */
const MAX_RECTS = 16;

/** Rectangles as the copy takes them: x, y, width and height of each, `count` of them. */
export class RectList {
  rects = new Int32Array(64);
  count = 0;

  push(x: number, y: number, w: number, h: number): void {
    if (this.rects.length < (this.count + 1) * 4) {
      const grown = new Int32Array(this.rects.length * 2);
      grown.set(this.rects);
      this.rects = grown;
    }
    const i = this.count++ * 4;
    this.rects[i] = x;
    this.rects[i + 1] = y;
    this.rects[i + 2] = w;
    this.rects[i + 3] = h;
  }
}

// scratch for write(): the rectangles' top and bottom edges, and one band's x intervals
const edges = new Int32Array(MAX_RECTS * 2);
const spans = new Int32Array(MAX_RECTS * 2);
const areaScratch = new RectList();

export class Damage {
  full = false;
  /** x, y, width, height of each rectangle, clipped to the buffer. */
  private readonly rects = new Int32Array(MAX_RECTS * 4);
  private n = 0;

  get count(): number {
    return this.full ? 1 : this.n;
  }

  get empty(): boolean {
    return !this.full && this.n === 0;
  }

  clear(): void {
    this.full = false;
    this.n = 0;
  }

  setFull(): void {
    this.full = true;
    this.n = 0;
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
    const end = this.n * 4;
    for (let i = 0; i < end; i += 4) {
      if (r[i] <= x0 && r[i + 1] <= y0 && r[i] + r[i + 2] >= x1 && r[i + 1] + r[i + 3] >= y1)
        return;
    }
    if (this.n === MAX_RECTS) {
      for (let i = 0; i < end; i += 4) {
        x0 = Math.min(x0, r[i]);
        y0 = Math.min(y0, r[i + 1]);
        x1 = Math.max(x1, r[i] + r[i + 2]);
        y1 = Math.max(y1, r[i + 1] + r[i + 3]);
      }
      this.n = 0;
    }
    const i = this.n++ * 4;
    r[i] = x0;
    r[i + 1] = y0;
    r[i + 2] = x1 - x0;
    r[i + 3] = y1 - y0;
  }

  /** Pixels covered. */
  area(width: number, height: number): number {
    this.write(areaScratch, width, height);
    let n = 0;
    const r = areaScratch.rects;
    for (let i = 0; i < areaScratch.count * 4; i += 4) n += r[i + 2] * r[i + 3];
    return n;
  }

  /** Adds every rectangle of `other` (same buffer size). */
  addAll(other: Damage, width: number, height: number): void {
    if (other.full) return this.setFull();
    const r = other.rects;
    for (let i = 0; i < other.n * 4; i += 4)
      this.add(r[i], r[i + 1], r[i + 2], r[i + 3], width, height);
  }

  /**
   * Writes the damage into `out` as rectangles that do not overlap: the buffer is cut into
   * horizontal bands at every rectangle's top and bottom, each band's covered x ranges are
   * merged, and a band that covers the same ranges as the one above extends its rectangles.
   */
  write(out: RectList, width: number, height: number): void {
    out.count = 0;
    if (this.full) return out.push(0, 0, width, height);
    const r = this.rects;
    const end = this.n * 4;
    if (this.n === 1) return out.push(r[0], r[1], r[2], r[3]);
    let edgeCount = 0;
    for (let i = 0; i < end; i += 4) {
      edgeCount = insertEdge(edgeCount, r[i + 1]);
      edgeCount = insertEdge(edgeCount, r[i + 1] + r[i + 3]);
    }
    // the rectangles written for the band above, when it touched this one
    let aboveFirst = 0;
    let aboveCount = 0;
    for (let k = 0; k + 1 < edgeCount; k++) {
      const top = edges[k];
      const bottom = edges[k + 1];
      let spanCount = 0;
      for (let i = 0; i < end; i += 4) {
        if (r[i + 1] > top || r[i + 1] + r[i + 3] < bottom) continue;
        // insertion by left edge
        let j = spanCount++ * 2;
        while (j > 0 && spans[j - 2] > r[i]) {
          spans[j] = spans[j - 2];
          spans[j + 1] = spans[j - 1];
          j -= 2;
        }
        spans[j] = r[i];
        spans[j + 1] = r[i] + r[i + 2];
      }
      let merged = 0;
      for (let j = 0; j < spanCount * 2; j += 2) {
        if (merged > 0 && spans[j] <= spans[merged * 2 - 1]) {
          spans[merged * 2 - 1] = Math.max(spans[merged * 2 - 1], spans[j + 1]);
        } else {
          spans[merged * 2] = spans[j];
          spans[merged * 2 + 1] = spans[j + 1];
          merged++;
        }
      }
      if (merged === aboveCount && sameSpans(out, aboveFirst, merged)) {
        for (let j = 0; j < merged; j++) out.rects[(aboveFirst + j) * 4 + 3] += bottom - top;
        continue;
      }
      aboveFirst = out.count;
      aboveCount = merged;
      for (let j = 0; j < merged * 2; j += 2)
        out.push(spans[j], top, spans[j + 1] - spans[j], bottom - top);
    }
  }
}

/** Inserts y into the sorted edges (once); returns the new count. */
function insertEdge(count: number, y: number): number {
  let j = count;
  while (j > 0 && edges[j - 1] > y) j--;
  if (j > 0 && edges[j - 1] === y) return count;
  edges.copyWithin(j + 1, j, count);
  edges[j] = y;
  return count + 1;
}

/** Whether the merged spans are the x ranges of out's rectangles from `first` on. */
function sameSpans(out: RectList, first: number, count: number): boolean {
  if (count === 0) return false;
  for (let j = 0; j < count; j++) {
    const i = (first + j) * 4;
    if (out.rects[i] !== spans[j * 2] || out.rects[i + 2] !== spans[j * 2 + 1] - spans[j * 2])
      return false;
  }
  return true;
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
