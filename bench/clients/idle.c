/* idle: an idle client for the memory figures. Connects, does a registry round trip, creates a
 * wl_surface, round trip, prints "ready" and then only answers the compositor until its stdin
 * is closed (or it is killed). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

int main(void)
{
	set_program_name("idle");
	struct globals g;
	bind_globals(&g);
	struct wl_surface *surface = wl_compositor_create_surface(g.compositor);
	roundtrip(g.display);
	printf("ready\n");
	fflush(stdout);

	struct pollfd p[2] = {
		{ .fd = wl_display_get_fd(g.display), .events = POLLIN },
		{ .fd = STDIN_FILENO, .events = POLLIN },
	};
	for (;;) {
		flush_blocking(g.display);
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll: %s", strerror(errno));
		}
		if (p[1].revents) {
			char c;
			if (read(STDIN_FILENO, &c, 1) <= 0)
				break;
		}
		if (p[0].revents)
			dispatch_blocking(g.display);
	}
	wl_surface_destroy(surface);
	wl_display_disconnect(g.display);
	return 0;
}
