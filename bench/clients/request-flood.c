/* request-flood N: N wl_surface.damage requests (24 bytes each, no reply), flushed in batches
 * as fast as the socket takes them, then one round trip so that the compositor has handled
 * them all; prints requests per second over the whole span. */
#include <stdio.h>

#include "common.h"

/* 128 requests × 24 bytes stay below libwayland-client's 4096-byte output buffer, which
 * libwayland 1.21 cannot grow: a marshal into a full buffer whose flush hits EAGAIN is fatal. */
#define BATCH 128

int main(int argc, char **argv)
{
	set_program_name("request-flood");
	long n = positive_arg(argc, argv, 1, "N");
	struct globals g;
	bind_globals(&g);
	struct wl_surface *surface = wl_compositor_create_surface(g.compositor);
	roundtrip(g.display);

	double cpu0 = proxy_cpu_seconds();
	double start = now();
	for (long sent = 0; sent < n;) {
		for (int i = 0; i < BATCH && sent < n; i++, sent++)
			wl_surface_damage(surface, 0, 0, 64, 64);
		flush_blocking(g.display);
	}
	roundtrip(g.display);
	double total = now() - start;
	double cpu1 = proxy_cpu_seconds();

	printf("{\"count\": %ld, \"seconds\": %.6f, \"per_second\": %.1f, \"proxy_cpu_ns\": %.3f}\n",
	       n, total, n / total, cpu0 < 0 ? -1 : (cpu1 - cpu0) / n * 1e9);
	wl_surface_destroy(surface);
	wl_display_disconnect(g.display);
	return 0;
}
