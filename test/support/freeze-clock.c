/*
 * LD_PRELOAD shim for weston in the test harness: freezes CLOCK_MONOTONIC_RAW, weston's
 * presentation clock, at a fixed instant. Frame callbacks and presentation feedback then carry
 * the same timestamp on every frame of every run, so clients that animate from the compositor's
 * frame time (weston-simple-shm, weston-simple-damage) draw the same picture every time.
 *
 * Only that one clock is frozen: libwayland's event-loop timers run on CLOCK_MONOTONIC and
 * keep working (libfaketime freezes every clock, and weston then never repaints).
 * Weston must run with repaint-window = 16 ms (one 60 Hz refresh) so that a repaint is due at
 * once after each frame instead of at a frozen deadline that never comes.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

static int (*real_clock_gettime)(clockid_t, struct timespec *);

int clock_gettime(clockid_t id, struct timespec *ts)
{
	if (id == CLOCK_MONOTONIC_RAW) {
		const char *s = getenv("TSWL_FROZEN_CLOCK_SEC");
		ts->tv_sec = s ? atol(s) : 1000;
		ts->tv_nsec = 0;
		return 0;
	}
	if (!real_clock_gettime)
		real_clock_gettime = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
	return real_clock_gettime(id, ts);
}
