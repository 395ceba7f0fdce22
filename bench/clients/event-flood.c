/* event-flood N WINDOW: N wl_display.sync requests with up to WINDOW unanswered at a time,
 * so the compositor answers with a continuous stream of events; every sync brings two events
 * (wl_callback.done and wl_display.delete_id). Prints events per second. The window keeps
 * the client reading while the compositor writes: a libwayland 1.21 server disconnects a
 * client whose socket and 4096-byte output buffer are both full. */
#include <stdio.h>

#include "common.h"

static long outstanding;
static long done;

static void callback_done(void *data, struct wl_callback *callback, uint32_t serial)
{
	(void)data;
	(void)serial;
	wl_callback_destroy(callback);
	outstanding--;
	done++;
}

static const struct wl_callback_listener callback_listener = { .done = callback_done };

int main(int argc, char **argv)
{
	set_program_name("event-flood");
	long n = positive_arg(argc, argv, 1, "N");
	long window = positive_arg(argc, argv, 2, "WINDOW");
	struct wl_display *display = connect_display();
	roundtrip(display);

	double cpu0 = proxy_cpu_seconds();
	double start = now();
	long sent = 0;
	while (done < n) {
		/* Top the window up in batches that fit libwayland's output buffer (12 bytes each). */
		while (sent < n && outstanding < window) {
			for (int i = 0; i < 256 && sent < n && outstanding < window; i++) {
				struct wl_callback *cb = wl_display_sync(display);
				wl_callback_add_listener(cb, &callback_listener, NULL);
				outstanding++;
				sent++;
			}
			flush_blocking(display);
		}
		dispatch_blocking(display);
	}
	double total = now() - start;
	double cpu1 = proxy_cpu_seconds();

	printf("{\"syncs\": %ld, \"events\": %ld, \"seconds\": %.6f, \"per_second\": %.1f, "
	       "\"proxy_cpu_ns\": %.3f}\n",
	       n, 2 * n, total, 2 * n / total, cpu0 < 0 ? -1 : (cpu1 - cpu0) / (2 * n) * 1e9);
	wl_display_disconnect(display);
	return 0;
}
