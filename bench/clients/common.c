#define _GNU_SOURCE
#include "common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *program = "bench-client";

void set_program_name(const char *name)
{
	program = name;
}

void die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", program);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct wl_display *connect_display(void)
{
	struct wl_display *display = wl_display_connect(NULL);
	if (!display)
		die("cannot connect to the Wayland display %s: %s",
		    getenv("WAYLAND_DISPLAY") ? getenv("WAYLAND_DISPLAY") : "(unset)", strerror(errno));
	return display;
}

static void check_display(struct wl_display *display, const char *what)
{
	int err = wl_display_get_error(display);
	if (!err)
		return;
	if (err == EPROTO) {
		const struct wl_interface *iface;
		uint32_t id;
		uint32_t code = wl_display_get_protocol_error(display, &iface, &id);
		die("%s: protocol error %u on %s@%u", what, code, iface ? iface->name : "?", id);
	}
	die("%s: connection lost: %s", what, strerror(err));
}

void roundtrip(struct wl_display *display)
{
	if (wl_display_roundtrip(display) < 0)
		check_display(display, "round trip");
	check_display(display, "round trip");
}

void dispatch_blocking(struct wl_display *display)
{
	if (wl_display_dispatch(display) < 0)
		check_display(display, "dispatch");
	check_display(display, "dispatch");
}

void flush_blocking(struct wl_display *display)
{
	while (wl_display_flush(display) < 0) {
		if (errno != EAGAIN)
			check_display(display, "flush");
		struct pollfd p = { .fd = wl_display_get_fd(display), .events = POLLOUT };
		if (poll(&p, 1, -1) < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		if (p.revents & (POLLERR | POLLHUP))
			die("flush: the connection was closed");
	}
}

static void wm_base_ping(void *data, struct xdg_wm_base *wm_base, uint32_t serial)
{
	(void)data;
	xdg_wm_base_pong(wm_base, serial);
}

static const struct xdg_wm_base_listener wm_base_listener = { .ping = wm_base_ping };

static void registry_global(void *data, struct wl_registry *registry, uint32_t name,
			    const char *interface, uint32_t version)
{
	struct globals *g = data;
	if (strcmp(interface, wl_compositor_interface.name) == 0) {
		g->compositor_version = version < 4 ? version : 4;
		g->compositor = wl_registry_bind(registry, name, &wl_compositor_interface,
						 g->compositor_version);
	} else if (strcmp(interface, wl_shm_interface.name) == 0) {
		g->shm = wl_registry_bind(registry, name, &wl_shm_interface, 1);
	} else if (strcmp(interface, xdg_wm_base_interface.name) == 0) {
		g->wm_base = wl_registry_bind(registry, name, &xdg_wm_base_interface, 1);
		xdg_wm_base_add_listener(g->wm_base, &wm_base_listener, NULL);
	}
}

static void registry_global_remove(void *data, struct wl_registry *registry, uint32_t name)
{
	(void)data;
	(void)registry;
	(void)name;
}

static const struct wl_registry_listener registry_listener = {
	.global = registry_global,
	.global_remove = registry_global_remove,
};

void bind_globals(struct globals *g)
{
	memset(g, 0, sizeof(*g));
	g->display = connect_display();
	g->registry = wl_display_get_registry(g->display);
	wl_registry_add_listener(g->registry, &registry_listener, g);
	roundtrip(g->display);
	if (!g->compositor)
		die("the compositor offers no wl_compositor");
	if (!g->shm)
		die("the compositor offers no wl_shm");
	if (!g->wm_base)
		die("the compositor offers no xdg_wm_base");
}

/* One process: its parent and its CPU time so far. */
struct proc_times {
	int pid;
	int ppid;
	double children; /* reaped children: cutime + cstime */
	double own_ticks; /* utime + stime, the coarse fallback */
};

/* On-CPU time of every thread of pid, from /proc/<pid>/task/<tid>/schedstat (nanoseconds,
 * much finer than the clock ticks of /proc/<pid>/stat); -1 when unavailable. */
static double threads_seconds(int pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	DIR *dir = opendir(path);
	if (!dir)
		return -1;
	double sum = 0;
	int found = 0;
	struct dirent *e;
	while ((e = readdir(dir))) {
		if (e->d_name[0] == '.')
			continue;
		char file[320];
		snprintf(file, sizeof(file), "/proc/%d/task/%s/schedstat", pid, e->d_name);
		FILE *f = fopen(file, "r");
		if (!f)
			continue;
		unsigned long long ns;
		if (fscanf(f, "%llu", &ns) == 1) {
			sum += (double)ns * 1e-9;
			found = 1;
		}
		fclose(f);
	}
	closedir(dir);
	return found ? sum : -1;
}

/* Parent and CPU time of pid: its threads' on-CPU time (utime + stime from /proc/<pid>/stat
 * when schedstat is missing) plus the reaped children's cutime + cstime. */
static int read_proc_times(int pid, struct proc_times *out)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: parse after the last ')'. */
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	char state;
	int ppid;
	unsigned long long utime, stime;
	long long cutime, cstime;
	if (sscanf(p + 2,
		   "%c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld", &state,
		   &ppid, &utime, &stime, &cutime, &cstime) != 6)
		return -1;
	out->pid = pid;
	out->ppid = ppid;
	double tick = 1.0 / (double)sysconf(_SC_CLK_TCK);
	out->children = (double)(cutime + cstime) * tick;
	out->own_ticks = (double)(utime + stime) * tick;
	return 0;
}

void proxy_stats_mark(void)
{
	const char *path = getenv("BENCH_PROXY_CTL");
	if (!path || !*path)
		return;
	int fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		die("cannot open the proxy's control FIFO %s: %s", path, strerror(errno));
	if (write(fd, "stats\n", 6) != 6)
		die("cannot write to %s: %s", path, strerror(errno));
	close(fd);
	/* the proxy answers from its event loop: let it, before the next request arrives */
	usleep(20000);
}

double proxy_cpu_seconds(void)
{
	const char *list = getenv("BENCH_PROXY_PIDS");
	if (!list || !*list)
		return -1;

	/* Every process on the machine, so that the roots' descendants can be found. */
	size_t count = 0, cap = 256;
	struct proc_times *procs = malloc(cap * sizeof(*procs));
	DIR *dir = opendir("/proc");
	if (!procs || !dir)
		die("cannot read /proc");
	struct dirent *e;
	while ((e = readdir(dir))) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		if (*end || pid <= 0)
			continue;
		if (count == cap) {
			cap *= 2;
			procs = realloc(procs, cap * sizeof(*procs));
			if (!procs)
				die("out of memory");
		}
		if (read_proc_times((int)pid, &procs[count]) == 0)
			count++;
	}
	closedir(dir);

	char *in = calloc(count ? count : 1, 1);
	char *copy = strdup(list);
	for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
		int root = atoi(tok);
		for (size_t i = 0; i < count; i++)
			if (procs[i].pid == root)
				in[i] = 1;
	}
	/* Descendants: mark children of marked processes until nothing changes. */
	for (int changed = 1; changed;) {
		changed = 0;
		for (size_t i = 0; i < count; i++) {
			if (in[i])
				continue;
			for (size_t j = 0; j < count; j++) {
				if (in[j] && procs[j].pid == procs[i].ppid) {
					in[i] = 1;
					changed = 1;
					break;
				}
			}
		}
	}
	double seconds = 0;
	for (size_t i = 0; i < count; i++) {
		if (!in[i])
			continue;
		double own = threads_seconds(procs[i].pid);
		seconds += procs[i].children + (own < 0 ? procs[i].own_ticks : own);
	}
	free(copy);
	free(in);
	free(procs);
	return seconds;
}

long positive_arg(int argc, char **argv, int i, const char *name)
{
	if (i >= argc)
		die("missing argument %d (%s)", i, name);
	char *end;
	long v = strtol(argv[i], &end, 10);
	if (*end || v <= 0)
		die("argument %s must be a positive number, not \"%s\"", name, argv[i]);
	return v;
}
