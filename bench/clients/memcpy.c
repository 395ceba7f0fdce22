/* memcpy W H REPS: the cost of copying one W×H XRGB8888 frame with memcpy, the yardstick for
 * a full-damage commit that a proxy must copy. "cold": source and destination rotate through
 * 12 pairs (out of cache, as a frame the client has just drawn mostly is not); "hot": the same
 * pair every time. Prints milliseconds per copy. No Wayland involved. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define PAIRS 12

int main(int argc, char **argv)
{
	set_program_name("memcpy");
	long w = positive_arg(argc, argv, 1, "W");
	long h = positive_arg(argc, argv, 2, "H");
	long reps = positive_arg(argc, argv, 3, "REPS");
	size_t size = (size_t)w * (size_t)h * 4;
	uint8_t *src[PAIRS], *dst[PAIRS];
	for (int i = 0; i < PAIRS; i++) {
		src[i] = malloc(size);
		dst[i] = malloc(size);
		if (!src[i] || !dst[i])
			die("out of memory");
		memset(src[i], i + 1, size); /* fault every page in before timing */
		memset(dst[i], 0, size);
	}

	unsigned sink = 0;
	/* Two untimed passes: on a VM the first copies into fresh pages are much slower. */
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < PAIRS; i++)
			memcpy(dst[i], src[i], size);

	double start = now();
	for (long r = 0; r < reps; r++) {
		memcpy(dst[r % PAIRS], src[r % PAIRS], size);
		sink += dst[r % PAIRS][r % size];
	}
	double cold = (now() - start) / reps;

	start = now();
	for (long r = 0; r < reps; r++) {
		memcpy(dst[0], src[0], size);
		sink += dst[0][r % size];
	}
	double hot = (now() - start) / reps;

	printf("{\"width\": %ld, \"height\": %ld, \"bytes\": %zu, \"cold_ms\": %.4f, "
	       "\"hot_ms\": %.4f, \"sink\": %u}\n",
	       w, h, size, cold * 1e3, hot * 1e3, sink & 1);
	return 0;
}
