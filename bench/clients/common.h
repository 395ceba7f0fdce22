/* Shared helpers of the load generators: plain libwayland-client, nothing clever, so that what
 * the benchmark measures is the compositor path (direct or through a proxy), not this code. */
#ifndef TSWL_BENCH_COMMON_H
#define TSWL_BENCH_COMMON_H

#include <stdint.h>
#include <wayland-client.h>

#include "xdg-shell-client-protocol.h"

struct globals {
	struct wl_display *display;
	struct wl_registry *registry;
	struct wl_compositor *compositor;
	uint32_t compositor_version;
	struct wl_shm *shm;
	struct xdg_wm_base *wm_base;
};

/* Prints "<program>: <message>" to stderr and exits with status 1. */
void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void set_program_name(const char *name);

/* Seconds on CLOCK_MONOTONIC. */
double now(void);

/* wl_display_connect(NULL) or die. */
struct wl_display *connect_display(void);

/* Connects, binds wl_compositor, wl_shm and xdg_wm_base (answering pings), one round trip. */
void bind_globals(struct globals *g);

/* Round trip or die (a protocol error or a lost connection ends the run with a message). */
void roundtrip(struct wl_display *display);

/* Flushes everything queued, waiting for the socket to drain when it is full (EAGAIN). */
void flush_blocking(struct wl_display *display);

/* Blocks until at least one event was dispatched, or dies. */
void dispatch_blocking(struct wl_display *display);

/* CPU time of the processes listed in BENCH_PROXY_PIDS and all their descendants, in seconds:
 * every thread's on-CPU time (user + system, from /proc/<pid>/task/<tid>/schedstat in
 * nanoseconds; utime + stime from /proc/<pid>/stat where schedstat is missing) plus reaped
 * children. -1 when the variable is unset (a direct connection). Read while the client is
 * connected, so per-connection processes (waypipe forks one per client) are included. */
double proxy_cpu_seconds(void);

/* Asks the proxy for its counters (bytes copied into host memory): writes "stats" to the control
 * FIFO named by BENCH_PROXY_CTL, when set; the proxy appends the report to its log file. */
void proxy_stats_mark(void);

/* argv[i] as a positive number, or die naming the argument. */
long positive_arg(int argc, char **argv, int i, const char *name);

#endif
