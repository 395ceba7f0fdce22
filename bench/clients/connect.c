/* connect N: N times, connect, create a registry and wait for its first round trip (all the
 * globals), then disconnect; prints the time from connect to the end of that round trip. */
#include <stdio.h>
#include <string.h>

#include "common.h"

static void global(void *data, struct wl_registry *registry, uint32_t name, const char *iface,
		   uint32_t version)
{
	(void)registry;
	(void)name;
	(void)iface;
	(void)version;
	(*(int *)data)++;
}

static void global_remove(void *data, struct wl_registry *registry, uint32_t name)
{
	(void)data;
	(void)registry;
	(void)name;
}

static const struct wl_registry_listener listener = { global, global_remove };

int main(int argc, char **argv)
{
	set_program_name("connect");
	long n = positive_arg(argc, argv, 1, "N");
	double sum = 0, best = 1e9;
	int globals = 0;
	for (long i = 0; i < n; i++) {
		globals = 0;
		double start = now();
		struct wl_display *display = connect_display();
		struct wl_registry *registry = wl_display_get_registry(display);
		wl_registry_add_listener(registry, &listener, &globals);
		roundtrip(display);
		double t = now() - start;
		if (globals == 0)
			die("the registry announced no globals");
		sum += t;
		if (t < best)
			best = t;
		wl_registry_destroy(registry);
		wl_display_disconnect(display);
	}
	printf("{\"count\": %ld, \"globals\": %d, \"mean_ms\": %.4f, \"min_ms\": %.4f}\n", n, globals,
	       sum / n * 1e3, best * 1e3);
	return 0;
}
