/* roundtrip N: N wl_display.sync round trips, one after the other; prints the time per round
 * trip (mean, median and 99th percentile) in microseconds. */
#include <stdio.h>
#include <stdlib.h>

#include "common.h"

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	set_program_name("roundtrip");
	long n = positive_arg(argc, argv, 1, "N");
	struct wl_display *display = connect_display();
	double *samples = malloc((size_t)n * sizeof(double));
	if (!samples)
		die("out of memory");

	for (int i = 0; i < 100; i++) /* warm-up */
		roundtrip(display);

	double cpu0 = proxy_cpu_seconds();
	double start = now();
	for (long i = 0; i < n; i++) {
		double t = now();
		roundtrip(display);
		samples[i] = now() - t;
	}
	double total = now() - start;
	double cpu1 = proxy_cpu_seconds();

	qsort(samples, (size_t)n, sizeof(double), by_value);
	printf("{\"count\": %ld, \"seconds\": %.6f, \"mean_us\": %.3f, \"p50_us\": %.3f, "
	       "\"p99_us\": %.3f, \"proxy_cpu_us\": %.3f}\n",
	       n, total, total / n * 1e6, samples[n / 2] * 1e6, samples[n * 99 / 100] * 1e6,
	       cpu0 < 0 ? -1 : (cpu1 - cpu0) / n * 1e6);
	free(samples);
	wl_display_disconnect(display);
	return 0;
}
