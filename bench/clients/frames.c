/* frames W H COUNT MODE DAMAGE: an xdg_toplevel that commits COUNT W×H XRGB8888 shm frames.
 *   MODE "vsync":  one frame callback per commit; the next commit waits for it.
 *   MODE "free":   no frame callbacks; the next commit waits only for a released buffer
 *                  (three buffers rotate), as fast as the compositor hands them back.
 *   DAMAGE 100:    every pixel is redrawn and damaged.
 *   DAMAGE 5:      a W/4 × H/5 rectangle (5 % of the pixels) that moves every frame.
 * The damaged pixels really change every frame (a proxy that diffs cannot skip them). Prints
 * the time per commit (until the compositor has seen the last one), the part of it spent
 * drawing, and the proxy's CPU time per commit. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common.h"

#define NBUF 3

struct buffer {
	struct wl_buffer *wl;
	uint8_t *pixels;
	bool busy;
};

static struct buffer buffers[NBUF];
static bool configured, frame_done;

static void buffer_release(void *data, struct wl_buffer *wl)
{
	(void)wl;
	((struct buffer *)data)->busy = false;
}

static const struct wl_buffer_listener buffer_listener = { .release = buffer_release };

static void xdg_surface_configure(void *data, struct xdg_surface *xdg_surface, uint32_t serial)
{
	(void)data;
	xdg_surface_ack_configure(xdg_surface, serial);
	configured = true;
}

static const struct xdg_surface_listener xdg_surface_listener = { .configure =
									  xdg_surface_configure };

static void toplevel_configure(void *data, struct xdg_toplevel *t, int32_t w, int32_t h,
			       struct wl_array *states)
{
	(void)data, (void)t, (void)w, (void)h, (void)states;
}

static void toplevel_close(void *data, struct xdg_toplevel *t)
{
	(void)data, (void)t;
}

static const struct xdg_toplevel_listener toplevel_listener = {
	.configure = toplevel_configure,
	.close = toplevel_close,
};

static void frame_callback_done(void *data, struct wl_callback *cb, uint32_t time)
{
	(void)data, (void)time;
	wl_callback_destroy(cb);
	frame_done = true;
}

static const struct wl_callback_listener frame_listener = { .done = frame_callback_done };

static void create_buffers(struct globals *g, int w, int h)
{
	size_t stride = (size_t)w * 4, size = stride * (size_t)h;
	int fd = memfd_create("tswl-bench-frames", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)(size * NBUF)) < 0)
		die("memfd: %s", strerror(errno));
	uint8_t *map = mmap(NULL, size * NBUF, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	memset(map, 0x20, size * NBUF);
	struct wl_shm_pool *pool = wl_shm_create_pool(g->shm, fd, (int32_t)(size * NBUF));
	for (int i = 0; i < NBUF; i++) {
		buffers[i].pixels = map + size * (size_t)i;
		buffers[i].wl = wl_shm_pool_create_buffer(pool, (int32_t)(size * (size_t)i), w, h,
							  (int32_t)stride, WL_SHM_FORMAT_XRGB8888);
		wl_buffer_add_listener(buffers[i].wl, &buffer_listener, &buffers[i]);
	}
	wl_shm_pool_destroy(pool);
	close(fd);
}

static struct buffer *free_buffer(struct wl_display *display)
{
	for (;;) {
		for (int i = 0; i < NBUF; i++)
			if (!buffers[i].busy)
				return &buffers[i];
		dispatch_blocking(display);
	}
}

/* Draws frame number `frame` into b: a new grey level over the damaged rectangle. */
static void draw(struct buffer *b, int w, int h, int x, int y, int dw, int dh, long frame)
{
	int value = 0x30 + (int)(frame % 0xc0);
	size_t stride = (size_t)w * 4;
	if (dw == w && dh == h) {
		memset(b->pixels, value, stride * (size_t)h);
		return;
	}
	for (int row = y; row < y + dh; row++)
		memset(b->pixels + stride * (size_t)row + (size_t)x * 4, value, (size_t)dw * 4);
}

int main(int argc, char **argv)
{
	set_program_name("frames");
	int w = (int)positive_arg(argc, argv, 1, "W");
	int h = (int)positive_arg(argc, argv, 2, "H");
	long count = positive_arg(argc, argv, 3, "COUNT");
	if (argc < 5 || (strcmp(argv[4], "vsync") != 0 && strcmp(argv[4], "free") != 0))
		die("MODE must be vsync or free");
	bool vsync = strcmp(argv[4], "vsync") == 0;
	long damage = positive_arg(argc, argv, 5, "DAMAGE");
	if (damage != 100 && damage != 5)
		die("DAMAGE must be 100 or 5");
	int dw = damage == 100 ? w : w / 4, dh = damage == 100 ? h : h / 5;

	struct globals g;
	bind_globals(&g);
	struct wl_surface *surface = wl_compositor_create_surface(g.compositor);
	struct xdg_surface *xdg_surface = xdg_wm_base_get_xdg_surface(g.wm_base, surface);
	xdg_surface_add_listener(xdg_surface, &xdg_surface_listener, NULL);
	struct xdg_toplevel *toplevel = xdg_surface_get_toplevel(xdg_surface);
	xdg_toplevel_add_listener(toplevel, &toplevel_listener, NULL);
	xdg_toplevel_set_title(toplevel, "tswl-bench frames");
	wl_surface_commit(surface);
	while (!configured)
		dispatch_blocking(g.display);
	create_buffers(&g, w, h);

	double drawing = 0, cpu0 = 0, start = 0;
	/* First sight of every buffer is a full copy for some proxies: the first frames are damaged
	 * whole; then frames as measured, until a proxy's buffers have caught up with those. */
	long whole = 2 * NBUF, warmup = 4 * NBUF;
	for (long f = 0; f < warmup + count; f++) {
		if (f == warmup) {
			roundtrip(g.display);
			proxy_stats_mark();
			cpu0 = proxy_cpu_seconds();
			start = now();
			drawing = 0;
		}
		struct buffer *b = free_buffer(g.display);
		bool full = f < whole || damage == 100;
		int x = full ? 0 : (int)((f * 97) % (w - dw + 1));
		int y = full ? 0 : (int)((f * 53) % (h - dh + 1));
		double t = now();
		draw(b, w, h, x, y, full ? w : dw, full ? h : dh, f);
		drawing += now() - t;

		if (vsync) {
			frame_done = false;
			wl_callback_add_listener(wl_surface_frame(surface), &frame_listener, NULL);
		}
		wl_surface_attach(surface, b->wl, 0, 0);
		if (g.compositor_version >= 4)
			wl_surface_damage_buffer(surface, x, y, full ? w : dw, full ? h : dh);
		else
			wl_surface_damage(surface, x, y, full ? w : dw, full ? h : dh);
		wl_surface_commit(surface);
		b->busy = true;
		flush_blocking(g.display);
		while (vsync && !frame_done)
			dispatch_blocking(g.display);
	}
	roundtrip(g.display);
	double total = now() - start;
	double cpu1 = proxy_cpu_seconds();
	proxy_stats_mark();

	printf("{\"width\": %d, \"height\": %d, \"mode\": \"%s\", \"damage_percent\": %ld, "
	       "\"commits\": %ld, \"seconds\": %.6f, \"commit_ms\": %.4f, \"draw_ms\": %.4f, "
	       "\"proxy_cpu_ms\": %.4f}\n",
	       w, h, vsync ? "vsync" : "free", damage, count, total, total / count * 1e3,
	       drawing / count * 1e3, cpu0 < 0 ? -1 : (cpu1 - cpu0) / count * 1e3);

	xdg_toplevel_destroy(toplevel);
	xdg_surface_destroy(xdg_surface);
	wl_surface_destroy(surface);
	wl_display_disconnect(g.display);
	return 0;
}
