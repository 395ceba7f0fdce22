/* relay LISTEN UPSTREAM: the floor of any Wayland relay on this machine. It listens on the Unix
 * socket LISTEN and gives every client its own connection to UPSTREAM, then moves bytes and fds
 * both ways without looking at them: epoll, recvmsg into a buffer, sendmsg out of it with the fds
 * that came with the bytes. What a peer cannot take now waits, and its source is not read
 * meanwhile, as any relay that never blocks must do. No parsing, no ids, no policy: what remains
 * is the cost of a process in the middle. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common.h"

#define BUF_SIZE 65536
#define MAX_FDS 28

/* One side of a relayed connection: its socket, and what was read from it for the other side. */
struct side {
	int fd;
	char buf[BUF_SIZE];
	size_t start, end;
	int fds[MAX_FDS];
	int nfds;
	struct side *other;
};

static int epfd;

/* Reads from a side while nothing it sent waits; writes to it while the other side's data does. */
static void update(struct side *s)
{
	struct epoll_event ev = { .data.ptr = s };
	ev.events = (s->start == s->end ? EPOLLIN : 0) |
		    (s->other->start < s->other->end ? EPOLLOUT : 0);
	epoll_ctl(epfd, EPOLL_CTL_MOD, s->fd, &ev);
}

static void hang_up(struct side *s)
{
	struct side *pair = s < s->other ? s : s->other;
	for (int i = 0; i < 2; i++) {
		for (int k = 0; k < pair[i].nfds; k++)
			close(pair[i].fds[k]);
		close(pair[i].fd);
	}
	free(pair);
}

/* Sends what was read from `s` to the other side; false once a peer is gone. */
static bool forward(struct side *s)
{
	while (s->start < s->end) {
		char control[CMSG_SPACE(sizeof(int) * MAX_FDS)];
		struct iovec iov = { s->buf + s->start, s->end - s->start };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
		if (s->nfds > 0) {
			memset(control, 0, sizeof(control));
			msg.msg_control = control;
			msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)s->nfds);
			struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)s->nfds);
			memcpy(CMSG_DATA(c), s->fds, sizeof(int) * (size_t)s->nfds);
		}
		ssize_t n = sendmsg(s->other->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EAGAIN)
			return true;
		if (n <= 0)
			return false;
		for (int i = 0; i < s->nfds; i++)
			close(s->fds[i]);
		s->nfds = 0;
		s->start += (size_t)n;
	}
	s->start = s->end = 0;
	return true;
}

/* `s` is readable: one recvmsg, forwarded at once as far as the other side takes it. */
static bool on_readable(struct side *s)
{
	char control[CMSG_SPACE(sizeof(int) * MAX_FDS)];
	struct iovec iov = { s->buf, BUF_SIZE };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
			      .msg_controllen = sizeof(control) };
	ssize_t n = recvmsg(s->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0 && errno == EAGAIN)
		return true;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			memcpy(s->fds + s->nfds, CMSG_DATA(c), sizeof(int) * (size_t)count);
			s->nfds += count;
		}
	}
	if (n <= 0)
		return false;
	s->start = 0;
	s->end = (size_t)n;
	return forward(s);
}

static void relay(int cfd, const struct sockaddr_un *upstream)
{
	int ufd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (ufd < 0 || connect(ufd, (const struct sockaddr *)upstream, sizeof(*upstream)) < 0) {
		close(cfd);
		if (ufd >= 0)
			close(ufd);
		return;
	}
	struct side *pair = calloc(2, sizeof(*pair));
	if (!pair)
		die("out of memory");
	pair[0].fd = cfd;
	pair[1].fd = ufd;
	pair[0].other = &pair[1];
	pair[1].other = &pair[0];
	for (int i = 0; i < 2; i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &pair[i] };
		epoll_ctl(epfd, EPOLL_CTL_ADD, pair[i].fd, &ev);
	}
}

int main(int argc, char **argv)
{
	set_program_name("relay");
	if (argc != 3)
		die("usage: relay LISTEN UPSTREAM");
	signal(SIGPIPE, SIG_IGN);
	struct sockaddr_un listen_addr = { .sun_family = AF_UNIX }, upstream = { .sun_family = AF_UNIX };
	snprintf(listen_addr.sun_path, sizeof(listen_addr.sun_path), "%s", argv[1]);
	snprintf(upstream.sun_path, sizeof(upstream.sun_path), "%s", argv[2]);
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	unlink(argv[1]);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&listen_addr, sizeof(listen_addr)) < 0 ||
	    listen(lfd, 128) < 0)
		die("cannot listen on %s: %s", argv[1], strerror(errno));
	epfd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event lev = { .events = EPOLLIN, .data.ptr = NULL };
	epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);
	for (;;) {
		struct epoll_event evs[64];
		int n = epoll_wait(epfd, evs, 64, -1);
		for (int i = 0; i < n; i++) {
			struct side *s = evs[i].data.ptr;
			if (evs[i].events == 0)
				continue; /* a connection closed earlier in this batch */
			if (!s) {
				int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
				if (cfd >= 0)
					relay(cfd, &upstream);
				continue;
			}
			bool alive = true;
			if (evs[i].events & EPOLLOUT)
				alive = forward(s->other);
			if (alive && evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR) && s->start == s->end)
				alive = on_readable(s);
			if (!alive) {
				struct side *other = s->other;
				/* the pair is freed: later events of this batch for it must not be handled */
				for (int k = i + 1; k < n; k++)
					if (evs[k].data.ptr == other || evs[k].data.ptr == s)
						evs[k].events = 0;
				hang_up(s);
				continue;
			}
			update(s);
			update(s->other);
		}
	}
}
