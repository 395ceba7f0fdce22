/* sockprobe PATH: exits 0 when something accepts connections on the Unix socket PATH, as a
 * SOCK_SEQPACKET or a SOCK_STREAM socket (Node's net module only speaks stream), else 1. */
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common.h"

static int try_connect(const char *path, int type)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr.sun_path))
		die("socket path too long: %s", path);
	strcpy(addr.sun_path, path);
	int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int r = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
	close(fd);
	return r;
}

int main(int argc, char **argv)
{
	set_program_name("sockprobe");
	if (argc != 2)
		die("usage: sockprobe PATH");
	return try_connect(argv[1], SOCK_SEQPACKET) == 0 || try_connect(argv[1], SOCK_STREAM) == 0
		       ? 0
		       : 1;
}
